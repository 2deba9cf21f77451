"""Where a classifier looks: Grad-CAM (captum's LayerGradCam) on the model's last convolutional feature map,
for the class it predicts, drawn over the image at the image's own size; for the error gallery's images, and
for any images (`cvops explain`)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from cvops.data.preprocess import model_inputs, resize_image, to_rgb
from cvops.errors import ConfigError, DataError, ModelError
from cvops.evaluation.gallery import draw_sheet
from cvops.evaluation.reports import Gallery, Kind
from cvops.registry.tracking import TrainedModel

MIN_CELLS = 2  # a feature map needs at least 2x2 cells to say where in the image anything is
HEAT_ALPHA = 0.5  # how much of the overlay is heat (the rest: the image)


def feature_layer(model: nn.Module, image_size: int) -> tuple[str, nn.Module]:
    """The module (and its name) whose output is the model's last feature map with space in it (4-D, at least
    2x2 cells), found by running one blank image through the model; a ModelError when the model has none."""
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []

    def recorder(name: str) -> Callable[[nn.Module, object, object], None]:
        def record(_: nn.Module, __: object, output: object) -> None:
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape)
                order.append(name)

        return record

    modules = dict(model.named_modules())
    hooks = [module.register_forward_hook(recorder(name)) for name, module in modules.items() if module is not model]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    spatial = [m for m in order if len(shapes[m]) == 4 and min(shapes[m][2:]) >= MIN_CELLS]
    if not spatial:
        raise ModelError(
            f"{type(model).__name__} has no convolutional feature map of at least {MIN_CELLS}x{MIN_CELLS} cells at "
            f"{image_size}px input, so Grad-CAM cannot show where it looks (a transformer's tokens are not one)"
        )
    return spatial[-1], modules[spatial[-1]]


@dataclass
class Explanation:
    """One image's Grad-CAM: the heat (0-1, the image's height x width), the class it explains and its score."""

    heat: np.ndarray
    label: int
    score: float

    def overlay(self, image: np.ndarray) -> np.ndarray:
        """The image (H, W, 3 uint8) with the heat drawn over it in a colour map (blue cold, red hot)."""
        from matplotlib import colormaps

        colours = colormaps["jet"](self.heat)[..., :3] * 255.0
        return np.round(image * (1 - HEAT_ALPHA) + colours * HEAT_ALPHA).astype(np.uint8)


def explain(
    model: nn.Module,
    layer: nn.Module,
    inputs: np.ndarray,
    originals: Sequence[np.ndarray],
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
) -> list[Explanation]:
    """Grad-CAM of each image for the class the model predicts: `inputs` (N, S, S, 3 uint8) are the images as the
    model takes them, `originals` the same images at their own sizes, which the heat is scaled to."""
    from captum.attr import LayerGradCam

    model.eval().to(device)
    batch = torch.from_numpy(model_inputs(inputs, mean, std)).to(device)
    with torch.no_grad():
        proba = torch.softmax(model(batch), dim=1)
    score, predicted = proba.max(dim=1)
    cams = LayerGradCam(model, layer).attribute(batch, target=predicted, relu_attributions=True)
    found = []
    for cam, original, label, sure in zip(
        cams.detach().cpu().numpy(), originals, predicted.tolist(), score.tolist(), strict=True
    ):
        height, width = original.shape[:2]
        heat = np.asarray(Image.fromarray(cam[0].astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))
        heat = np.clip(heat, 0, None)
        peak = heat.max()
        found.append(Explanation(heat=heat / peak if peak > 0 else heat, label=int(label), score=float(sure)))
    return found


def with_saliency(
    gallery: Gallery,
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    out_dir: Path,
) -> Gallery:
    """The gallery with a Grad-CAM sheet per kind of image (`images`: the test split as the model takes them), or
    with the reason there is none."""
    if not gallery.images:
        return gallery
    try:
        name, layer = feature_layer(model, images.shape[1])
    except ModelError as err:
        return gallery.model_copy(update={"saliency_note": str(err)})
    sheets: dict[Kind, str] = {}
    for kind in gallery.sheets:
        chosen = gallery.of(kind)
        picked = images[[image.index for image in chosen]]
        found = explain(model, layer, picked, list(picked), mean, std, device)
        overlays = [explanation.overlay(picture) for explanation, picture in zip(found, picked, strict=True)]
        path = draw_sheet(overlays, [image.caption() for image in chosen], out_dir / f"saliency_{kind}.png")
        sheets[kind] = str(path)
    return gallery.model_copy(update={"saliency": sheets, "saliency_layer": name})


@dataclass
class Explained:
    """One image `cvops explain` drew: where it came from, where its overlay went, and the model's answer."""

    image: Path
    overlay: Path
    label: str
    score: float


def read_images(paths: Sequence[Path]) -> list[np.ndarray]:
    """Every image decoded (upright RGB, H x W x 3 uint8) before anything is written; a DataError naming the first
    file that is missing or not a readable image."""
    decoded = []
    for path in paths:
        try:
            with Image.open(path) as image:
                decoded.append(np.asarray(to_rgb(image)))
        except FileNotFoundError as err:
            raise DataError(f"{path}: no such file; give paths of image files") from err
        except (OSError, ValueError, SyntaxError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise DataError(f"{path}: not a readable image ({type(err).__name__}); give PNG or JPEG files") from err
    return decoded


def explain_files(
    model: nn.Module, trained: TrainedModel, paths: Sequence[Path], output: Path, device: torch.device
) -> list[Explained]:
    """Grad-CAM overlays (`<name>.gradcam.png`, the image's size) of each image in `paths` under `output`, for the
    class the model predicts. All images are read and explained before the first file is written."""
    from cvops.tasks.detection.model import Detector

    if isinstance(model, Detector):
        raise ModelError(
            "Grad-CAM explains a classifier's answer, and this version is a detector: "
            "`cvops serve` and /detect?render=1 draw a detector's boxes"
        )
    names = [path.stem for path in paths]
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise ConfigError(f"two images are named {twice!r}: their overlays would be one file; explain them apart")
    originals = read_images(paths)
    inputs = np.stack([resize_image(Image.fromarray(image), trained.image_size, trained.resize) for image in originals])
    _, layer = feature_layer(model, trained.image_size)
    found = explain(model, layer, inputs, originals, trained.mean, trained.std, device)
    output.mkdir(parents=True, exist_ok=True)
    explained = []
    for path, image, explanation in zip(paths, originals, found, strict=True):
        target = output / f"{path.stem}.gradcam.png"
        partial = target.with_suffix(".partial")
        Image.fromarray(explanation.overlay(image)).save(partial, format="PNG")
        partial.replace(target)
        explained.append(Explained(path, target, trained.class_names[explanation.label], explanation.score))
    return explained
