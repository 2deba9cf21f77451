"""Grad-CAM shows where a model looks: on a tiny CNN trained to find a planted patch, the heat is on the patch."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cvops.data.preprocess import resize_image
from cvops.errors import ModelError
from cvops.evaluation.saliency import explain, feature_layer
from cvops.training.models import normalization
from cvops.training.trainer import TrainResult

SIZE = 16  # the model's input
WIDTH, HEIGHT = 64, 48  # the images as a user has them
PATCH = (slice(6, 18), slice(40, 56))  # rows, columns of the planted patch in the originals (top right)
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def originals(count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Grey noise; label 1 images carry a white patch, label 0 images none."""
    rng = np.random.default_rng(seed)
    images, labels = [], np.arange(count) % 2
    for label in labels:
        image = np.repeat(rng.integers(40, 160, (HEIGHT, WIDTH, 1), dtype=np.uint8), 3, axis=2)
        if label:
            image[PATCH] = 255
        images.append(image)
    return images, labels


def model_inputs_of(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([resize_image(Image.fromarray(image), SIZE) for image in images])


@pytest.fixture(scope="module")
def patch_finder() -> nn.Module:
    """A tiny CNN trained to tell images with the patch from images without."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    images, labels = originals(128, seed=1)
    inputs = torch.from_numpy((model_inputs_of(images).transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.25).float()
    targets = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    assert (model(inputs).argmax(1) == targets).float().mean() == 1.0  # it learned the patch
    return model.eval()


def test_grad_cam_is_the_images_size_and_its_heat_is_on_the_planted_patch(patch_finder: nn.Module) -> None:
    images, labels = originals(8, seed=2)
    name, layer = feature_layer(patch_finder, SIZE)
    assert (name, layer) == ("3", patch_finder[3])  # the last convolution's activation: the last map with space
    found = explain(patch_finder, layer, model_inputs_of(images), images, MEAN, STD, torch.device("cpu"))
    assert [e.label for e in found] == labels.tolist()
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[PATCH] = True
    for image, explanation in zip(images, found, strict=True):
        assert explanation.heat.shape == (HEIGHT, WIDTH) and explanation.overlay(image).shape == image.shape
        if explanation.label == 1:  # where the model looks when it says "patch"
            heat = explanation.heat
            assert heat.max() == pytest.approx(1.0) and heat[inside].mean() > 3 * heat[~inside].mean()


def test_a_model_without_a_feature_map_gets_a_clear_error() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 2))
    with pytest.raises(ModelError, match="no convolutional feature map"):
        feature_layer(flat, SIZE)


def test_the_digits_model_is_explained_on_its_last_map_with_space_in_it(trained: TrainResult, digits) -> None:
    from cvops.data.prepare import load_split

    images, labels, _ = load_split(digits, "test")
    name, layer = feature_layer(trained.model, digits.image_size)
    assert name == "layer2"  # 16px input: 2x2 cells after layer2, 1x1 after layer3
    mean, std = normalization(trained.model)
    bigger = [np.asarray(Image.fromarray(image).resize((48, 48))) for image in images[:6]]
    found = explain(trained.model, layer, images[:6], bigger, mean, std, torch.device("cpu"))
    assert all(e.heat.shape == (48, 48) and e.heat.min() >= 0 and e.heat.max() <= 1 for e in found)
    assert np.mean([e.label == label for e, label in zip(found, labels[:6], strict=True)]) >= 0.8
