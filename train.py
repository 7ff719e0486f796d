"""Train the S10 ResNet on CIFAR-10 with the assignment's recipe, headless.

    python train.py                      # LR finder, then 24 epochs of One Cycle
    python train.py --epochs 1 --subset 5000
    python train.py --lr-max 1e-2 --lr-min 1e-4   # skip the finder
    python train.py --resume runs/20261128-101500  # continue an interrupted run

Writes DIR/metrics.json, DIR/checkpoint.pt (every epoch) and the plots into the run folder
(--out, default a new folder under runs/). The notebook S10.ipynb calls the same functions.
"""
import argparse
import sys
import time
import types
import warnings
from pathlib import Path

import torch

import utils


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
    return parser


def resolve_run(args):
    """(config, run folder, checkpoint or None) from the parsed flags."""
    given = {k: v for k, v in vars(args).items() if k not in ("out", "resume")}
    if args.resume is None:
        out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        utils.check_run_folder(out)  # now, not after the data loading and the LR sweep
        if (out / utils.CHECKPOINT).exists():
            raise utils.ConfigError(f"{out} already holds a run: continue it with --resume {out}, "
                                    "or choose another --out")
        return utils.Config(**given), out, None
    if args.out is not None and args.out != args.resume:
        raise utils.ConfigError("--resume continues the run in its own folder: drop --out")
    checkpoint = utils.load_checkpoint(args.resume / utils.CHECKPOINT)
    cfg = utils.Config.from_dict({**checkpoint["config"], **given})
    conflicts = utils.config_conflicts(checkpoint["config"], cfg)
    if conflicts:
        listed = "; ".join(f"--{k.replace('_', '-')} {new} (the run has {old})"
                           for k, (new, old) in conflicts.items())
        raise utils.ConfigError(f"these flags conflict with the saved config of {args.resume}: "
                                f"{listed}. Drop them to resume, or start a new run.")
    return cfg, args.resume, checkpoint


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
    utils.seed_everything(cfg.seed)
    data = utils.load_cifar10(cfg.data_dir)
    train_loader, test_loader, mean, std = utils.make_loaders(data, cfg, device)
    held_out = f"validation images (the last {cfg.val_split} training images)" if cfg.val_split else "test images"
    log(f"device: {device}; data: {data['source']}; {len(train_loader.dataset)} train / "
        f"{len(test_loader.dataset)} {held_out}; run folder: {out}")

    model = utils.build_model(cfg, device)
    criterion = torch.nn.CrossEntropyLoss()
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


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        cfg, out, checkpoint = resolve_run(args)
        with warnings.catch_warnings():
            # a warning (the LR finder's fallback) reads as one line here, not a source listing
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
            run(cfg, out, checkpoint, log=lambda line: print(line, flush=True))
    except utils.S10Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is saved; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
