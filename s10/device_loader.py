"""A CIFAR-10 loader that keeps the whole split on the training device and augments whole batches.

`data.make_loaders` otherwise augments one image at a time on the CPU (albumentations, in
DataLoader workers), then copies every batch to the device. On a GPU that CPU work, not the
model, sets the pace. `DeviceLoader` copies the uint8 images to the device once (50,000 images are 150 MB)
and makes each batch with a few tensor ops over the whole batch: no per-image CPU work, no
worker processes, no host-to-device copy per step. The idea is KellerJordan/cifar10-airbench's
loader; the augmentation is ours, `augment.train_transforms` in distribution, with the same
constants (augment.PAD, augment.HOLE, augment.hole_fill):

    reflect pad by 4 + random 32x32 crop, horizontal flip (p=0.5),
    one 8x8 hole filled with the mean pixel (in each image with probability cutout_p), normalise.

All randomness comes from one torch.Generator on the device, so a pass is a function of the
seed given to `set_seed` (fit() reseeds every epoch through data.reseed_loader).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from s10.augment import HOLE, PAD, hole_fill


def random_crop(images, height, width, generator):
    """A height x width window of each image, its top-left uniform over every place it fits."""
    n, channels, full_height, full_width = images.shape
    device = images.device
    top = torch.randint(0, full_height - height + 1, (n, 1), device=device, generator=generator)
    left = torch.randint(0, full_width - width + 1, (n, 1), device=device, generator=generator)
    rows = top + torch.arange(height, device=device)
    cols = left + torch.arange(width, device=device)
    # one gather for the whole batch: the indices broadcast to (n, channels, height, width)
    return images[torch.arange(n, device=device)[:, None, None, None],
                  torch.arange(channels, device=device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(images, generator):
    """Each image mirrored left-right with probability 0.5."""
    flip = torch.rand(len(images), device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def cutout(images, size, fill, generator, p=1.0):
    """One size x size hole per image with probability p, wholly inside it, filled with `fill`
    (a value a channel)."""
    n, _, height, width = images.shape
    device = images.device
    top = torch.randint(0, height - size + 1, (n, 1, 1, 1), device=device, generator=generator)
    left = torch.randint(0, width - size + 1, (n, 1, 1, 1), device=device, generator=generator)
    rows = torch.arange(height, device=device).view(1, 1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, 1, width)
    hole = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    if p < 1:  # no extra draw at p = 1, so the default's batches stay what they were
        hole &= (torch.rand(n, device=device, generator=generator) < p).view(n, 1, 1, 1)
    return torch.where(hole, fill.view(1, -1, 1, 1), images)


def _check_data(images, labels, batch_size):
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[-1] != 3:
        raise ValueError("images must be a uint8 numpy array N x H x W x 3 (as cifar.load_cifar10 "
                         f"returns), got {getattr(images, 'dtype', type(images).__name__)} "
                         f"{getattr(images, 'shape', '')}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels: give one label per image")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")


class DeviceLoader:
    """Batches of (normalised float32 NCHW images, int64 labels), both on `device`.

    Looks enough like a DataLoader for the engine's loops: iterable, len() is the number of
    batches (the last may be partial), `.dataset` (the uint8 images and labels) and `.batch_size`.
    images: uint8 N x H x W x 3 numpy (as cifar.load_cifar10); mean, std: per channel on the
    0..1 scale (as cifar.channel_stats). train=True: shuffled and augmented (crop, flip, a hole
    with chance cutout_p); train=False: normalised only, in order.
    """

    def __init__(self, images, labels, batch_size, mean, std, device, *, train=True, seed=0,
                 channels_last=False, cutout_p=1.0):
        _check_data(images, labels, batch_size)
        if not 0 <= cutout_p <= 1:
            raise ValueError(f"cutout_p must be in [0, 1], got {cutout_p!r}")
        self.device = torch.device(device)
        # copied to the device once, as uint8 NCHW: a quarter of the memory of float32;
        # each batch is converted as it is made
        self.images = torch.tensor(images, device=self.device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        self.dataset = TensorDataset(self.images, self.labels)
        self.batch_size, self.train, self.channels_last = batch_size, train, channels_last
        self.cutout_p = cutout_p
        # the hole is cut on the 0..255 image, with the pixel train_transforms fills it with
        self.fill = torch.tensor(hole_fill(mean), dtype=torch.float32, device=self.device)
        mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.scale, self.shift = (1 / (std * 255)).view(1, 3, 1, 1), (mean / std).view(1, 3, 1, 1)
        self.generator = torch.Generator(device=self.device)
        self.set_seed(seed)

    def set_seed(self, seed):
        """Make the next pass (shuffle and augmentation) a function of `seed` alone."""
        self.generator.manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        count = len(self.images)
        order = (torch.randperm(count, device=self.device, generator=self.generator)
                 if self.train else None)
        for start in range(0, count, self.batch_size):
            stop = start + self.batch_size
            # in order, a slice: a view, no gather
            index = slice(start, stop) if order is None else order[start:stop]
            yield self._prepare(self.images[index]), self.labels[index]

    def _prepare(self, images):
        """uint8 NCHW -> augmented (when training), normalised float32 NCHW."""
        pixels = images.float()
        if self.train:
            height, width = pixels.shape[-2:]
            pixels = F.pad(pixels, (PAD,) * 4, mode="reflect")  # == cv2.BORDER_REFLECT_101
            pixels = random_crop(pixels, height, width, self.generator)
            pixels = random_flip(pixels, self.generator)
            # before normalising, so the hole normalises to ~0 as in train_transforms
            pixels = cutout(pixels, HOLE, self.fill, self.generator, self.cutout_p)
        pixels = pixels * self.scale - self.shift
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return pixels
