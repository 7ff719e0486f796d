"""The run's settings: the Config dataclass (each field a train.py flag), the checks that refuse
settings which cannot work, and the errors a user can fix."""
import math
from dataclasses import asdict, dataclass, fields


class S10Error(Exception):
    """An error the user can fix: the message says what is wrong and what to do."""


class DataError(S10Error):
    """The data folder, or a file in it, cannot be used."""


class ConfigError(S10Error):
    """A setting, a run folder or a checkpoint that cannot work."""


class DivergedError(S10Error):
    """The training loss became NaN or infinite."""


LOADERS = ("auto", "albumentations", "device")


@dataclass
class Config:
    """Every setting of a run. `train.py`'s flags come from these fields."""
    data_dir: str = ""            # "" -> $S10_DATA, else ./data
    epochs: int = 24
    batch_size: int = 512
    lr_max: float | None = None   # give both LRs to skip the LR finder
    lr_min: float | None = None
    lr_max_factor: float = 1.0    # finder: LR_max = this x the LR at the sweep's lowest loss
                                  # (1 beat 0.1 on a validation split; see the README)
    pct_start: float = 5 / 24     # One Cycle peaks at the end of epoch 5 of 24
    dropout: float = 0.05         # small: every conv has one, and cutout already regularises
    weight_decay: float = 0.0     # plain Adam, as the assignment asks
    cutout_p: float = 1.0         # chance of the 8x8 hole in each image (1: in every image)
    channels_last: bool = True    # NHWC layout: faster convolutions (measured by bench.py)
    amp: bool = True              # mixed precision: bf16 (CUDA from Ampere, CPUs with bf16
                                  # instructions), fp16 + grad scaler (older GPUs), else fp32
    loader: str = "auto"          # albumentations | device (whole dataset on the device) | auto
    tta: bool = False             # also report test accuracy with horizontal-flip TTA
    compile: bool = False         # torch.compile the model (CUDA only)
    subset: int | None = None     # train on the first N training images (quick runs)
    val_split: int = 0            # N > 0: hold out the last N training images and evaluate on
                                  # them instead of the test set (to choose settings honestly)
    finder_start_lr: float = 1e-7
    finder_end_lr: float = 10.0
    finder_steps: int = 100
    seed: int = 1
    device: str = "auto"          # auto: CUDA, else MPS, else CPU
    workers: int | None = None    # None: suited to the device (see default_workers)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A Config from saved values; names this version does not know are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def config_fields():
    """(name, type, default) of every Config field, for building CLI flags."""
    return [(f.name, f.type, f.default) for f in fields(Config)]


def eval_kind(cfg):
    """What each epoch is evaluated on: "test", or with `val_split` "validation" (held-out
    training images)."""
    return "validation" if cfg.val_split else "test"


def evaluation_name(cfg):
    """'Test set' or 'Validation set', as the log's evaluation line names it."""
    return f"{eval_kind(cfg).capitalize()} set"


def validate_config(cfg):
    """Raise ConfigError naming the first setting that cannot work. The device is checked where
    it is chosen, by device.get_device."""
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "finder_steps": cfg.finder_steps}
    for name, value in positive.items():
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    if (cfg.lr_max is None) != (cfg.lr_min is None):
        raise ConfigError("give both --lr-max and --lr-min (to skip the LR finder) or neither")
    for name in ("lr_max", "lr_min", "finder_start_lr", "finder_end_lr"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if cfg.lr_max is not None and cfg.lr_min >= cfg.lr_max:
        raise ConfigError(f"lr_min ({cfg.lr_min:g}) must be smaller than lr_max ({cfg.lr_max:g})")
    if not 0 < cfg.lr_max_factor <= 1:  # past the lowest loss the sweep's loss only rises
        raise ConfigError(f"lr_max_factor must be in (0, 1], got {cfg.lr_max_factor!r}")
    if cfg.finder_start_lr >= cfg.finder_end_lr:
        raise ConfigError("finder_start_lr must be smaller than finder_end_lr")
    if not 0 < cfg.pct_start < 1:
        raise ConfigError(f"pct_start must be between 0 and 1, got {cfg.pct_start!r}")
    if not 0 <= cfg.dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout!r}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {cfg.weight_decay!r}")
    if not 0 <= cfg.cutout_p <= 1:
        raise ConfigError(f"cutout_p must be in [0, 1], got {cfg.cutout_p!r}")
    if cfg.subset is not None and cfg.subset <= 0:
        raise ConfigError(f"subset must be a positive number of images, got {cfg.subset!r}")
    if not isinstance(cfg.val_split, int) or cfg.val_split < 0:
        raise ConfigError(f"val_split must be a whole number of images >= 0, got {cfg.val_split!r}")
    if cfg.workers is not None and cfg.workers < 0:
        raise ConfigError(f"workers must be >= 0, got {cfg.workers!r}")
    if cfg.loader not in LOADERS:
        raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {cfg.loader!r}")
