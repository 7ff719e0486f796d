"""How well a run's model fits the images it trained on, beside how it does on held-out ones.

    python check_fit.py RUN_DIR [--data-dir DIR] [--device auto|cpu|cuda|mps]

Loads the model of RUN_DIR's last checkpoint, evaluates it on the run's own training images
without augmentation (normalised with the run's statistics, eval mode, the run's precision), and
prints that beside the run's last evaluation. A model far better on its training images than on
held-out ones generalises poorly: more regularisation or more data is where to look. One that is
poor on both underfits: a larger LR, more epochs or more capacity.
"""
import argparse
import sys
from pathlib import Path

import torch

import utils


def load_run(run_dir, data_dir=None, device="auto"):
    """(config, checkpoint, data, model with the run's last weights, device) of a run folder.
    Never downloads: the data must be what the run used, already here (split_data refuses a
    folder with fewer training images than the run's subset)."""
    checkpoint = utils.load_checkpoint(Path(run_dir) / utils.CHECKPOINT)
    cfg = utils.Config.from_dict(checkpoint["config"])
    if data_dir is not None:
        cfg.data_dir = str(data_dir)
    device = utils.get_device(device)
    data = utils.load_cifar10(cfg.data_dir, download=False)
    model = utils.build_model(cfg, device)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as e:
        raise utils.ConfigError(f"the checkpoint's weights do not fit this repository's model: "
                                f"{str(e).splitlines()[0]}") from None
    return cfg, checkpoint, data, model, device


def plain_loader(images, labels, checkpoint, batch_size):
    """Images without augmentation, normalised with the run's own statistics."""
    dataset = utils.CIFAR10Dataset(images, labels, utils.eval_transforms(checkpoint["mean"], checkpoint["std"]))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size)


def training_fit(run_dir, data_dir=None, device="auto"):
    """{"train": evaluate() on the training images, "held_out": the run's last epoch record,
    "eval_name", "epoch", "epochs"} for the run in `run_dir`."""
    cfg, checkpoint, data, model, device = load_run(run_dir, data_dir, device)
    train_x, train_y, _, _ = utils.split_data(data, cfg)
    loader = plain_loader(train_x, train_y, checkpoint, cfg.batch_size)
    # the precision the run evaluated in, so the two numbers printed are comparable
    amp_dtype = utils.precision_dtype(checkpoint.get("precision"))
    train = utils.evaluate(model, loader, utils.EVAL_CRITERION, device, amp_dtype=amp_dtype)
    epochs = checkpoint["history"]["epochs"]
    return {"train": train, "held_out": epochs[-1], "eval_name": utils.evaluation_name(cfg),
            "epoch": len(epochs), "epochs": cfg.epochs}


def format_fit(fit):
    train, held_out = fit["train"], fit["held_out"]
    rows = [("training images, un-augmented", train), (fit["eval_name"], held_out)]
    lines = [f"after epoch {fit['epoch']} of {fit['epochs']}:"]
    for name, r in rows:
        counts = f" ({r['correct']}/{r['total']})" if "correct" in r else ""
        lines.append(f"  {name + ':':32s} accuracy {r['test_acc']:6.2f}%{counts}, loss {r['test_loss']:.4f}")
    lines.append(f"  gap: {train['test_acc'] - held_out['test_acc']:.2f} points of accuracy")
    return "\n".join(lines)


def run_check(description, check, render, argv=None):
    """The command line shared by the run checks: RUN_DIR [--data-dir DIR] [--device D]; prints
    render(check(run_dir, data_dir, device)), or one error line and exit status 2."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run_dir", type=Path, help="a run folder written by train.py or the notebook")
    parser.add_argument("--data-dir", help="where the data is (default: the run's own data_dir)")
    parser.add_argument("--device", default="auto", help="default: auto")
    args = parser.parse_args(argv)
    try:
        print(render(check(args.run_dir, args.data_dir, args.device)))
    except utils.S10Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    return run_check(__doc__.split("\n")[0], training_fit, format_fit, argv)


if __name__ == "__main__":
    sys.exit(main())
