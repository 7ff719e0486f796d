"""Training and evaluating in reduced precision on the CPU: bf16 steps, a skipped fp16 step, and a
T4's path (fp16 with a grad scaler, the device loader) through a run killed and resumed."""
import json
import warnings

import pytest
import torch
from torch import nn

from s10.cifar import load_cifar10
from s10.config import Config
from s10.data import make_loaders
from s10.engine import evaluate, predict, train_one_epoch
from s10.lr import make_scheduler
from s10.recipe import build_model, make_optimizer
from tests.conftest import CPU, TinyNet, comparable, kill_in_epoch_2, run_cli, scheduled_lrs


def tiny_training(tiny_data, model, epochs=1):
    """(train_loader, test_loader, optimizer, scheduler) for `model` on the tiny data, LRs 5e-3 / 5e-5."""
    cfg = Config(batch_size=50, lr_max=5e-3, lr_min=5e-5, workers=0)
    train_loader, test_loader, _, _ = make_loaders(load_cifar10(tiny_data, download=False), cfg, CPU)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.lr_max, cfg.lr_min, epochs, len(train_loader), cfg.pct_start)
    return train_loader, test_loader, optimizer, scheduler


def test_a_training_epoch_under_bf16_autocast_keeps_the_weights_fp32(tiny_data):
    model = TinyNet()
    train_loader, _, optimizer, scheduler = tiny_training(tiny_data, model)
    seen = set()
    model.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    result = train_one_epoch(model, train_loader, optimizer, scheduler, nn.CrossEntropyLoss(), CPU,
                             amp_dtype=torch.bfloat16)
    assert seen == {torch.bfloat16} and len(result["lrs"]) == 4
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32


def test_predictions_agree_with_the_reported_accuracy_under_bf16(tiny_data):
    model = build_model(Config(), CPU)  # the ResNet: bf16 rounding could set the two apart
    _, test_loader, _, _ = tiny_training(tiny_data, model)
    result = evaluate(model, test_loader, nn.CrossEntropyLoss(), CPU, amp_dtype=torch.bfloat16)
    preds, targets = predict(model, test_loader, CPU, amp_dtype=torch.bfloat16)
    assert int((preds == targets).sum()) == result["correct"] and len(preds) == result["total"]


class SkipsEveryStep:
    """A GradScaler as fp16 behaves after an overflow: the optimizer step is skipped."""

    def scale(self, loss):
        return loss

    def step(self, optimizer):
        pass

    def update(self):
        pass


def test_a_skipped_fp16_step_keeps_the_schedule_moving_without_a_warning(tiny_data):
    model = TinyNet()
    train_loader, _, optimizer, scheduler = tiny_training(tiny_data, model, epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train_one_epoch(model, train_loader, optimizer, scheduler, nn.CrossEntropyLoss(),
                                 CPU, scaler=SkipsEveryStep())
    assert result["lrs"] == pytest.approx(scheduled_lrs(5e-3, 5e-5, 2, len(train_loader))[:len(train_loader)])

# A T4's recipe on the CPU: fp16 autocast with a grad scaler (the precision autocast_dtype gives a
# GPU older than Ampere). The ResNet's fp16 convolution backward takes about a minute a step on a
# CPU (torch 2.14), so a small net stands in; the data, loader, finder, schedule, scaler,
# checkpoints and resume are the real ones. The runs draw no figures (seconds each on a small CPU).
FP16_LIKE_A_T4 = """
import torch
import train
from s10 import device, recipe
from tests.conftest import TinyNet
device.cpu_autocast_dtype = lambda: torch.float16
recipe.build_model = lambda cfg, dev: TinyNet(cfg.dropout).to(dev, memory_format=torch.channels_last)
train.save_plots = lambda *args, **kwargs: None
"""


def test_a_t4s_path_fp16_with_a_grad_scaler_and_the_device_loader_resumes_after_sigkill(tiny_data, tmp_path):
    args = ["--data-dir", tiny_data, "--epochs", 3, "--batch-size", 50, "--finder-steps", 8, "--loader", "device"]
    whole = run_cli(*args, "--out", tmp_path / "whole", prelude=FP16_LIKE_A_T4)
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    kill_in_epoch_2(*args, "--out", killed, log=tmp_path / "killed.log", prelude=FP16_LIKE_A_T4)
    checkpoint = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert len(checkpoint["record"]["epochs"]) == 1
    assert checkpoint["scaler"]["scale"] > 0  # an active scaler's state, saved with the run

    resumed = run_cli("--resume", killed, prelude=FP16_LIKE_A_T4)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1 of 3; so far:" in resumed.stdout and "LR finder" not in resumed.stdout
    expected, got = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("whole", "killed"))
    assert (expected["precision"], expected["loader"]) == ("float16", "device")
    assert len(expected["lr_finder"]["lrs"]) > 0 and got["complete"]
    assert got["lrs"] == expected["lrs"] and comparable(got) == comparable(expected)
