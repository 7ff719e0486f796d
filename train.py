"""Train the S10 ResNet on CIFAR-10 with the assignment's recipe, headless.

    python train.py                      # LR finder, then 24 epochs of One Cycle
    python train.py --epochs 1 --subset 5000
    python train.py --lr-max 1e-2 --lr-min 1e-4   # skip the finder
    python train.py --resume runs/20261128-101500  # continue an interrupted run
    python train.py --seeds 3 --out runs/default   # seeds 1-3 in runs/default/seed1..3, and
                                                   # their mean and spread in summary.json

Writes DIR/metrics.json, DIR/checkpoint.pt (every epoch) and the plots into the run folder
(--out, default a new folder under runs/), nowhere else. The notebook S10.ipynb calls the same
functions, in the same order.
"""
import argparse
import contextlib
import sys
import time
import types
import warnings
from pathlib import Path

from s10 import cifar
from s10.config import SMOKE, Config, ConfigError, S10Error, config_fields, eval_set, validate_config
from s10.data import make_loaders, split_data
from s10.device import autocast_dtype, get_device, precision_name, seed_everything
from s10.engine import confusion_matrix
from s10.lr import choose_lrs
from s10.plots import (FIGURE, augmented_samples, plot_confusion_matrix, plot_history, plot_lr_finder, plot_lr_schedule,
                       plot_misclassified, plot_samples)
from s10.recipe import Recipe
from s10.record import CHECKPOINT, RECORD, load_checkpoint
from s10.run_lock import run_folder_lock
from s10.runs import check_run_folder, check_same_config, git_commit, open_run, run_record, train_epochs
from s10.seeds import SUMMARY, format_summary, seed_dirs, write_summary


def _flag_type(annotation, default):
    if isinstance(annotation, types.UnionType):  # "float | None" -> float
        annotation = next(t for t in annotation.__args__ if t is not type(None))
    return annotation if annotation in (int, float, str) else type(default)


def smoke_flags():
    """config.SMOKE as the flags it stands for."""
    def flag(name, value):
        name = name.replace("_", "-")
        return (f"--{name}" if value else f"--no-{name}") if isinstance(value, bool) else f"--{name} {value}"
    return " ".join(flag(name, value) for name, value in SMOKE.items())


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, annotation, default, text in config_fields():
        flag = "--" + name.replace("_", "-")
        text = text.replace("%", "%%")  # argparse formats help texts with %
        # SUPPRESS: only flags given on the command line appear, so --resume can spot conflicts
        if annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, dest=name, type=_flag_type(annotation, default),
                                default=argparse.SUPPRESS, help=text)
    parser.add_argument("--out", type=Path, help="run folder (default: a new folder under runs/)")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the run in DIR from its last checkpoint, with its saved config")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the small run, the notebook's smoke mode: {smoke_flags()}; flags given beside it win")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="train N runs, seeds --seed .. --seed+N-1, in OUT/seed<k>, and write "
                             "their mean and spread to OUT/summary.json; the same command again "
                             "continues or skips each seed's run")
    return parser


def given_settings(args):
    """The config settings given on the command line (the others are absent: SUPPRESS)."""
    given = {k: v for k, v in vars(args).items() if k not in ("out", "resume", "seeds", "smoke")}
    return {**SMOKE, **given} if args.smoke else given


def resumed_config(checkpoint, given, run_dir):
    """The saved config of a run being continued, with the given flags, which must not change
    what the run trains."""
    saved = checkpoint["record"].config
    cfg = Config.from_dict({**saved, **given})
    check_same_config(saved, cfg, run_dir)
    return cfg


def default_out():
    """runs/<date-time>: a new folder for each run started without --out."""
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def resolve_run(args, locks=None):
    """(config, run folder, checkpoint or None) from the parsed flags. Given `locks` (an
    ExitStack), the run folder's lock joins it before anything in the folder is read."""
    given = given_settings(args)
    if args.resume is None:
        out = args.out or default_out()
        check_run_folder(out)  # now, not after the data loading and the LR sweep
        if locks is not None:
            locks.enter_context(run_folder_lock(out))
        if (out / CHECKPOINT).exists():
            raise ConfigError(f"{out} already holds a run: continue it with --resume {out}, "
                                    "or choose another --out")
        return Config(**given), out, None
    if args.out is not None and args.out != args.resume:
        raise ConfigError("--resume continues the run in its own folder: drop --out")
    if locks is not None and args.resume.is_dir():  # else load_checkpoint says there is no run
        locks.enter_context(run_folder_lock(args.resume))
    checkpoint = load_checkpoint(args.resume / CHECKPOINT)
    return resumed_config(checkpoint, given, args.resume), args.resume, checkpoint


def resolve_seed_runs(args, locks=None):
    """[(config, run folder, checkpoint or None)] of each seed of --seeds: a seed folder that
    holds a checkpoint is continued (or, finished, only reported), the others start. Given `locks`
    (an ExitStack), every seed folder's lock joins it first: the series is one writer."""
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be a positive number of runs, got {args.seeds}")
    if args.resume is not None:
        raise ConfigError("--seeds continues its runs when the same command is given again "
                                "(with --out): drop --resume")
    given = given_settings(args)
    out = args.out or default_out()
    check_run_folder(out)  # now, not after the first seed's data loading
    first = given.pop("seed", Config().seed)
    run_dirs = seed_dirs(out, first, args.seeds)
    for run_dir in run_dirs if locks is not None else ():
        locks.enter_context(run_folder_lock(run_dir))
    runs = []
    for seed, run_dir in zip(range(first, first + args.seeds), run_dirs):
        if (run_dir / CHECKPOINT).exists():
            checkpoint = load_checkpoint(run_dir / CHECKPOINT)
            runs.append((resumed_config(checkpoint, {**given, "seed": seed}, run_dir), run_dir, checkpoint))
        else:
            runs.append((Config(**given, seed=seed), run_dir, None))
    for cfg, _, _ in runs:  # every seed's settings checked before the first trains
        validate_config(cfg)
    return out, runs


def save_plots(out, record, recipe, data, loaders):
    """The run's figures, drawn from its record and final model, as PNGs in `out`."""
    train_loader, eval_loader = loaders
    preds, targets = recipe.predict(eval_loader)
    eval_images = split_data(data, recipe.cfg)[2]  # what eval_loader holds, in its order
    wrong = (preds != targets).nonzero()[0][:32]
    samples = augmented_samples(data["train_x"], record.mean, record.std, cutout_p=recipe.cfg.cutout_p)
    figures = {
        FIGURE.raw_samples: plot_samples(data["train_x"][:len(samples)], data["train_y"][:len(samples)]),
        FIGURE.augmented_samples: plot_samples(samples, data["train_y"][:len(samples)]),
        FIGURE.history: plot_history(record.epochs, record.eval_set),
        FIGURE.lr_schedule: plot_lr_schedule(record.lrs, len(train_loader)),
        FIGURE.misclassified: plot_misclassified(eval_images[wrong], targets[wrong], preds[wrong]),
        FIGURE.confusion_matrix: plot_confusion_matrix(confusion_matrix(preds, targets), record.eval_set),
    }
    if record.lr_finder is not None:
        figures[FIGURE.lr_finder] = plot_lr_finder(record.lr_finder["lrs"], record.lr_finder["losses"],
                                                  record.lr_max, record.lr_min)
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110)


def run(cfg, out, checkpoint=None, log=print):
    """The notebook's steps, headless; returns the RunRecord it writes to out/metrics.json."""
    commit = git_commit()  # now: the checkout may change while the run goes on
    validate_config(cfg)
    device = get_device(cfg.device)
    precision = precision_name(autocast_dtype(cfg, device))  # refused now, not after the data
    seed_everything(cfg.seed)
    data = cifar.load_cifar10(cfg.data_dir)
    train_loader, eval_loader, mean, std = make_loaders(data, cfg, device)
    held_out = f"the last {cfg.val_split} training images" if cfg.val_split else ""
    if cfg.eval_subset is not None:
        held_out = f"the first {cfg.eval_subset} of " + (held_out or "the test set")
    log(f"device: {device}, {precision}; data: {data['source']}; {len(train_loader.dataset)} train / "
        f"{len(eval_loader.dataset)} {eval_set(cfg)} images{f' ({held_out})' if held_out else ''}; "
        f"run folder: {out}")

    recipe = Recipe(cfg, device, log)
    lr_max, lr_min, finder = choose_lrs(cfg, recipe, train_loader, checkpoint, log)
    recipe.schedule(lr_max, lr_min, len(train_loader))
    record = run_record(cfg, recipe, data, mean, std, finder, commit)
    training = open_run(out, recipe, record, checkpoint, log)
    record = train_epochs(training, recipe, (train_loader, eval_loader), log)
    save_plots(out, record, recipe, data, (train_loader, eval_loader))
    last = record.epochs[-1]
    log(f"done: {record.eval_set} accuracy {last['eval']['acc']:.2f}% after {last['epoch']} epochs; "
        f"{record.seconds:.0f} s; metrics in {out / RECORD}")
    return record


def log(line):
    print(line, flush=True)


def main(argv=None):
    args = build_parser().parse_args(argv)
    # the run folders' locks, held while the runs go on (the kernel drops them if the process is killed)
    locks = contextlib.ExitStack()
    try:
        if args.seeds is None:
            out, runs = None, [resolve_run(args, locks)]
        else:
            out, runs = resolve_seed_runs(args, locks)
        with warnings.catch_warnings():
            # a warning (the LR finder's fallback) reads as one line here, not a source listing
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
            for index, (cfg, run_dir, checkpoint) in enumerate(runs):
                if out is not None:
                    log(f"seed {cfg.seed} ({index + 1} of {len(runs)}): {run_dir}")
                run(cfg, run_dir, checkpoint, log=log)
                if out is not None:  # after every seed, so a stopped series keeps its summary
                    summary = write_summary(out, [r for _, r, _ in runs])
        if out is not None:
            log(f"\n{format_summary(summary)}\nsummary in {out / SUMMARY}")
    except S10Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "give the same command again" if args.seeds else "continue with --resume"
        print(f"\ninterrupted: the last finished epoch is saved; {again}", file=sys.stderr)
        return 130
    finally:
        locks.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
