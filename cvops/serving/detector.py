"""What a served detector does with an image: the shared preprocessing, the shipped ONNX file, the numpy
post-processing (cvops/box_postprocess.py), and boxes in the pixels of the image the client sent.

The detection twin of `predictor.Predictor`: the same decoding (`decode_image`), the same micro-batching of
the raw outputs, the same identity of the version that answered. Torch-free.
"""

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from cvops.box_postprocess import PostProcess, postprocess
from cvops.data.preprocess import model_inputs, to_rgb
from cvops.onnx_model import BOX_OUTPUTS, INPUT, detect_outputs, preprocessing_of, session
from cvops.projection import Projection
from cvops.serving.predictor import DecodedImage, MicroBatcher

if TYPE_CHECKING:
    from cvops.artifacts import ServedModel

Detection = dict[str, Any]  # {"box": [x1, y1, x2, y2], "label": str, "score": float}


@dataclass
class DetectionPredictor:
    """One loaded detector version: an onnxruntime session, its preprocessing and post-processing settings,
    its identity, and (with a monitoring reference) the projection of its embeddings."""

    onnx_path: Path
    model_name: str
    version: str
    lineage_id: str
    max_batch: int
    post: PostProcess  # detect.* of params.yaml
    threads: int | None = None
    projection_path: Path | None = None
    batcher: MicroBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.session = session(self.onnx_path, self.threads)
        self.preprocessing = preprocessing_of(self.session, self.onnx_path)
        size = self.preprocessing.image_size
        probe = np.zeros((1, 3, size, size), dtype=np.float32)
        self.anchors = self.session.run([BOX_OUTPUTS[3]], {INPUT: probe})[0]  # fixed by the input size
        self.projection = Projection.load(self.projection_path) if self.projection_path else None
        self.batcher = MicroBatcher(self.predict, self.max_batch)

    @classmethod
    def of(cls, served: "ServedModel", max_batch: int, post: PostProcess,
           threads: int | None = None) -> "DetectionPredictor":  # fmt: skip
        projection = Path(served.projection_path) if served.projection_path else None
        return cls(Path(served.onnx_path), served.model_name, served.version, served.lineage_id, max_batch, post,
                   threads=threads, projection_path=projection)  # fmt: skip

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
        """(N, size, size, 3) uint8 to the raw outputs (logits, box offsets, centerness), one row per image, and
        the projected embeddings ((N, 0) without a projection): what the micro-batcher splits by request."""
        pre = self.preprocessing
        (logits, offsets, centerness, _), embeddings = detect_outputs(self.session, model_inputs(pixels, pre.mean,
                                                                                                 pre.std))  # fmt: skip
        projected = (self.projection.apply(embeddings) if self.projection is not None
                     else np.zeros((len(pixels), 0), dtype=np.float32))  # fmt: skip
        return logits, offsets, centerness, projected

    def detections(self, outputs: tuple[np.ndarray, ...], width: int, height: int) -> list[Detection]:
        """One image's raw outputs to its detections, boxes in the pixels of the `width` x `height` image sent."""
        pre = self.preprocessing
        logits, offsets, centerness = (output[None] for output in outputs[:3])
        found = postprocess(logits, offsets, centerness, self.anchors, pre.level_sizes, pre.image_size, self.post)[0]
        scale = np.array([width, height, width, height], dtype=np.float64) / pre.image_size
        boxes, labels, scores = found["boxes"] * scale, found["labels"], found["scores"]
        return [
            {
                "box": [round(float(v), 2) for v in box],
                "label": pre.class_names[int(label)],
                "score": round(float(s), 6),
            }
            for box, label, s in zip(boxes, labels, scores, strict=True)
        ]

    def answer(self, detections: list[Detection]) -> dict[str, Any]:
        return {"detections": detections, "model_name": self.model_name, "model_version": self.version,
                "lineage_id": self.lineage_id}  # fmt: skip

    def log_row(self, image: DecodedImage, detections: list[Detection], embedding: np.ndarray) -> dict[str, Any]:
        """What the inference log keeps of one image's detections: monitoring's input (boxes per image, their
        sizes, shapes, scores and classes) beside the image statistics."""
        row: dict[str, Any] = {
            "model_version": self.version, "width": image.width, "height": image.height,
            **box_summary(detections, image.width, image.height), **image.features,
        }  # fmt: skip
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
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(picture.size) / 250))
    for detection in detections:
        x1, y1, x2, y2 = detection["box"]
        draw.rectangle((x1, y1, x2, y2), outline=(230, 30, 30), width=width)
        draw.text((x1 + 2, y1 + 1), f"{detection['label']} {detection['score']:.2f}", fill=(230, 30, 30))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
