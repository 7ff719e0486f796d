"""Train the S10 ResNet on CIFAR-10 with the assignment's recipe, headless.

    python train.py                      # LR finder, then 24 epochs of One Cycle
    python train.py --epochs 1 --subset 5000
    python train.py --lr-max 1e-2 --lr-min 1e-4   # skip the finder
    python train.py --resume runs/20261128-101500  # continue an interrupted run

Writes DIR/metrics.json, DIR/checkpoint.pt (every epoch) and the plots into the run folder
(--out, default a new folder under runs/). The notebook S10.ipynb calls the same functions.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

import utils
from models.resnet import ResNet

CHECKPOINT = "checkpoint.pt"
# settings that describe the machine, not the experiment: a resumed run may change them
MACHINE_SETTINGS = {"device", "workers", "data_dir"}


def _flag_type(annotation, default):
    if isinstance(annotation, types.UnionType):  # "float | None" -> float
        annotation = next(t for t in annotation.__args__ if t is not type(None))
    return annotation if annotation in (int, float, str) else type(default)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, annotation, default in utils.config_fields():
        flag = "--" + name.replace("_", "-")
        # SUPPRESS: only flags given on the command line appear, so --resume can spot conflicts
        if annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=f"default: {default}")
        else:
            parser.add_argument(flag, dest=name, type=_flag_type(annotation, default),
                                default=argparse.SUPPRESS, help=f"default: {default}")
    parser.add_argument("--out", type=Path, help="run folder (default: a new folder under runs/)")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the run in DIR from its last checkpoint, with its saved config")
    return parser


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def resolve_run(args):
    """(config, run folder, checkpoint or None) from the parsed flags."""
    given = {k: v for k, v in vars(args).items() if k not in ("out", "resume")}
    if args.resume is None:
        out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        if (out / CHECKPOINT).exists():
            raise utils.ConfigError(f"{out} already holds a run: continue it with --resume {out}, "
                                    "or choose another --out")
        return utils.Config(**given), out, None
    if args.out is not None and args.out != args.resume:
        raise utils.ConfigError("--resume continues the run in its own folder: drop --out")
    checkpoint = utils.load_checkpoint(args.resume / CHECKPOINT)
    saved = checkpoint["config"]
    conflicts = [f"--{k.replace('_', '-')} {v} (the run has {saved[k]})" for k, v in given.items()
                 if k not in MACHINE_SETTINGS and v != saved[k]]
    if conflicts:
        raise utils.ConfigError(f"these flags conflict with the saved config of {args.resume}: "
                                f"{'; '.join(conflicts)}. Drop them to resume, or start a new run.")
    return utils.Config(**{**saved, **given}), args.resume, checkpoint


def choose_lrs(cfg, model, optimizer, criterion, train_loader, device, log):
    """LR_max, LR_min and the finder's record: from the flags, else from an LR range test."""
    if cfg.lr_max is not None:
        return cfg.lr_max, cfg.lr_min, None
    log(f"LR finder: {cfg.finder_steps} steps from {cfg.finder_start_lr:g} to {cfg.finder_end_lr:g}")
    sweep = utils.lr_range_test(model, optimizer, criterion, train_loader, device,
                                cfg.finder_start_lr, cfg.finder_end_lr, cfg.finder_steps)
    lr_max, lr_min, notes = utils.suggest_lrs(sweep["lrs"], sweep["losses"])
    for note in notes:
        log(f"warning: {note}")
    log(f"LR_max = {lr_max:.3e}, LR_min = {lr_min:.3e}")
    return lr_max, lr_min, {**sweep, "notes": notes}


def save_plots(out, history, finder, lr_max, lr_min, steps_per_epoch, extras):
    figures = {"history.png": utils.plot_history(history["epochs"]),
               "lr_schedule.png": utils.plot_lr_schedule(history["lrs"], steps_per_epoch), **extras}
    if finder is not None:
        figures["lr_finder.png"] = utils.plot_lr_finder(finder["lrs"], finder["losses"], lr_max, lr_min)
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110)


def run(cfg, out, checkpoint=None, log=print):
    """The whole pipeline; returns the metrics dict it writes to out/metrics.json."""
    utils.validate_config(cfg)
    device = utils.get_device(cfg.device)
    utils.seed_everything(cfg.seed)
    data = utils.load_cifar10(cfg.data_dir)
    train_loader, test_loader, mean, std = utils.make_loaders(data, cfg, device)
    out.mkdir(parents=True, exist_ok=True)
    log(f"device: {device}; data: {data['source']}; {len(train_loader.dataset)} train / "
        f"{len(test_loader.dataset)} test images; run folder: {out}")

    model = ResNet(dropout=cfg.dropout).to(device)
    if cfg.channels_last:  # convolutions then keep activations in NHWC too
        model = model.to(memory_format=torch.channels_last)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = utils.make_optimizer(model, cfg)
    if checkpoint is None:
        lr_max, lr_min, finder = choose_lrs(cfg, model, optimizer, criterion, train_loader, device, log)
        history, seconds_before = None, 0.0
    else:
        lr_max, lr_min, finder = checkpoint["lr_max"], checkpoint["lr_min"], checkpoint["lr_finder"]
        history, seconds_before = checkpoint["history"], checkpoint["seconds"]
        log(f"resuming after epoch {len(history['epochs'])} of {cfg.epochs}")
    scheduler = utils.make_scheduler(optimizer, lr_max, lr_min, cfg.epochs, len(train_loader), cfg.pct_start)
    if checkpoint is not None:
        utils.restore_training_state(checkpoint, model, optimizer, scheduler)

    started = time.perf_counter()
    base = {"config": cfg.to_dict(), "device": str(device), "data": data["source"],
            "commit": git_commit(), "torch": str(torch.__version__), "lr_max": lr_max, "lr_min": lr_min,
            "lr_finder": finder, "mean": mean, "std": std}

    def metrics(history, complete):
        return {**base, "complete": complete, "seconds": seconds_before + time.perf_counter() - started,
                "lrs": history["lrs"], "epochs": history["epochs"]}

    def on_epoch_end(history):
        state = metrics(history, complete=False)
        utils.save_checkpoint(out / CHECKPOINT, model, optimizer, scheduler,
                              {**state, "history": history})
        utils.write_json(out / "metrics.json", state)

    history = utils.fit(model, train_loader, test_loader, optimizer, scheduler, criterion, device,
                        cfg.epochs, seed=cfg.seed, history=history, on_epoch_end=on_epoch_end, log=log)
    result = metrics(history, complete=True)
    utils.write_json(out / "metrics.json", result)

    preds, targets = utils.predict(model, test_loader, device)
    wrong = (preds != targets).nonzero()[0][:32]
    samples, sample_labels = utils.augmented_samples(train_loader.dataset, mean, std, seed=cfg.seed)
    save_plots(out, history, finder, lr_max, lr_min, len(train_loader), {
        "augmented_samples.png": utils.plot_samples(samples, sample_labels),
        "misclassified.png": utils.plot_misclassified(data["test_x"][wrong], targets[wrong], preds[wrong]),
        "confusion_matrix.png": utils.plot_confusion_matrix(utils.confusion_matrix(preds, targets)),
    })
    last = history["epochs"][-1]
    log(f"done: test accuracy {last['test_acc']:.2f}% after {last['epoch']} epochs; "
        f"{result['seconds']:.0f} s; metrics in {out / 'metrics.json'}")
    return result


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        cfg, out, checkpoint = resolve_run(args)
        run(cfg, out, checkpoint)
    except utils.S10Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is saved; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
