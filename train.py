"""Train the S10 ResNet on CIFAR-10 with the assignment's recipe, headless.

    python train.py                      # LR finder, then 24 epochs of One Cycle
    python train.py --epochs 1 --subset 5000
    python train.py --lr-max 1e-2 --lr-min 1e-4   # skip the finder
    python train.py --resume runs/20261128-101500  # continue an interrupted run
    python train.py --seeds 3 --out runs/default   # seeds 1-3 in runs/default/seed1..3, and
                                                   # their mean and spread in summary.json

Writes DIR/metrics.json, DIR/checkpoint.pt (every epoch) and the plots into the run folder
(--out, default a new folder under runs/). The notebook S10.ipynb calls the same functions.
"""
import argparse
import contextlib
import sys
import time
import types
import warnings
from pathlib import Path


import seeds
import utils
from s10.run_lock import run_folder_lock


def _flag_type(annotation, default):
    if isinstance(annotation, types.UnionType):  # "float | None" -> float
        annotation = next(t for t in annotation.__args__ if t is not type(None))
    return annotation if annotation in (int, float, str) else type(default)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, annotation, default, text in utils.config_fields():
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
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="train N runs, seeds --seed .. --seed+N-1, in OUT/seed<k>, and write "
                             "their mean and spread to OUT/summary.json; the same command again "
                             "continues or skips each seed's run")
    return parser


def given_settings(args):
    """The config settings given on the command line (the others are absent: SUPPRESS)."""
    return {k: v for k, v in vars(args).items() if k not in ("out", "resume", "seeds")}


def resumed_config(checkpoint, given, run_dir):
    """The saved config of a run being continued, with the given flags, which must not change
    what the run trains."""
    cfg = utils.Config.from_dict({**checkpoint["config"], **given})
    conflicts = utils.config_conflicts(checkpoint["config"], cfg)
    if conflicts:
        listed = "; ".join(f"--{k.replace('_', '-')} {new} (the run has {old})"
                           for k, (new, old) in conflicts.items())
        raise utils.ConfigError(f"these flags conflict with the saved config of {run_dir}: "
                                f"{listed}. Drop them to resume, or start a new run.")
    return cfg


def resolve_run(args, locks=None):
    """(config, run folder, checkpoint or None) from the parsed flags. Given `locks` (an
    ExitStack), the run folder's lock joins it before anything in the folder is read."""
    given = given_settings(args)
    if args.resume is None:
        out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        utils.check_run_folder(out)  # now, not after the data loading and the LR sweep
        if locks is not None:
            locks.enter_context(run_folder_lock(out))
        if (out / utils.CHECKPOINT).exists():
            raise utils.ConfigError(f"{out} already holds a run: continue it with --resume {out}, "
                                    "or choose another --out")
        return utils.Config(**given), out, None
    if args.out is not None and args.out != args.resume:
        raise utils.ConfigError("--resume continues the run in its own folder: drop --out")
    if locks is not None and args.resume.is_dir():  # else load_checkpoint says there is no run
        locks.enter_context(run_folder_lock(args.resume))
    checkpoint = utils.load_checkpoint(args.resume / utils.CHECKPOINT)
    return resumed_config(checkpoint, given, args.resume), args.resume, checkpoint


def resolve_seed_runs(args, locks=None):
    """[(config, run folder, checkpoint or None)] of each seed of --seeds: a seed folder that
    holds a checkpoint is continued (or, finished, only reported), the others start. Given `locks`
    (an ExitStack), every seed folder's lock joins it first: the series is one writer."""
    if args.seeds < 1:
        raise utils.ConfigError(f"--seeds must be a positive number of runs, got {args.seeds}")
    if args.resume is not None:
        raise utils.ConfigError("--seeds continues its runs when the same command is given again "
                                "(with --out): drop --resume")
    given = given_settings(args)
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    utils.check_run_folder(out)  # now, not after the first seed's data loading
    first = given.pop("seed", utils.Config().seed)
    run_dirs = seeds.seed_dirs(out, first, args.seeds)
    for run_dir in run_dirs if locks is not None else ():
        locks.enter_context(run_folder_lock(run_dir))
    runs = []
    for seed, run_dir in zip(range(first, first + args.seeds), run_dirs):
        if (run_dir / utils.CHECKPOINT).exists():
            checkpoint = utils.load_checkpoint(run_dir / utils.CHECKPOINT)
            runs.append((resumed_config(checkpoint, {**given, "seed": seed}, run_dir), run_dir, checkpoint))
        else:
            runs.append((utils.Config(**given, seed=seed), run_dir, None))
    for cfg, _, _ in runs:  # every seed's settings checked before the first trains
        utils.validate_config(cfg)
    return out, runs


def save_plots(out, cfg, metrics, model, data, loaders, mean, std, device):
    """The run's figures, drawn from its metrics and final model, as PNGs in `out`."""
    train_loader, test_loader = loaders
    preds, targets = utils.predict(model, test_loader, device, utils.autocast_dtype(cfg, device))
    eval_images = utils.split_data(data, cfg)[2]  # what test_loader holds, in its order
    kind = utils.eval_kind(cfg)  # "test" or "validation"
    wrong = (preds != targets).nonzero()[0][:32]
    samples = utils.augmented_samples(data["train_x"], mean, std, cutout_p=cfg.cutout_p)
    figures = {
        "augmented_samples.png": utils.plot_samples(samples, data["train_y"][:len(samples)]),
        "history.png": utils.plot_history(metrics["epochs"], kind),
        "lr_schedule.png": utils.plot_lr_schedule(metrics["lrs"], len(train_loader)),
        "misclassified.png": utils.plot_misclassified(eval_images[wrong], targets[wrong], preds[wrong]),
        "confusion_matrix.png": utils.plot_confusion_matrix(utils.confusion_matrix(preds, targets),
                                                            eval_name=f"{kind} set"),
    }
    finder = metrics["lr_finder"]
    if finder is not None:
        figures["lr_finder.png"] = utils.plot_lr_finder(finder["lrs"], finder["losses"],
                                                        metrics["lr_max"], metrics["lr_min"])
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110)


def run(cfg, out, checkpoint=None, log=print):
    """The whole pipeline; returns the metrics dict it writes to out/metrics.json."""
    commit = utils.git_commit()  # now: the checkout may change while the run goes on
    utils.validate_config(cfg)
    device = utils.get_device(cfg.device)
    precision = utils.precision_name(utils.autocast_dtype(cfg, device))  # refused now, not after the data
    utils.seed_everything(cfg.seed)
    data = utils.load_cifar10(cfg.data_dir)
    train_loader, test_loader, mean, std = utils.make_loaders(data, cfg, device)
    held_out = f"validation images (the last {cfg.val_split} training images)" if cfg.val_split else "test images"
    log(f"device: {device}, {precision}; data: {data['source']}; {len(train_loader.dataset)} train / "
        f"{len(test_loader.dataset)} {held_out}; run folder: {out}")

    model = utils.build_model(cfg, device)
    criterion = utils.make_criterion(cfg)
    optimizer = utils.make_optimizer(model, cfg)
    lr_max, lr_min, finder = utils.choose_lrs(cfg, model, optimizer, criterion, train_loader,
                                              device, checkpoint, log)
    record = utils.run_record(cfg, device, data, lr_max, lr_min, finder, mean, std, commit)
    metrics = utils.train_with_checkpoints(out, cfg, model, optimizer, criterion, train_loader,
                                           test_loader, device, record, checkpoint, log)
    save_plots(out, cfg, metrics, model, data, (train_loader, test_loader), mean, std, device)
    last = metrics["epochs"][-1]
    log(f"done: {utils.eval_kind(cfg)} accuracy {last['test_acc']:.2f}% after {last['epoch']} epochs; "
        f"{metrics['seconds']:.0f} s; metrics in {out / 'metrics.json'}")
    return metrics


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
                    summary = seeds.write_summary(out, [r for _, r, _ in runs])
        if out is not None:
            log(f"\n{seeds.format_summary(summary)}\nsummary in {out / seeds.SUMMARY}")
    except utils.S10Error as e:
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
