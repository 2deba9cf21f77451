"""Training images: the model's normalisation (the same arithmetic serving uses), and seeded augmentation."""

import numpy as np
import pytest
import torch

from cvops.config import AugmentParams
from cvops.data.augment import ImageDataset, augmentation
from cvops.data.preprocess import model_inputs

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NO_AUGMENT = AugmentParams(hflip=0, vflip=0, rotate90=0, brightness_contrast=0, shift_scale_rotate=0)
ALWAYS = AugmentParams(hflip=1, vflip=1, rotate90=1, brightness_contrast=1, shift_scale_rotate=1)


def _images(n=4, size=16):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_dataset_normalises_to_a_chw_float_tensor_as_serving_does():
    images = np.full((1, 10, 12, 3), 200, dtype=np.uint8)
    out, _ = ImageDataset(images, np.array([0]), MEAN, STD)[0]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 10, 12)
    for c in range(3):
        expected = (200 / 255 - MEAN[c]) / STD[c]
        assert torch.allclose(out[c], torch.full((10, 12), expected), atol=1e-5)
    assert np.array_equal(out.numpy(), model_inputs(images, MEAN, STD)[0])  # byte for byte the serving input


def test_without_augmentation_training_sees_the_evaluation_input():
    images, labels = _images(), np.arange(4)
    plain = ImageDataset(images, labels, MEAN, STD)
    augmented = ImageDataset(images, labels, MEAN, STD, augmentation(NO_AUGMENT, seed=0))
    assert all(torch.equal(plain[i][0], augmented[i][0]) for i in range(4))


def test_augmentation_changes_the_image():
    images, labels = _images(1), np.array([0])
    plain = ImageDataset(images, labels, MEAN, STD)
    augmented = ImageDataset(images, labels, MEAN, STD, augmentation(ALWAYS, seed=0))
    assert not torch.equal(plain[0][0], augmented[0][0])


def test_augmentation_is_reproducible_from_the_seed():
    params = AugmentParams(hflip=0.5, vflip=0.5, rotate90=0.5, brightness_contrast=0.5, shift_scale_rotate=0.5)
    a, b = (augmentation(params, seed=3) for _ in range(2))
    other = augmentation(params, seed=4)
    outputs = [(a(image=im)["image"], b(image=im)["image"], other(image=im)["image"]) for im in _images(6)]
    assert all(np.array_equal(x, y) for x, y, _ in outputs)
    assert not all(np.array_equal(x, z) for x, _, z in outputs)


def test_dataset_yields_int_labels_and_checks_lengths():
    dataset = ImageDataset(_images(3), np.array([0, 1, 0]), MEAN, STD)
    image, label = dataset[1]
    assert len(dataset) == 3 and image.shape == (3, 16, 16) and label == 1 and isinstance(label, int)
    with pytest.raises(ValueError):
        ImageDataset(_images(3), np.array([0, 1]), MEAN, STD)
