"""What a run leaves in its folder, declared once: the record (metrics.json, a RunRecord) and the
checkpoint (the record plus the training state). Both are written atomically and read back
without running anything; old records are read by one named reader, `_from_first_format`."""
import contextlib
import json
import os
import pickle
import random
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch

from s10.config import Config, ConfigError, SaveError, eval_set

RECORD = "metrics.json"
CHECKPOINT = "checkpoint.pt"
# checkpoint.pt holds these state dicts (the scaler's None when it is disabled), the RNG states
# and "record": the RunRecord as it stood after the epoch
TRAINING_STATE = ("model", "optimizer", "scheduler", "scaler")
CHECKPOINT_KEYS = {*TRAINING_STATE, "rng", "record"}


class EpochRecord(TypedDict):
    """One finished epoch in a RunRecord."""
    epoch: int            # 1-based
    train_loss: float     # the mean training loss over the epoch's batches (as trained: smoothed if so)
    train_acc: float      # % of the epoch's augmented training images classified right
    eval: dict            # engine.evaluate on the evaluation set: loss, acc, correct, total (+ loss_tta, acc_tta)
    seconds: float


@dataclass
class RunRecord:
    """A run's metrics.json; also the plain-data part of its checkpoint."""
    config: dict                 # Config.to_dict() of the run
    eval_set: str                # "test" or "validation": what `eval` in each epoch was measured on
    device: str                  # where the run started (later ones are in `resumed`)
    precision: str               # "bfloat16", "float16" or "float32": the autocast dtype
    loader: str                  # "albumentations" or "device"
    data: str                    # where the images came from
    commit: str | None           # the checkout the run started from
    torch: str
    lr_max: float
    lr_min: float
    lr_finder: dict | None       # the sweep: {"lrs", "losses", "raw_losses", "rule", "notes", "reading"} (the
                                 # oldest records: lrs, losses, notes); None when the config gave both LRs
    mean: list                   # the training images' channel statistics, as normalised
    std: list
    epochs: list[EpochRecord] = field(default_factory=list)
    lrs: list = field(default_factory=list)   # the LR of every training step
    seconds: float = 0.0         # training time over every session of the run
    complete: bool = False       # every epoch of config["epochs"] done
    resumed: list = field(default_factory=list)  # per resume: after_epoch, commit, device, precision, loader
    commit_note: str | None = None  # a correction of `commit`, written by hand

    def to_dict(self):
        values = asdict(self)
        if values["commit_note"] is None:
            del values["commit_note"]
        return values

    @classmethod
    def from_dict(cls, values):
        return cls(**(values if "eval_set" in values else _from_first_format(values)))


def _from_first_format(values):
    """A record in the first format (every record committed before the evaluation set had a name):
    its epochs kept the evaluation under "test_*" keys whatever the set, and `evaluated_on` (absent
    in the oldest) said which set it was."""
    def epoch(e):
        evaluation = {k.removeprefix("test_"): v for k, v in e.items()
                      if k.startswith("test_") or k in ("correct", "total")}
        return {"epoch": e["epoch"], "train_loss": e["train_loss"], "train_acc": e["train_acc"],
                "eval": evaluation, "seconds": e["seconds"]}
    values = {k: v for k, v in values.items() if k != "evaluated_on"}
    evaluated = eval_set(Config.from_dict(values["config"]))
    return {**values, "eval_set": evaluated, "epochs": [epoch(e) for e in values["epochs"]]}


def read_record(run_dir):
    """The RunRecord in run_dir/metrics.json, or None where there is none yet."""
    try:
        return RunRecord.from_dict(json.loads((Path(run_dir) / RECORD).read_text()))
    except FileNotFoundError:
        return None


def write_record(run_dir, record):
    write_json(Path(run_dir) / RECORD, record.to_dict())


def _write_atomically(path, write):
    """write(temporary file), then rename it to `path`: a kill leaves the previous file whole. A
    write that fails (a full disk) removes the temporary file and raises SaveError."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        with contextlib.suppress(OSError):  # torch's own words do not say the disk is full
            reason += f"; {shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free there"
        kept = f"The {path.name} written before is kept" if path.exists() else f"No {path.name} was written yet"
        raise SaveError(f"could not write {path} ({reason}). Is the disk full? {kept}; free "
                        f"some space, then continue from the last checkpoint: train.py --resume {path.parent} "
                        "(in the notebook, run its cells again)") from None


def write_json(path, obj):
    """Write JSON atomically: a reader (or a kill) never sees half a file."""
    text = json.dumps(obj, indent=1)
    _write_atomically(path, lambda tmp: tmp.write_text(text))


def _rng_states():
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()  # the current GPU's: runs use one GPU
    return states


def _set_rng_states(states):
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def save_checkpoint(path, recipe, record):
    """The recipe's training state, the RNG states and `record` to `path`, atomically: written
    to a temporary file, then renamed, so a kill or a full disk leaves the previous checkpoint
    intact."""
    state = {"model": recipe.model.state_dict(), "optimizer": recipe.optimizer.state_dict(),
             "scheduler": recipe.scheduler.state_dict(),
             "scaler": recipe.scaler.state_dict() if recipe.scaler.is_enabled() else None}
    checkpoint = {**state, "rng": _rng_states(), "record": record.to_dict()}
    _write_atomically(path, lambda tmp: torch.save(checkpoint, tmp))


def _refused(path):
    """What torch's safe loader (weights_only=True) refused in `path`, in a few words."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # no zip archive to look into: a bare pickle, or no torch file at all
        return "it is not a file written by torch.save"
    if names:
        return (f"it asks to import {', '.join(names)}, where a checkpoint of this project holds "
                "only tensors and plain values")
    return "it holds pickle instructions that torch's safe loader does not read"


def load_checkpoint(path):
    """A checkpoint written by save_checkpoint, loaded with weights_only=True (no code runs);
    its "record" as a RunRecord."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}: the run there has not finished an epoch yet "
                          "(start it again with the same flags) or the folder is wrong")
    try:
        with warnings.catch_warnings():
            # a bare pickle makes torch warn about its protocol before refusing it: noise here
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # the safe loader refused something
        raise ConfigError(f"{path} is not a readable checkpoint of this project ({_refused(path)}); "
                          "nothing in it was run") from None
    except Exception as e:  # a truncated or damaged archive
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{path} is not a readable checkpoint of this project (truncated or damaged: "
                          f"{reason}); nothing in it was run") from None
    missing = CHECKPOINT_KEYS - set(checkpoint) if isinstance(checkpoint, dict) else CHECKPOINT_KEYS
    if missing:
        raise ConfigError(f"{path} is not a checkpoint of this project, or one written by an older "
                          f"version of it (no {', '.join(sorted(missing))})")
    return {**checkpoint, "record": RunRecord.from_dict(checkpoint["record"])}


def restore_training_state(checkpoint, recipe):
    """Load the recipe's model, optimizer, scheduler and grad scaler, and the RNG states, from a
    loaded checkpoint."""
    recipe.model.load_state_dict(checkpoint["model"])
    recipe.optimizer.load_state_dict(checkpoint["optimizer"])
    recipe.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint["scaler"] is not None:
        recipe.scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_states(checkpoint["rng"])
