"""A run: its folder, its record (metrics.json), training with a checkpoint after every epoch,
and continuing an interrupted or finished run from its checkpoint."""
import json
import subprocess
import time
from pathlib import Path

import torch

from s10.checkpoints import CHECKPOINT, load_checkpoint, restore_training_state, save_checkpoint, write_json
from s10.config import Config, ConfigError, eval_kind, evaluation_name
from s10.data import resolve_loader
from s10.device import autocast_dtype, device_name, make_grad_scaler, maybe_compile, precision_name
from s10.engine import fit, format_test_line
from s10.lr import make_scheduler

# settings that change how a run is computed, not what is trained: a resumed run may change them.
# The precision is one: under auto it follows the device anyway (a notebook started on a T4 in
# fp16 may continue on an A100 in bf16), and the record lists each resume's precision
RUNTIME_SETTINGS = {"device", "workers", "data_dir", "precision", "loader", "compile", "tta", "channels_last"}


def check_run_folder(run_dir):
    """Raise ConfigError if `run_dir` cannot become a folder: it, or a folder above it, is a file."""
    for place in (Path(run_dir), *Path(run_dir).parents):
        if place.exists():
            if not place.is_dir():
                raise ConfigError(f"{run_dir} cannot be a run folder: {place} is a file. "
                                  "Choose another run folder (--out)")
            return


def config_conflicts(saved, cfg):
    """Settings of `cfg` that differ from a saved run's config (runtime settings may differ)."""
    # a setting the saved run predates is compared with its default: the run ran with that
    defaults = Config().to_dict()
    return {name: (value, saved.get(name, defaults[name])) for name, value in cfg.to_dict().items()
            if name not in RUNTIME_SETTINGS and saved.get(name, defaults[name]) != value}


def find_checkpoint(run_dir, cfg=None):
    """The last checkpoint in `run_dir`, or None if it has none; with `cfg`, refuses a run
    whose saved config differs, so an edited config never silently continues an old run."""
    if not (Path(run_dir) / CHECKPOINT).exists():
        return None
    checkpoint = load_checkpoint(Path(run_dir) / CHECKPOINT)
    conflicts = config_conflicts(checkpoint["config"], cfg) if cfg is not None else {}
    if conflicts:
        listed = "; ".join(f"{k} = {new!r} (the run has {old!r})" for k, (new, old) in conflicts.items())
        raise ConfigError(f"{run_dir} holds a run with another config: {listed}. "
                          "Use another run folder, or delete this one to start again.")
    return checkpoint


def git_commit():
    """The checked-out commit of this repository, or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_record(cfg, device, data, lr_max, lr_min, finder, mean, std, commit=None):
    """What metrics.json reports about a run besides its config and history.

    `commit`: read it when the run starts (the checkout may move on during a long LR sweep);
    by default it is read now.
    """
    return {"device": device_name(device), "data": data["source"], "commit": commit or git_commit(),
            "precision": precision_name(autocast_dtype(cfg, device)),
            "loader": resolve_loader(cfg, device),
            "evaluated_on": (f"validation split: the last {cfg.val_split} training images (not the test set)"
                             if eval_kind(cfg) == "validation" else "test set"),
            "torch": str(torch.__version__), "lr_max": lr_max, "lr_min": lr_min,
            "lr_finder": finder, "mean": mean, "std": std}


def _show_history(run_dir, cfg, history, log):
    """Log the epochs a checkpoint holds, as fit logged them."""
    finished = len(history["epochs"]) >= cfg.epochs
    log(f"{run_dir} holds a finished run of {cfg.epochs} epochs:" if finished else
        f"resuming {run_dir} after epoch {len(history['epochs'])} of {cfg.epochs}; so far:")
    for epoch in history["epochs"]:
        # runs checkpointed before the counts were recorded show the percentage only
        test = format_test_line(epoch, evaluation_name(cfg)) if "correct" in epoch else \
            f"Test set: Average loss: {epoch['test_loss']:.4f}, Accuracy: {epoch['test_acc']:.2f}%"
        log(f"Epoch {epoch['epoch']}/{cfg.epochs} (from the checkpoint)\n"
            f"Train: Loss={epoch['train_loss']:.4f} Accuracy={epoch['train_acc']:.2f}\n" + test)


def train_with_checkpoints(run_dir, cfg, model, optimizer, criterion, train_loader, test_loader,
                           device, record, checkpoint=None, log=print):
    """fit() with a checkpoint and metrics.json written to `run_dir` after every epoch.

    `record` holds what metrics.json reports besides the history (lr_max, lr_min, data...).
    Given a checkpoint, continues it: same schedule step, same RNG, history kept.
    Returns the metrics dict, also written to run_dir/metrics.json.
    """
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    scheduler = make_scheduler(optimizer, record["lr_max"], record["lr_min"], cfg.epochs,
                               len(train_loader), cfg.pct_start)
    amp_dtype = autocast_dtype(cfg, device)
    scaler = make_grad_scaler(amp_dtype, device)
    history, seconds_before = None, 0.0
    if checkpoint is not None:
        restore_training_state(checkpoint, model, optimizer, scheduler, scaler)
        history, seconds_before = checkpoint["history"], checkpoint["seconds"]
        # the run keeps the commit, device, precision and loader it started with; each resume
        # is listed with its own
        kept = ("commit", "device", "precision", "loader")
        resumed = checkpoint.get("resumed", []) + [{"after_epoch": len(history["epochs"]),
                                                    **{k: record[k] for k in kept}}]
        started_with = {k: checkpoint[k] for k in kept if k in checkpoint}
        record = {**record, **started_with, "resumed": resumed}
        _show_history(run_dir, cfg, history, log)
        if len(history["epochs"]) >= cfg.epochs:  # nothing to train: its record stays as the run wrote it
            return finished_run_metrics(run_dir, checkpoint)
    started = time.perf_counter()

    def metrics(history, complete):
        return {"config": cfg.to_dict(), **record, "complete": complete,
                "seconds": seconds_before + time.perf_counter() - started,
                "lrs": history["lrs"], "epochs": history["epochs"]}

    def on_epoch_end(history):
        state = metrics(history, complete=False)
        save_checkpoint(run_dir / CHECKPOINT, model, optimizer, scheduler, {**state, "history": history},
                        scaler)
        write_json(run_dir / "metrics.json", state)

    # the compiled model shares its parameters with `model`, which the checkpoints save
    history = fit(maybe_compile(model, cfg, device, log), train_loader, test_loader, optimizer,
                  scheduler, criterion, device, cfg.epochs, seed=cfg.seed, history=history,
                  on_epoch_end=on_epoch_end, log=log, tta=cfg.tta, amp_dtype=amp_dtype, scaler=scaler,
                  eval_name=evaluation_name(cfg))
    result = metrics(history, complete=True)
    write_json(run_dir / "metrics.json", result)
    return result


def finished_run_metrics(run_dir, checkpoint):
    """A finished run's record: its metrics.json, or, if the run stopped between its last
    checkpoint and its final metrics.json, the record rebuilt from that checkpoint (and saved)."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        if metrics.get("complete") and len(metrics["epochs"]) == len(checkpoint["history"]["epochs"]):
            return metrics
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    training_state = {"model", "optimizer", "scheduler", "rng", "scaler", "history"}
    metrics = {**{k: v for k, v in checkpoint.items() if k not in training_state}, "complete": True}
    write_json(Path(run_dir) / "metrics.json", metrics)  # completes the record the run left
    return metrics
