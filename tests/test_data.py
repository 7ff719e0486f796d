"""From arrays to batches: the validation split, the loader's choice, cutout_p in both loaders,
worker processes seeded apart and repeatably."""
import numpy as np
import pytest
import torch

from s10.cifar import channel_stats, load_cifar10
from s10.config import Config
from s10.data import make_loaders, reseed_loader, resolve_loader, split_data
from tests.conftest import CPU


def test_a_validation_split_replaces_the_test_set_with_held_out_training_images(tiny_data):
    data = load_cifar10(tiny_data, download=False)
    cfg = Config(val_split=150, workers=0)  # more images than the 100 of the tiny test set
    train_loader, val_loader, mean, std = make_loaders(data, cfg, CPU)
    assert np.array_equal(val_loader.dataset.images, data["train_x"][-150:])
    assert np.array_equal(train_loader.dataset.images, data["train_x"][:-150])
    assert np.array_equal(split_data(data, cfg)[2], data["train_x"][-150:])  # what the plots show
    assert (mean, std) == channel_stats(data["train_x"][:-150])  # nothing learnt from held-out images


@pytest.mark.parametrize("val_split", [0, 150])
def test_eval_subset_evaluates_the_first_images_of_the_evaluation_set(tiny_data, val_split):
    data = load_cifar10(tiny_data, download=False)
    whole, quick = Config(val_split=val_split, subset=30), Config(val_split=val_split, subset=30, eval_subset=40)
    train_x, _, eval_x, eval_y = split_data(data, whole)
    got = split_data(data, quick)
    assert np.array_equal(got[0], train_x)  # training is untouched
    assert np.array_equal(got[2], eval_x[:40]) and np.array_equal(got[3], eval_y[:40])


def test_auto_picks_the_device_loader_on_cuda_only():
    assert resolve_loader(Config(), CPU) == "albumentations"
    assert resolve_loader(Config(), torch.device("cuda")) == "device"
    assert resolve_loader(Config(loader="device"), CPU) == "device"


@pytest.mark.parametrize("loader", ["albumentations", "device"])
@pytest.mark.parametrize("cutout_p, low, high", [(0.0, 0, 0), (0.5, 70, 130), (1.0, 200, 200)])
def test_cutout_p_is_the_chance_of_the_hole_in_each_loader(tiny_data, loader, cutout_p, low, high):
    cfg = Config(batch_size=50, workers=0, loader=loader, cutout_p=cutout_p)
    train_loader, _, mean, std = make_loaders(load_cifar10(tiny_data, download=False), cfg, CPU)
    # the hole's pixel once normalised; the noisy class colours almost never hit it exactly
    fill = torch.tensor([(round(m * 255) / 255 - m) / s for m, s in zip(mean, std)])
    holes = 0
    for images, _ in train_loader:
        same = (images - fill.view(1, 3, 1, 1)).abs().lt(1e-4).all(dim=1)
        holes += int((same.sum(dim=(1, 2)) >= 64).sum())
    assert low <= holes <= high  # p = 0.5 over 200 images: 100 +- 4 standard deviations (7.1)


@pytest.mark.parametrize("loader", ["albumentations", "device"])
def test_the_first_pass_repeats_with_the_seed_before_any_reseed(tiny_data, loader):
    # the LR sweep draws its batches before fit reseeds the loader for epoch 1
    data = load_cifar10(tiny_data, download=False)

    def first_batch(seed):
        return next(iter(make_loaders(data, Config(batch_size=50, workers=0, loader=loader, seed=seed), CPU)[0]))[0]
    assert torch.equal(first_batch(1), first_batch(1)) and not torch.equal(first_batch(1), first_batch(2))


def test_worker_processes_repeat_with_the_seed_and_differ_from_each_other(tiny_data):
    data = load_cifar10(tiny_data, download=False)
    # every training image the same: batches then differ only through the augmentation
    data["train_x"][:] = data["train_x"][0]
    loader, _, _, _ = make_loaders(data, Config(batch_size=50, workers=2), CPU)

    def epoch(seed):
        reseed_loader(loader, seed)
        return [images for images, _ in loader]

    first, again, other = epoch(3), epoch(3), epoch(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    # batches 0 and 1 come from different workers, which must not share one random stream
    assert not torch.equal(first[0], first[1])
