"""What the notebook calls, in the one namespace the course imports: `import utils`.

The notebook's import and nothing else's: train.py, the scripts and the tests import the `s10`
package (one module per concern; its docstring lists them). This module re-exports the names
S10.ipynb uses and holds its own small helpers: its config and run folder, saving a figure, and
formatting the config, the per-class accuracy and the results for printing.
"""
import os
from pathlib import Path

from s10.cifar import CLASSES, load_cifar10
from s10.config import SMOKE, Config, eval_set, validate_config
from s10.data import make_loaders, split_data
from s10.device import get_device, seed_everything
from s10.engine import confusion_matrix, format_eval_line, per_class_accuracy
from s10.lr import choose_lrs
from s10.plots import (FIGURE, augmented_samples, plot_confusion_matrix, plot_history, plot_lr_finder, plot_lr_schedule,
                       plot_misclassified, plot_samples)
from s10.recipe import Recipe
from s10.runs import find_checkpoint, open_run, run_record, take_run_folder

__all__ = [
    "load_cifar10", "Config", "eval_set", "validate_config", "make_loaders", "split_data",
    "get_device", "seed_everything", "confusion_matrix", "format_eval_line", "per_class_accuracy",
    "choose_lrs", "FIGURE", "augmented_samples", "plot_confusion_matrix", "plot_history", "plot_lr_finder",
    "plot_lr_schedule", "plot_misclassified", "plot_samples", "Recipe", "find_checkpoint", "open_run",
    "run_record",
    # the notebook's helpers, below
    "notebook_config", "notebook_run_dir", "format_config", "saved", "show_lr_finder", "format_per_class",
    "format_results",
]


def notebook_config(smoke=None, settings=None):
    """The notebook's config: Config's defaults (the assignment's run), or with `smoke` (None:
    $S10_SMOKE == "1") the small run; then `settings`, the parameters cell's changes."""
    smoke = os.environ.get("S10_SMOKE") == "1" if smoke is None else smoke
    return Config(**{**(SMOKE if smoke else {}), **(settings or {})})


def notebook_run_dir(run_dir=None):
    """The notebook's run folder, for its checkpoint, metrics.json and figures: `run_dir`, else
    $S10_RUN_DIR, else runs/notebook. The kernel holds its lock from here on, before it writes
    the first figure there (FolderInUse if another process writes the folder). Publishing a
    finished run to assets/ is a step of its own (python -m s10.publish RUN_DIR)."""
    return take_run_folder(run_dir or os.environ.get("S10_RUN_DIR") or "runs/notebook")


def format_config(cfg):
    return "\n".join(f"{name:16} {value!r}" for name, value in cfg.to_dict().items())


def saved(figure, path):
    """Save `figure` to `path` (folders made as needed) and return it, for display."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return figure


def show_lr_finder(finder, lr_max, lr_min, path):
    """The LR sweep's plot, saved to `path`; where no sweep ran (both LRs given), a line saying
    which LRs the run uses instead, and None."""
    if finder is None:
        print(f"no LR sweep: the config gives LR_max = {lr_max:.3e} and LR_min = {lr_min:.3e}")
        return None
    return saved(plot_lr_finder(finder["lrs"], finder["losses"], lr_max, lr_min), path)


def format_per_class(counts, classes=CLASSES):
    accuracy = per_class_accuracy(counts)
    return "\n".join(f"{name:12} {acc:6.2f}%  ({counts[i, i]}/{counts[i].sum()})"
                     for i, (name, acc) in enumerate(zip(classes, accuracy)))


def format_results(record):
    """A RunRecord's results as a small markdown-style table."""
    epochs = record.epochs
    last, best = epochs[-1], max(epochs, key=lambda e: e["eval"]["acc"])
    on = record.eval_set
    rows = [("epochs", f"{last['epoch']} of {record.config['epochs']}"),
            (f"{on} accuracy, last epoch", f"{last['eval']['acc']:.2f}%"),
            (f"best {on} accuracy", f"{best['eval']['acc']:.2f}% (epoch {best['epoch']})"),
            *([("with flip TTA, last epoch", f"{last['eval']['acc_tta']:.2f}%")] if "acc_tta" in last["eval"] else []),
            ("train accuracy, last epoch", f"{last['train_acc']:.2f}%"),
            ("seconds per epoch (mean)", f"{sum(e['seconds'] for e in epochs) / len(epochs):.1f}"),
            ("LR_max / LR_min", f"{record.lr_max:.3e} / {record.lr_min:.3e}"),
            ("device, precision", f"{record.device}, {record.precision}"),
            ("data", record.data)]
    return "\n".join(["| result | value |", "|---|---|"] + [f"| {n} | {v} |" for n, v in rows])
