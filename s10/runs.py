"""A run: its folder, a new record or the one its checkpoint holds, the epochs left, and a
checkpoint and metrics.json after every epoch. The notebook's training cell is `train_epochs`'s
loop, written out."""
import subprocess
import time
from pathlib import Path

import torch

from s10.config import Config, ConfigError, eval_set
from s10.data import resolve_loader
from s10.device import device_name, precision_name
from s10.engine import format_eval_line
from s10.run_lock import hold_run_folder
from s10.record import (CHECKPOINT, RunRecord, load_checkpoint, read_record, restore_training_state,
                        save_checkpoint, write_record)

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


def take_run_folder(run_dir):
    """Make `run_dir` and hold its lock until this process ends; returns it as a Path. The
    notebook takes its folder so before its first figure, and open_run again (a process may take
    a folder it holds). ConfigError if it cannot be a folder, FolderInUse if another process
    writes there."""
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    hold_run_folder(run_dir)  # one writer: a train.py or another kernel on the folder is refused
    return run_dir


def config_conflicts(saved, cfg):
    """Settings of `cfg` that differ from a saved run's config (runtime settings may differ); a
    setting the saved run predates counts as its default (Config.from_dict), which it ran with."""
    saved = Config.from_dict(saved).to_dict()
    return {name: (value, saved[name]) for name, value in cfg.to_dict().items()
            if name not in RUNTIME_SETTINGS and saved[name] != value}


def check_same_config(saved, cfg, run_dir):
    """ConfigError if `cfg` would train something else than the run saved in `run_dir` (its
    config `saved`): the one check, and the one message, for train.py --resume and the notebook."""
    conflicts = config_conflicts(saved, cfg)
    if conflicts:
        listed = "; ".join(f"{k} = {new!r} (the run has {old!r})" for k, (new, old) in conflicts.items())
        raise ConfigError(f"{run_dir} holds a run with other settings: {listed}. To continue it, drop "
                          "these settings (train.py's flags, the notebook's settings); to start again, "
                          "use another run folder or delete this one.")


def find_checkpoint(run_dir, cfg=None):
    """The last checkpoint in `run_dir`, or None if it has none; with `cfg`, refuses a run
    whose saved config differs, so an edited config never silently continues an old run."""
    if not (Path(run_dir) / CHECKPOINT).exists():
        return None
    checkpoint = load_checkpoint(Path(run_dir) / CHECKPOINT)
    if cfg is not None:
        check_same_config(checkpoint["record"].config, cfg, run_dir)
    return checkpoint


def git_commit():
    """The checked-out commit of this repository, or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_record(cfg, recipe, data, mean, std, finder, commit=None):
    """The record of a new run, before its first epoch; `recipe` holds its LRs (schedule()).

    `commit`: read it when the run starts (the checkout may move on during a long LR sweep);
    by default it is read now.
    """
    return RunRecord(config=cfg.to_dict(), eval_set=eval_set(cfg), device=device_name(recipe.device),
                     precision=precision_name(recipe.amp_dtype), loader=resolve_loader(cfg, recipe.device),
                     data=data["source"], commit=commit or git_commit(), torch=str(torch.__version__),
                     lr_max=recipe.lr_max, lr_min=recipe.lr_min, lr_finder=finder,
                     mean=list(mean), std=list(std))  # lists, as JSON reads them back


class Run:
    """A run folder being trained: its record, and a checkpoint after every epoch."""

    def __init__(self, run_dir, recipe, record, log=print):
        self.run_dir, self.recipe, self.record, self.log = Path(run_dir), recipe, record, log
        self.eval_set = record.eval_set
        self._seconds_before, self._opened = record.seconds, time.perf_counter()
        self._epoch_started = None

    def epochs_left(self):
        """The 0-based epochs still to train, each announced as the assignment's log does."""
        epochs = self.record.config["epochs"]
        for epoch in range(len(self.record.epochs), epochs):
            self.log(f"Epoch {epoch + 1}/{epochs}")
            self._epoch_started = time.perf_counter()
            yield epoch

    def save_epoch(self, train, result):
        """Add an epoch (recipe.train_epoch's and recipe.evaluate's results) to the record, then
        write the checkpoint and metrics.json; the last epoch marks the record complete."""
        record, now = self.record, time.perf_counter()
        record.lrs += train["lrs"]
        record.epochs.append({"epoch": len(record.epochs) + 1, "train_loss": train["train_loss"],
                              "train_acc": train["train_acc"], "eval": result,
                              "seconds": now - self._epoch_started})
        record.seconds = self._seconds_before + now - self._opened
        record.complete = len(record.epochs) >= record.config["epochs"]
        save_checkpoint(self.run_dir / CHECKPOINT, self.recipe, record)
        write_record(self.run_dir, record)


def _show_history(run_dir, record, log):
    """Log the epochs a checkpoint holds, as they were logged when they ran."""
    epochs = record.config["epochs"]
    log(f"{run_dir} holds a finished run of {epochs} epochs:" if record.complete else
        f"resuming {run_dir} after epoch {len(record.epochs)} of {epochs}; so far:")
    for epoch in record.epochs:
        log(f"Epoch {epoch['epoch']}/{epochs} (from the checkpoint)\n"
            f"Train: Loss={epoch['train_loss']:.4f} Accuracy={epoch['train_acc']:.2f}\n"
            + format_eval_line(epoch["eval"], record.eval_set))


def _resumed(saved, record):
    """The saved record, continued: it keeps the commit, device, precision and loader it started
    with, and lists this session's beside the epoch it resumes after."""
    session = {k: getattr(record, k) for k in ("commit", "device", "precision", "loader")}
    saved.resumed.append({"after_epoch": len(saved.epochs), **session})
    return saved


def open_run(run_dir, recipe, record, checkpoint=None, log=print):
    """The run in `run_dir`: a new one with `record`, or, given its checkpoint, the run it holds,
    restored into `recipe` (same schedule step, same RNG) with its epochs so far logged. A
    finished run trains nothing; its metrics.json is completed from the checkpoint if a stop
    cut it short. This process holds the folder's lock from here until it ends (take_run_folder).
    """
    run_dir = take_run_folder(run_dir)
    if checkpoint is None:
        return Run(run_dir, recipe, record, log)
    restore_training_state(checkpoint, recipe)
    saved = checkpoint["record"]
    _show_history(run_dir, saved, log)
    if saved.complete:  # nothing to train: its record stays as the run wrote it
        if read_record(run_dir) != saved:
            write_record(run_dir, saved)
        return Run(run_dir, recipe, saved, log)
    return Run(run_dir, recipe, _resumed(saved, record), log)


def train_epochs(run, recipe, loaders, log=print):
    """The epochs left of `run`, as the notebook's training cell runs them; returns the record."""
    train_loader, eval_loader = loaders
    for epoch in run.epochs_left():
        train = recipe.train_epoch(train_loader, epoch)
        result = recipe.evaluate(eval_loader)
        log(format_eval_line(result, run.eval_set))
        run.save_epoch(train, result)
    return run.record
