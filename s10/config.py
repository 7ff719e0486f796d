"""The run's settings: the Config dataclass (each field a train.py flag, its help text beside
it), the checks that refuse settings which cannot work, and the errors a user can fix."""
import math
from dataclasses import asdict, dataclass, field, fields

from s10.lr_rules import RULES


class S10Error(Exception):
    """An error the user can fix: the message says what is wrong and what to do."""


class DataError(S10Error):
    """The data folder, or a file in it, cannot be used."""


class ConfigError(S10Error):
    """A setting, a run folder or a checkpoint that cannot work."""


class DivergedError(S10Error):
    """The training loss became NaN or infinite."""


class SaveError(S10Error):
    """A checkpoint or a record could not be written (a full disk, a folder gone)."""


LOADERS = ("auto", "albumentations", "device")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")



def setting(default, help, shown=None):
    """A Config field with its help text for train.py's --help; `shown`: how the default reads
    there, where the value itself does not (5/24, not 0.20833333333333334)."""
    return field(default=default, metadata={"help": help, "shown": shown})


@dataclass
class Config:
    """Every setting of a run. `train.py`'s flags come from these fields, their help from the texts."""
    data_dir: str = setting("", "folder that holds cifar-10-batches-py/", shown="$S10_DATA, else ./data")
    epochs: int = setting(24, "training epochs")
    batch_size: int = setting(512, "images per batch")
    lr_max: float | None = setting(None, "One Cycle's peak LR; give both LRs to skip the LR finder",
                                   shown="the LR finder's pick")
    lr_min: float | None = setting(None, "One Cycle's first and last LR", shown="the LR finder's pick")
    lr_max_factor: float = setting(1.0, "the finder's LR_max: this x the LR at the sweep's lowest loss, "
                                        "in (0, 1]; 1 beat 0.1 on a validation split (docs/experiments.md)")
    pct_start: float = setting(5 / 24, "share of the steps over which the LR rises: One Cycle peaks "
                                       "at the end of epoch 5 of 24", shown="5/24")
    dropout: float = setting(0.05, "dropout after every conv; small, as cutout already regularises")
    weight_decay: float = setting(0.0, "Adam's weight decay (L2); 0 is plain Adam, as the assignment asks")
    decay_norm_and_bias: bool = setting(True, "weight decay also on BatchNorm weights and biases; "
                                              "--no-decay-norm-and-bias leaves them undecayed")
    label_smoothing: float = setting(0.0, "CrossEntropyLoss's label smoothing, in [0, 1): still the "
                                          "assignment's loss")
    cutout_p: float = setting(1.0, "chance of the 8x8 hole in each training image; 1 cuts one in every image")
    channels_last: bool = setting(True, "NHWC layout: faster convolutions (measured by bench.py)")
    precision: str = setting("auto", "auto (bf16 on CUDA from Ampere and on CPUs with bf16 instructions, "
                                     "fp16 + grad scaler on older GPUs, else fp32) | bf16 (only where "
                                     "native) | fp16 (with a grad scaler, as on a T4; on any GPU) | fp32")
    loader: str = setting("auto", "albumentations | device (the whole dataset on the device, "
                                  "augmented a batch at a time) | auto (device on CUDA)")
    tta: bool = setting(True, "also report accuracy with horizontal-flip test-time augmentation, "
                              "beside (never instead of) the plain accuracy")
    compile: bool = setting(False, "torch.compile the model (CUDA only)")
    subset: int | None = setting(None, "train on the first N training images (quick runs)", shown="all")
    eval_subset: int | None = setting(None, "evaluate on the first N evaluation images, test or validation "
                                            "(quick runs)", shown="all")
    val_split: int = setting(0, "N > 0: hold out the last N training images and evaluate on them "
                                "instead of the test set (to choose settings honestly)")
    finder_start_lr: float = setting(1e-7, "the LR finder's first LR")
    finder_end_lr: float = setting(10.0, "the LR finder's last LR")
    finder_steps: int = setting(100, "steps of the LR finder's exponential sweep")
    finder_repeats: int = setting(1, "LR sweeps from the same weights, each on its own batches, their "
                                     "losses averaged before the rule reads them")
    finder_rule: str = setting("ema-min", "how LR_max and LR_min are read off the sweep: "
                                          "ema-min (the finder's smoothed minimum) or a lag-free rule "
                                          "of s10/lr_rules.py (docs/lr_finder.md)")
    seed: int = setting(1, "seeds Python, numpy and torch; each epoch reseeds from (seed, epoch)")
    device: str = setting("auto", "auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")
    workers: int | None = setting(None, "DataLoader worker processes",
                                  shown="none on CPU, up to 4 on a GPU")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A Config from saved values; names this version does not know are dropped."""
        if "amp" in values and "precision" not in values:  # saved before --precision replaced --amp
            values = {**values, "precision": "auto" if values["amp"] else "fp32"}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# the small run: every step on 1,024 training and 1,000 test images in a few minutes on 2 CPU
# cores (the notebook's smoke mode, train.py --smoke, the experiments' --smoke). Evaluating all
# 10,000 test images would be most of its time on a CPU, and flip TTA would double that (the TTA
# path has its own tests).
SMOKE = {"subset": 1024, "eval_subset": 1000, "batch_size": 128, "epochs": 2, "finder_steps": 12, "tta": False}


def config_fields():
    """(name, type, default, help) of every Config field, for building CLI flags; the help ends
    with the default as a reader would write it."""
    return [(f.name, f.type, f.default,
             f"{f.metadata['help']} (default: {f.metadata['shown'] or f.default})") for f in fields(Config)]


def eval_set(cfg):
    """What each epoch is evaluated on, the one name every log line, figure and record uses:
    "test", or with `val_split` "validation" (the last val_split training images, held out)."""
    return "validation" if cfg.val_split else "test"


def validate_config(cfg):
    """Raise ConfigError naming the first setting that cannot work. The device is checked where
    it is chosen, by device.get_device."""
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "finder_steps": cfg.finder_steps,
                "finder_repeats": cfg.finder_repeats}
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
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing!r}")
    if not 0 <= cfg.cutout_p <= 1:
        raise ConfigError(f"cutout_p must be in [0, 1], got {cfg.cutout_p!r}")
    for name in ("subset", "eval_subset"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ConfigError(f"{name} must be a positive number of images, got {value!r}")
    if not isinstance(cfg.val_split, int) or cfg.val_split < 0:
        raise ConfigError(f"val_split must be a whole number of images >= 0, got {cfg.val_split!r}")
    if cfg.workers is not None and cfg.workers < 0:
        raise ConfigError(f"workers must be >= 0, got {cfg.workers!r}")
    if cfg.finder_rule not in RULES:
        raise ConfigError(f"finder_rule must be one of {', '.join(RULES)}, got {cfg.finder_rule!r}")
    if cfg.loader not in LOADERS:
        raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {cfg.loader!r}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
