"""The augmentation, defined once: its constants (used by both loaders) and the albumentations
pipelines for training images and for the images a model is evaluated on (test or
validation), plus the inverse of their normalisation for plots."""
import os

# albumentations asks PyPI for a newer version on import unless this is set: no network calls.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

IMAGE_SIZE = 32  # CIFAR-10's images are 32 x 32
PAD = 4          # reflect-pad by 4 on every side (to 40 x 40), then crop a random 32 x 32 window;
                 # reflect without repeating the edge: cv2.BORDER_REFLECT_101 == torch's "reflect"
HOLE = 8         # cutout: one 8 x 8 hole, wholly inside the image, filled with hole_fill(mean)


def hole_fill(mean):
    """The hole's pixel: the training images' mean, on the 0..255 scale of the uint8 image the
    hole is cut into, rounded with Python's round()."""
    return tuple(round(m * 255) for m in mean)


def train_transforms(mean, std, cutout_p=1.0):
    """Pad to 40 (reflect) + random crop 32, horizontal flip, one 8x8 hole of the mean (in each
    image with probability `cutout_p`), normalise."""
    padded = IMAGE_SIZE + 2 * PAD
    return A.Compose([
        A.PadIfNeeded(min_height=padded, min_width=padded, border_mode=cv2.BORDER_REFLECT_101),
        A.RandomCrop(height=IMAGE_SIZE, width=IMAGE_SIZE),
        A.HorizontalFlip(p=0.5),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(HOLE, HOLE),
                        hole_width_range=(HOLE, HOLE), fill=hole_fill(mean), p=cutout_p),
        A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
        ToTensorV2(),
    ])


def eval_transforms(mean, std):
    """Normalise only: for the images a model is evaluated on (test or validation)."""
    return A.Compose([A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])


def denormalize(images, mean, std):
    """Normalised NCHW tensors back to NHWC float images in [0, 1] for plotting."""
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
