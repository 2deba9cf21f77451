"""The user's own pieces named in params.yaml: a model and a reader (`package.module:function`) and an
albumentations pipeline saved as YAML, each loaded from the project's folder and refused in one line naming its
key when it does not fit."""

import uuid
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from PIL import Image

from cvops.config import load_params
from cvops.data.augment import augmentation
from cvops.data.sources import reader_source
from cvops.errors import ConfigError
from cvops.tasks.detection.boxes import reader_detection_source
from cvops.training.models import create_model, head_parameters
from tests.conftest import REPO

MODELS = """
from torch import nn


class Net(nn.Module):
    def __init__(self, classes, outputs=None):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, outputs or classes)

    def get_classifier(self):
        return self.head

    def forward(self, x):
        return self.head(self.body(x))


def good(classes):
    return Net(classes)


def wrong_outputs(classes):
    return Net(classes, outputs=classes + 1)


def headless(classes):
    return nn.Sequential(nn.Conv2d(3, classes, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def not_a_model(classes):
    return "a model"


def broken(classes):
    raise RuntimeError("out of ideas")


NUMBER = 3
"""

READERS = """
import numpy as np
from PIL import Image


def classes(path):
    yield path / "a.png", "cat"
    yield Image.new("RGB", (20, 10)), "dog"
    yield np.zeros((12, 14, 3), dtype=np.uint8), 7


def boxes(path):
    yield path / "a.png", [("can", 1, 2, 8, 9)]
    yield np.zeros((12, 14), dtype=np.uint8), []


def not_pairs(path):
    yield "just a name"


def bad_box(path):
    yield path / "a.png", [("can", 1, 2)]
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package of the user's, `own_<random>`, in a project folder (CVOPS_ROOT), with an image beside it."""
    name = f"own_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "models.py").write_text(MODELS)
    (tmp_path / name / "readers.py").write_text(READERS)
    Image.new("RGB", (16, 12), (200, 0, 0)).save(tmp_path / "a.png")
    monkeypatch.setenv("CVOPS_ROOT", str(tmp_path))
    return name


def test_a_model_of_ones_own_is_built_checked_and_trains_its_head(package: str) -> None:
    model = create_model(f"{package}.models:good", 3, image_size=32)
    assert type(model).__name__ == "Net" and model.training
    assert [tuple(p.shape) for p in head_parameters(model)] == [(3, 4), (3,)]


@pytest.mark.parametrize(
    ("function", "words"),
    [
        ("wrong_outputs", "answers a batch of 2 images with shape (2, 4), not (2, 3): one logit per class"),
        ("headless", "needs a get_classifier() method returning its head"),
        ("not_a_model", "returned a str, not a torch.nn.Module"),
        ("broken", "(3) failed: RuntimeError: out of ideas"),
        ("NUMBER", "NUMBER is a int, not a function"),
        ("absent", "has no 'absent'"),
    ],
)
def test_a_model_that_does_not_fit_is_one_line_naming_train_model(package: str, function: str, words: str) -> None:
    with pytest.raises(ConfigError, match=r"^train\.model: ") as raised:
        create_model(f"{package}.models:{function}", 3, image_size=32)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_a_module_that_is_not_there_is_named(package: str) -> None:
    with pytest.raises(ConfigError, match=r"^train\.model: nowhere\.models:good: no module 'nowhere'"):
        create_model("nowhere.models:good", 3)


def test_params_refuse_a_detector_of_ones_own_and_pretrained_weights_for_it() -> None:
    params = REPO / "params.yaml"
    with pytest.raises(ConfigError, match="a model of your own is a classifier's"):
        load_params(
            params, ["task=detection", "data.source=digit-scenes", "train.model=a.b:c", "train.pretrained=none"]
        )
    with pytest.raises(ConfigError, match=r"set train\.pretrained none"):
        load_params(params, ["train.model=a.b:c"])
    assert load_params(params, ["train.model=a.b:c", "train.pretrained=none", "data.source=a.b:read"]).data.source


def test_a_reader_of_ones_own_yields_files_images_and_arrays(package: str, tmp_path: Path) -> None:
    source = reader_source(f"{package}.readers:classes", tmp_path)
    samples = list(source.samples)
    assert source.classes == ["7", "cat", "dog"] and source.total == 3
    assert samples[0].file == tmp_path / "a.png" and samples[0].meta == {"source_path": str(tmp_path / "a.png")}
    assert samples[1].image is not None and samples[1].image.size == (20, 10)
    assert samples[2].label == "7" and samples[2].image is not None and samples[2].image.size == (14, 12)
    with pytest.raises(ConfigError, match=r"^data\.source: .*:not_pairs yielded a str as item 0: yield pairs"):
        reader_source(f"{package}.readers:not_pairs", tmp_path)


def test_a_detectors_reader_of_ones_own_yields_boxes(package: str, tmp_path: Path) -> None:
    source = reader_detection_source(f"{package}.readers:boxes", tmp_path)
    scenes = list(source.scenes)
    assert source.classes == ["can"] and [len(scene.boxes) for scene in scenes] == [1, 0]
    assert (scenes[0].boxes[0].x1, scenes[0].boxes[0].y2) == (1.0, 9.0)
    with pytest.raises(ConfigError, match=r"item 0: box 0 is \('can', 1, 2\): give \(label, x1, y1, x2, y2\)"):
        reader_detection_source(f"{package}.readers:bad_box", tmp_path)


def test_a_saved_augmentation_is_seeded_moves_boxes_and_must_keep_the_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CVOPS_ROOT", str(tmp_path))
    A.save(A.Compose([A.HorizontalFlip(p=1.0), A.GaussNoise(p=1.0)]), str(tmp_path / "aug.yaml"), data_format="yaml")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    first, again = (augmentation("aug.yaml", seed=3, boxes=True) for _ in range(2))
    one = first(image=image, bboxes=[[2, 2, 10, 10]], labels=[0])
    assert np.array_equal(one["image"], again(image=image, bboxes=[[2, 2, 10, 10]], labels=[0])["image"])
    assert np.allclose(one["bboxes"], [[22, 2, 30, 10]])  # flipped with the pixels
    A.save(A.Compose([A.Resize(16, 16)]), str(tmp_path / "small.json"), data_format="json")
    with pytest.raises(ConfigError, match=r"^train\.augment: small\.json turns a 64x64 RGB uint8 image into 16x16x3"):
        augmentation("small.json", seed=0)
    with pytest.raises(ConfigError, match=r"^train\.augment: gone\.yaml not found"):
        augmentation("gone.yaml", seed=0)
