"""Checks of a finished run's final model: loading a run folder, the fit check (its accuracy on
its own training images beside its evaluation set's) and the precision check (float32 against
bf16 and fp16 on its evaluation set), and the command line both scripts share."""
import argparse
import sys
from pathlib import Path

import torch

from s10 import engine
from s10.augment import eval_transforms
from s10.cifar import load_cifar10
from s10.config import Config, ConfigError, S10Error
from s10.data import CIFAR10Dataset, split_data
from s10.device import device_name, get_device, precision_dtype, precision_name
from s10.recipe import EVAL_CRITERION, build_model
from s10.record import CHECKPOINT, load_checkpoint


def load_run(run_dir, data_dir=None, device="auto"):
    """(config, record, data, model with the run's last weights, device) of a run folder. Never
    downloads: the data must be what the run used, already here (split_data refuses a folder
    with fewer training images than the run's subset)."""
    checkpoint = load_checkpoint(Path(run_dir) / CHECKPOINT)
    record = checkpoint["record"]
    cfg = Config.from_dict(record.config)
    if data_dir is not None:
        cfg.data_dir = str(data_dir)
    device = get_device(device)
    data = load_cifar10(cfg.data_dir, download=False)
    model = build_model(cfg, device)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as e:
        raise ConfigError(f"the checkpoint's weights do not fit this repository's model: "
                          f"{str(e).splitlines()[0]}") from None
    return cfg, record, data, model, device


def plain_loader(images, labels, record, batch_size):
    """Images without augmentation, normalised with the run's own statistics."""
    dataset = CIFAR10Dataset(images, labels, eval_transforms(record.mean, record.std))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size)


def training_fit(run_dir, data_dir=None, device="auto"):
    """{"training_images": evaluate() on the run's own training images, un-augmented,
    "eval": the run's last evaluation, "eval_set", "epoch", "epochs"} for the run in `run_dir`."""
    cfg, record, data, model, device = load_run(run_dir, data_dir, device)
    train_x, train_y, _, _ = split_data(data, cfg)
    loader = plain_loader(train_x, train_y, record, cfg.batch_size)
    # the precision the run evaluated in, so the two numbers printed are comparable
    training_images = engine.evaluate(model, loader, EVAL_CRITERION, device, amp_dtype=precision_dtype(record.precision))
    return {"training_images": training_images, "eval": record.epochs[-1]["eval"], "eval_set": record.eval_set,
            "epoch": len(record.epochs), "epochs": cfg.epochs}


def format_fit(fit):
    rows = [("training images, un-augmented", fit["training_images"]), (f"{fit['eval_set']} set", fit["eval"])]
    lines = [f"after epoch {fit['epoch']} of {fit['epochs']}:"]
    for name, r in rows:
        lines.append(f"  {name + ':':32s} accuracy {r['acc']:6.2f}% ({r['correct']}/{r['total']}), "
                     f"loss {r['loss']:.4f}")
    lines.append(f"  gap: {fit['training_images']['acc'] - fit['eval']['acc']:.2f} points of accuracy")
    return "\n".join(lines)


def precisions_for(device):
    """The autocast dtypes to compare on `device` (None: float32, no autocast)."""
    if device.type == "cuda":
        return [None, torch.bfloat16, torch.float16]
    if device.type == "cpu":  # bf16 runs everywhere on a CPU: natively or emulated (slower)
        return [None, torch.bfloat16]
    return [None]


def precision_check(run_dir, data_dir=None, device="auto"):
    """{"eval_set", "recorded": the run's last evaluation, "recorded_precision", "device",
    "results": {precision name: evaluate()'s result + "changed": predictions unlike float32's}}."""
    cfg, record, data, model, device = load_run(run_dir, data_dir, device)
    _, _, eval_x, eval_y = split_data(data, cfg)
    loader = plain_loader(eval_x, eval_y, record, cfg.batch_size)
    results, reference = {}, None
    for dtype in precisions_for(device):
        result = engine.evaluate(model, loader, EVAL_CRITERION, device, amp_dtype=dtype)
        preds, _ = engine.predict(model, loader, device, dtype)
        reference = preds if reference is None else reference
        result["changed"] = int((preds != reference).sum())
        results[precision_name(dtype)] = result
    return {"eval_set": record.eval_set, "recorded": record.epochs[-1]["eval"],
            "recorded_precision": record.precision, "device": device_name(device), "results": results}


def format_precision_check(check):
    lines = [f"{check['eval_set'].capitalize()} set, the final model, on {check['device']}; the run recorded "
             f"{check['recorded']['acc']:.2f}% in {check['recorded_precision']}:"]
    for name, r in check["results"].items():
        lines.append(f"  {name:9s} accuracy {r['acc']:6.2f}% ({r['correct']}/{r['total']}), "
                     f"loss {r['loss']:.4f}; {r['changed']} predictions unlike float32's")
    return "\n".join(lines)


def check_main(description, check, render, argv=None):
    """The command line of the run checks: RUN_DIR [--data-dir DIR] [--device D]; prints
    render(check(run_dir, data_dir, device)), or one error line and exit status 2."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run_dir", type=Path, help="a run folder written by train.py or the notebook")
    parser.add_argument("--data-dir", help="where the data is (default: the run's own data_dir)")
    parser.add_argument("--device", default="auto", help="default: auto")
    args = parser.parse_args(argv)
    try:
        print(render(check(args.run_dir, args.data_dir, args.device)))
    except S10Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
