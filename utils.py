"""What the notebook calls, in the one namespace the course imports: `import utils`.

The code lives in the `s10` package, one module per concern (its docstring lists them). This
module re-exports the public names that S10.ipynb, train.py, check_fit.py and bench.py use, and
holds the notebook's own small helpers: its config and folders, saving a figure, and formatting
the config, the per-class accuracy and the results for printing.
"""
import os
from pathlib import Path

from s10.augment import eval_transforms, train_transforms
from s10.checkpoints import CHECKPOINT, load_checkpoint, write_json
from s10.cifar import CLASSES, load_cifar10
from s10.config import (Config, ConfigError, DataError, DivergedError, S10Error, SaveError, config_fields,
                        eval_kind, evaluation_name, validate_config)
from s10.data import CIFAR10Dataset, make_loaders, resolve_loader, split_data
from s10.device import (autocast_dtype, device_name, get_device, make_grad_scaler, precision_dtype,
                        precision_name, seed_everything)
from s10.engine import (EVAL_CRITERION, build_model, confusion_matrix, evaluate, make_criterion, make_optimizer,
                        per_class_accuracy, predict, train_one_epoch)
from s10.lr import choose_lrs, make_scheduler
from s10.plots import (augmented_samples, plot_confusion_matrix, plot_history, plot_lr_finder, plot_lr_schedule,
                       plot_misclassified, plot_samples)
from s10.runs import (check_run_folder, config_conflicts, find_checkpoint, git_commit, run_record,
                      train_with_checkpoints)

__all__ = [
    "eval_transforms", "train_transforms",
    "CHECKPOINT", "load_checkpoint", "write_json",
    "CLASSES", "load_cifar10",
    "Config", "ConfigError", "DataError", "DivergedError", "S10Error", "SaveError", "config_fields",
    "eval_kind", "evaluation_name", "validate_config",
    "CIFAR10Dataset", "make_loaders", "resolve_loader", "split_data",
    "autocast_dtype", "device_name", "get_device", "make_grad_scaler", "precision_dtype", "precision_name",
    "seed_everything",
    "EVAL_CRITERION", "build_model", "confusion_matrix", "evaluate", "make_criterion", "make_optimizer",
    "per_class_accuracy", "predict", "train_one_epoch",
    "choose_lrs", "make_scheduler",
    "augmented_samples", "plot_confusion_matrix", "plot_history", "plot_lr_finder", "plot_lr_schedule",
    "plot_misclassified", "plot_samples",
    "check_run_folder", "config_conflicts", "find_checkpoint", "git_commit", "run_record",
    "train_with_checkpoints",
    # the notebook's helpers, below
    "notebook_config", "notebook_dirs", "format_config", "saved", "show_lr_finder", "format_per_class",
    "format_results",
]


def notebook_config(smoke=None):
    """The notebook's config: the assignment's run, or with S10_SMOKE=1 a small run that
    exercises every cell in a few minutes on 2 CPU cores."""
    smoke = os.environ.get("S10_SMOKE") == "1" if smoke is None else smoke
    if not smoke:
        return Config()
    # no flip TTA: it would double the evaluation of the 10,000 test images, the small mode's
    # largest cost on a CPU (the TTA path has its own tests)
    return Config(subset=1024, batch_size=128, epochs=2, finder_steps=12, tta=False)


def notebook_dirs():
    """(run folder, figures folder): $S10_RUN_DIR or runs/notebook, $S10_FIGURES or assets."""
    return (Path(os.environ.get("S10_RUN_DIR") or "runs/notebook"),
            Path(os.environ.get("S10_FIGURES") or "assets"))


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


def format_results(metrics):
    """The run's results as a small markdown-style table."""
    epochs = metrics["epochs"]
    last, best = epochs[-1], max(epochs, key=lambda e: e["test_acc"])
    on = eval_kind(Config.from_dict(metrics["config"]))
    rows = [("epochs", f"{last['epoch']} of {metrics['config']['epochs']}"),
            (f"{on} accuracy, last epoch", f"{last['test_acc']:.2f}%"),
            (f"best {on} accuracy", f"{best['test_acc']:.2f}% (epoch {best['epoch']})"),
            *([("with flip TTA, last epoch", f"{last['test_acc_tta']:.2f}%")] if "test_acc_tta" in last else []),
            ("train accuracy, last epoch", f"{last['train_acc']:.2f}%"),
            ("seconds per epoch (mean)", f"{sum(e['seconds'] for e in epochs) / len(epochs):.1f}"),
            ("LR_max / LR_min", f"{metrics['lr_max']:.3e} / {metrics['lr_min']:.3e}"),
            ("device, precision", f"{metrics['device']}, {metrics.get('precision', 'float32')}"),
            ("data", metrics["data"])]
    return "\n".join(["| result | value |", "|---|---|"] + [f"| {n} | {v} |" for n, v in rows])
