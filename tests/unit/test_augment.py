"""Albumentations pipelines: the model's normalisation, and seeded augmentation."""

import numpy as np
import pytest
import torch

from cvops.config import AugmentParams
from cvops.data.augment import ImageDataset, eval_transform, train_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NO_AUGMENT = AugmentParams(hflip=0, vflip=0, rotate90=0, brightness_contrast=0, shift_scale_rotate=0)
ALWAYS = AugmentParams(hflip=1, vflip=1, rotate90=1, brightness_contrast=1, shift_scale_rotate=1)


def _images(n=4, size=16):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_eval_transform_normalises_to_a_chw_float_tensor():
    image = np.full((10, 12, 3), 200, dtype=np.uint8)
    out = eval_transform(MEAN, STD)(image=image)["image"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape == (3, 10, 12)
    for c in range(3):
        expected = (200 / 255 - MEAN[c]) / STD[c]
        assert torch.allclose(out[c], torch.full((10, 12), expected), atol=1e-5)


def test_train_transform_without_augmentation_equals_eval():
    train, evaluate = train_transform(NO_AUGMENT, MEAN, STD, seed=0), eval_transform(MEAN, STD)
    for image in _images():
        assert torch.equal(train(image=image)["image"], evaluate(image=image)["image"])


def test_train_transform_augments():
    train, evaluate = train_transform(ALWAYS, MEAN, STD, seed=0), eval_transform(MEAN, STD)
    image = _images(1)[0]
    assert not torch.equal(train(image=image)["image"], evaluate(image=image)["image"])


def test_train_transform_is_reproducible_from_the_seed():
    params = AugmentParams(hflip=0.5, vflip=0.5, rotate90=0.5, brightness_contrast=0.5, shift_scale_rotate=0.5)
    a, b = (train_transform(params, MEAN, STD, seed=3) for _ in range(2))
    other = train_transform(params, MEAN, STD, seed=4)
    outputs = [(a(image=im)["image"], b(image=im)["image"], other(image=im)["image"]) for im in _images(6)]
    assert all(torch.equal(x, y) for x, y, _ in outputs)
    assert not all(torch.equal(x, z) for x, _, z in outputs)


def test_dataset_yields_transformed_images_with_int_labels():
    dataset = ImageDataset(_images(3), np.array([0, 1, 0]), eval_transform(MEAN, STD))
    image, label = dataset[1]
    assert len(dataset) == 3 and image.shape == (3, 16, 16) and label == 1 and isinstance(label, int)
    with pytest.raises(ValueError):
        ImageDataset(_images(3), np.array([0, 1]), eval_transform(MEAN, STD))
