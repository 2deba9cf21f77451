"""What a served detector does with an image: the shared preprocessing, the shipped ONNX file, the numpy
post-processing (cvops/tasks/detection/postprocess.py), and boxes in the pixels of the image the client sent.

The detection twin of `predictor.Predictor`, built on it: the same decoding (`decode_image`), the same
micro-batching of the raw outputs, the same identity of the version that answered. Torch-free.
"""

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cvops.data.preprocess import model_inputs, to_rgb
from cvops.export.onnx_model import BOX_OUTPUTS, INPUT, detect_outputs
from cvops.serving.predictor import DecodedImage, Predictor, Reply
from cvops.tasks.detection.postprocess import PostProcess, postprocess

if TYPE_CHECKING:
    from cvops.export.onnx_model import Session

Detection = dict[str, Any]  # {"box": [x1, y1, x2, y2], "label": str, "score": float}
RED = (220, 30, 30)  # the drawn detections


@dataclass
class DetectionPredictor(Predictor):
    """One loaded detector version: a Predictor whose outputs are boxes, post-processed by `post` (detect.served
    of params.yaml) into the pixels of the image sent."""

    post: PostProcess = field(kw_only=True)

    def __post_init__(self, opened: "Session | None") -> None:
        super().__post_init__(opened)
        size = self.preprocessing.image_size
        probe = np.zeros((1, 3, size, size), dtype=np.float32)
        self.anchors = self.session.run([BOX_OUTPUTS[3]], {INPUT: probe})[0]  # fixed by the input size

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
        """(N, size, size, 3) uint8 to the raw outputs (logits, box offsets, centerness), one row per image, and
        the projected embeddings ((N, 0) without a projection): what the micro-batcher splits by request."""
        pre = self.preprocessing
        (logits, offsets, centerness, _), embeddings = detect_outputs(
            self.session, model_inputs(pixels, pre.mean, pre.std)
        )
        projected = (
            self.projection.apply(embeddings)
            if self.projection is not None
            else np.zeros((len(pixels), 0), dtype=np.float32)
        )
        return logits, offsets, centerness, projected

    def detections(self, outputs: tuple[np.ndarray, ...], width: int, height: int) -> list[Detection]:
        """One image's raw outputs to its detections, boxes in the pixels of the `width` x `height` image sent."""
        pre = self.preprocessing
        logits, offsets, centerness = (output[None] for output in outputs[:3])
        found = postprocess(logits, offsets, centerness, self.anchors, pre.level_sizes, pre.image_size, self.post)[0]
        boxes, labels, scores = pre.fit(width, height).to_original(found["boxes"]), found["labels"], found["scores"]
        return [
            {
                "box": [round(float(v), 2) for v in box],
                "label": pre.class_names[int(label)],
                "score": round(float(s), 6),
            }
            for box, label, s in zip(boxes, labels, scores, strict=True)
        ]

    def reply(self, outputs: tuple[np.ndarray, ...], image: DecodedImage) -> Reply:
        detections = self.detections(outputs[:3], image.width, image.height)
        return {"detections": detections, **self.identity()}, self.log_row(image, detections, outputs[3])

    def log_row(  # type: ignore[override]  # a detector's row summarises its boxes
        self, image: DecodedImage, detections: list[Detection], embedding: np.ndarray
    ) -> dict[str, Any]:
        """What the inference log keeps of one image's detections: monitoring's input (boxes per image, their
        sizes, shapes, scores and classes) beside the image statistics, and the detections themselves (what live
        mAP scores against the true boxes feedback brings)."""
        row: dict[str, Any] = {
            "model_version": self.version,
            "width": image.width,
            "height": image.height,
            **box_summary(detections, image.width, image.height),
            **image.features,
            "detections": detections,
        }
        if embedding.size and self.projection is not None:
            row["embedding"] = [round(float(x), 5) for x in embedding]
            row["projection"] = self.projection.fingerprint
        return row


def box_summary(detections: list[Detection], width: int, height: int) -> dict[str, Any]:
    """What monitoring tests of one image's detections: how many boxes, their mean area (a share of the image)
    and aspect (width / height), their mean score, the best box's class and score, and the class mix."""
    sides = np.array([[d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]] for d in detections]).reshape(-1, 2)
    scores = np.array([d["score"] for d in detections])
    found = len(detections) > 0
    return {
        "boxes": len(detections),
        "box_area": float((sides.prod(axis=1) / max(width * height, 1)).mean()) if found else 0.0,
        "box_aspect": float((sides[:, 0] / np.maximum(sides[:, 1], 1e-6)).mean()) if found else 0.0,
        "mean_score": float(scores.mean()) if found else 0.0,
        "label": detections[int(scores.argmax())]["label"] if found else "",
        "score": float(scores.max()) if found else 0.0,
        "labels": [d["label"] for d in detections],
    }


def render(data: bytes, detections: list[Detection]) -> bytes:
    """The image sent (upright, RGB) with its detections drawn and labelled: a PNG."""
    with Image.open(io.BytesIO(data)) as image:
        picture = to_rgb(image)  # upright, as the boxes are
    captioned = [(d["box"], f"{d['label']} {d['score']:.2f}", RED) for d in detections]
    draw_boxes(picture, captioned[::-1])  # the best last: on top where boxes overlap
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


Captioned = tuple[list[float], str, tuple[int, int, int]]  # a box (x1, y1, x2, y2), its caption and colour


def draw_boxes(picture: Image.Image, boxes: list[Captioned]) -> Image.Image:
    """Draw each box with its caption on its top edge (inside the picture), in order: the last on top. Line and
    caption scale with the picture (PIL's bundled font)."""
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(picture.size) / 250))
    font = ImageFont.load_default(size=max(12, round(max(picture.size) / 30)))
    for (x1, y1, x2, y2), caption, colour in boxes:
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        _, top, _, bottom = draw.textbbox((x1, y1), caption, font=font)
        lift = bottom - top + 2
        spot = (x1, y1 - lift if y1 >= lift else y1)
        draw.rectangle(draw.textbbox(spot, caption, font=font), fill=colour)
        draw.text(spot, caption, fill=(255, 255, 255), font=font)
    return picture
