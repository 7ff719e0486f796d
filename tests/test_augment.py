"""Augmentation: shapes, the cutout hole, the crop as a shift of the padded image, no warnings."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s10 import augment
from s10.augment import train_transforms

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
MEAN_PIXEL = np.round(np.array(MEAN) * 255)


def to_pixels(tensor):
    """Undo Normalize + ToTensorV2: back to HWC on the 0..255 scale."""
    return (tensor.permute(1, 2, 0).numpy() * np.array(STD) + np.array(MEAN)) * 255


def black_and_white_image(seed):
    # values 0 and 255 only: padding, cropping and flipping keep them, the mean-filled hole does not
    return (np.random.default_rng(seed).integers(0, 2, (32, 32, 3)) * 255).astype(np.uint8)


def test_train_transform_output_is_a_normalised_float_tensor():
    out = train_transforms(MEAN, STD)(image=black_and_white_image(0))["image"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 32, 32)


@pytest.mark.parametrize("seed", range(5))
def test_one_8x8_hole_filled_with_the_mean(seed):
    transform = train_transforms(MEAN, STD)
    transform.set_random_seed(seed)
    pixels = to_pixels(transform(image=black_and_white_image(seed))["image"])
    hole = np.all(np.abs(pixels - MEAN_PIXEL) < 1e-3, axis=-1)
    rows, cols = np.nonzero(hole)
    assert hole.sum() == 64
    assert rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7


def test_crop_is_a_shift_of_the_reflect_padded_image():
    image = black_and_white_image(42)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")  # == cv2 BORDER_REFLECT_101
    transform = train_transforms(MEAN, STD)
    offsets, flips = set(), 0
    for seed in range(60):
        transform.set_random_seed(seed)
        pixels = to_pixels(transform(image=image)["image"])
        keep = ~np.all(np.abs(pixels - MEAN_PIXEL) < 1e-3, axis=-1)  # ignore the hole
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if np.allclose(_crop(padded, dy, dx, flip)[keep], pixels[keep], atol=1e-3)]
        assert matches, f"seed {seed}: output is no crop of the padded image"
        offsets.update((dy, dx) for dy, dx, _ in matches)
        flips += matches[0][2]
    assert {dy for dy, _ in offsets} == set(range(9)) and {dx for _, dx in offsets} == set(range(9))
    assert 15 <= flips <= 45  # p = 0.5 over 60 draws


def _crop(padded, dy, dx, flip):
    crop = padded[dy:dy + 32, dx:dx + 32]
    return crop[:, ::-1] if flip else crop


def test_eval_transforms_only_normalise():
    image = black_and_white_image(3)
    out = augment.eval_transforms(MEAN, STD)(image=image)["image"]
    expected = (image / 255.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_no_warnings_and_no_update_check():
    # a fresh interpreter with every warning an error: importing, building and applying both
    code = ("import numpy as np; from s10 import augment; img = np.zeros((32, 32, 3), np.uint8);"
            "augment.train_transforms((0.5,) * 3, (0.25,) * 3)(image=img);"
            "augment.eval_transforms((0.5,) * 3, (0.25,) * 3)(image=img);"
            "import os; print(os.environ['NO_ALBUMENTATIONS_UPDATE'])")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}  # s10.augment sets it
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                            text=True, cwd=Path(augment.__file__).parents[1], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.strip() == "1"
