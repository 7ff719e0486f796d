"""Files a run leaves: the checkpoint (model, optimizer, schedule, grad scaler, RNG states and
plain data) and JSON records, each written atomically and read back without running anything."""
import contextlib
import json
import os
import pickle
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from s10.config import ConfigError, SaveError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "rng", "config", "history", "lr_max", "lr_min"}


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


def save_checkpoint(path, model, optimizer, scheduler, state, scaler=None):
    """Model, optimizer, scheduler, grad scaler, RNG states and `state` (plain data) to `path`,
    atomically: written to a temporary file, then renamed, so a kill or a full disk leaves the
    previous checkpoint intact."""
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "rng": _rng_states(),
                  "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
                  **state}
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
    """A checkpoint written by save_checkpoint, loaded with weights_only=True (no code runs)."""
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
        raise ConfigError(f"{path} is not a checkpoint of this project (no {', '.join(sorted(missing))})")
    return checkpoint


def restore_training_state(checkpoint, model, optimizer, scheduler, scaler=None):
    """Load model, optimizer, scheduler, grad scaler and RNG states from a loaded checkpoint."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_states(checkpoint["rng"])
