"""Per-image statistics that monitoring compares between training data and live traffic.

The same function runs on training images (the reference), in the service's inference log, and in
monitoring, so a drift is a change in the images, never in how they were measured.
"""

import numpy as np

FEATURES = ("brightness", "contrast", "sharpness", "saturation", "red", "green", "blue")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def image_features(image: np.ndarray) -> dict[str, float]:
    """Statistics of one (H, W, 3) uint8 RGB image, on the 0-255 scale (sharpness: Laplacian variance)."""
    pixels = image.astype(np.float32)
    luma = pixels @ _LUMA
    laplacian = -4 * luma[1:-1, 1:-1] + luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]  # per channel: a reduction over the
    high, low = np.maximum(np.maximum(red, green), blue), np.minimum(np.minimum(red, green), blue)  # last axis
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0) * 255  # of 3 is ~10x slower
    return {
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "sharpness": float(laplacian.var()) if laplacian.size else 0.0,
        "saturation": float(saturation.mean()),
        "red": float(red.mean()),
        "green": float(green.mean()),
        "blue": float(blue.mean()),
    }
