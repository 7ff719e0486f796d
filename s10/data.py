"""From arrays to batches: the dataset, the split into training and evaluation images, the
loaders (albumentations in a DataLoader, or the device-resident loader) and their per-epoch
reseeding."""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from s10.augment import eval_transforms, train_transforms
from s10.cifar import channel_stats
from s10.config import ConfigError, eval_set
from s10.device import default_workers
from s10.device_loader import DeviceLoader


class CIFAR10Dataset(Dataset):
    """uint8 HWC images and int labels, passed through an albumentations transform."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(image=self.images[index])["image"], int(self.labels[index])


def _seed_worker_transform(worker_id):
    # every worker holds a copy of the transform's RNG: give each its own seed, drawn from the
    # loader's generator, so workers differ and runs with the same seed repeat
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)


def split_data(data, cfg):
    """(train_x, train_y, eval_x, eval_y): the images each epoch trains and is evaluated on.

    Evaluation is on the test set, or with `cfg.val_split` = N on the last N training images,
    which training then leaves out. `cfg.subset` = N trains on the first N of the rest;
    `cfg.eval_subset` = N evaluates on the first N evaluation images.
    """
    train_x, train_y = data["train_x"], data["train_y"]
    eval_x, eval_y = data["test_x"], data["test_y"]
    if cfg.val_split:
        if cfg.val_split >= len(train_x):
            raise ConfigError(f"val_split {cfg.val_split} leaves none of the {len(train_x)} training images")
        n = cfg.val_split
        train_x, train_y, eval_x, eval_y = train_x[:-n], train_y[:-n], train_x[-n:], train_y[-n:]
    if cfg.subset is not None:
        if cfg.subset > len(train_x):
            raise ConfigError(f"subset {cfg.subset} is larger than the {len(train_x)} training images")
        train_x, train_y = train_x[:cfg.subset], train_y[:cfg.subset]
    if cfg.eval_subset is not None:
        if cfg.eval_subset > len(eval_x):
            raise ConfigError(f"eval_subset {cfg.eval_subset} is larger than the {len(eval_x)} "
                              f"{eval_set(cfg)} images")
        eval_x, eval_y = eval_x[:cfg.eval_subset], eval_y[:cfg.eval_subset]
    return train_x, train_y, eval_x, eval_y


def resolve_loader(cfg, device):
    """auto: the device-resident loader on CUDA, albumentations elsewhere."""
    if cfg.loader != "auto":
        return cfg.loader
    return "device" if device.type == "cuda" else "albumentations"


def make_loaders(data, cfg, device):
    """(train_loader, eval_loader, mean, std) for the config; stats from the training images.
    The evaluation loader holds the evaluation images of `split_data`: the test set, or the
    validation split."""
    train_x, train_y, eval_x, eval_y = split_data(data, cfg)
    mean, std = channel_stats(train_x)
    if resolve_loader(cfg, device) == "device":
        common = {"batch_size": cfg.batch_size, "mean": mean, "std": std, "device": device,
                  "seed": cfg.seed, "channels_last": cfg.channels_last}
        return (DeviceLoader(train_x, train_y, train=True, cutout_p=cfg.cutout_p, **common),
                DeviceLoader(eval_x, eval_y, train=False, **common), mean, std)
    workers = default_workers(device) if cfg.workers is None else cfg.workers
    # no persistent workers: reseed_loader's per-epoch seed must reach fresh workers each epoch
    common = {"batch_size": cfg.batch_size, "num_workers": workers, "pin_memory": device.type == "cuda"}
    augment = train_transforms(mean, std, cfg.cutout_p)
    # seeded as the device loader is: a pass before fit's first reseed (the LR sweep) repeats too
    augment.set_random_seed(cfg.seed)
    train_loader = DataLoader(
        CIFAR10Dataset(train_x, train_y, augment), shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed), worker_init_fn=_seed_worker_transform,
        **common)
    eval_loader = DataLoader(
        CIFAR10Dataset(eval_x, eval_y, eval_transforms(mean, std)), shuffle=False,
        **common)
    return train_loader, eval_loader, mean, std


def epoch_seed(seed, epoch):
    """A seed for one epoch of a run, distinct for every (seed, epoch) pair."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def reseed_loader(loader, seed):
    """Make the next pass over `loader` (shuffle and augmentation) a function of `seed` alone.

    Called once per epoch with (run seed, epoch), so a resumed run sees the same batches.
    """
    if hasattr(loader, "set_seed"):  # the device-resident loader
        loader.set_seed(seed)
        return
    if loader.generator is not None:
        loader.generator.manual_seed(seed)
    if loader.num_workers == 0:  # workers are seeded from the generator instead
        loader.dataset.transform.set_random_seed(seed % 2**32)
