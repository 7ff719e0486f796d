"""Files a run leaves: the checkpoint (model, optimizer, schedule, grad scaler, RNG states and
plain data) and JSON records, each written atomically; checkpoints are read back without running
anything."""
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from s10.config import ConfigError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "rng", "config", "history", "lr_max", "lr_min"}


def write_json(path, obj):
    """Write JSON atomically: a reader (or a kill) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


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
    atomically: written to a temporary file, then renamed, so a kill leaves the previous
    checkpoint intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_states(),
                "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
                **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    """A checkpoint written by save_checkpoint, loaded with weights_only=True (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}: the run there has not finished an epoch yet "
                          "(start it again with the same flags) or the folder is wrong")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle: all mean "not a usable checkpoint"
        lines = str(e).splitlines() or [""]
        reason = next((l.strip() for l in lines if "WeightsUnpickler error" in l), lines[0])
        raise ConfigError(f"{path} is not a readable checkpoint of this project ({reason}); "
                          "nothing in it was run") from None
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
