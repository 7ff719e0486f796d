"""LR finder (restores the model, readable suggestions) and the One Cycle schedule."""
import math

import numpy as np
import pytest
import torch

from s10.cifar import load_cifar10
from s10.config import Config
from s10.data import make_loaders
from s10.engine import make_optimizer
from s10.lr import FALLBACK_LR_MAX, FALLBACK_RATIO, lr_range_test, make_scheduler, suggest_lrs
from models.resnet import ResNet


def test_suggestions_follow_the_documented_rule():
    lrs = np.logspace(-7, 1, 81)  # 10 points per decade
    log_lr = np.log10(lrs)
    # flat 2.3 up to 1e-4, down to 0.5 at 1e-1, then blowing up
    losses = np.where(log_lr <= -4, 2.3, np.where(log_lr <= -1, 2.3 - 0.6 * (log_lr + 4), 0.5 + 5 * (log_lr + 1)))
    lr_max, lr_min, notes = suggest_lrs(lrs, losses)
    assert notes == []
    assert lr_max == pytest.approx(1e-1)  # the lowest loss
    # 10% of the fall (2.3 -> 0.5) is reached at loss 2.12, i.e. log10(lr) = -4 + 0.3
    assert lr_min == pytest.approx(10 ** -3.7)
    # lr_max_factor scales LR_max alone
    assert suggest_lrs(lrs, losses, lr_max_factor=0.1)[:2] == pytest.approx((1e-2, 10 ** -3.7))


def test_nan_tail_is_ignored():
    lrs = np.logspace(-6, 0, 13)
    losses = [2.3, 2.3, 2.2, 2.0, 1.6, 1.2, 1.0, 0.9, 1.4, float("nan"), float("nan"), 5.0, 9.0]
    lr_max, lr_min, notes = suggest_lrs(lrs, losses)
    assert lr_max == pytest.approx(lrs[7]) and lr_min == pytest.approx(lrs[3]) and notes == []


@pytest.mark.parametrize("losses", [[2.3, 4.0, 9.0, 30.0, 80.0, 200.0], [2.3, float("nan")], []])
def test_a_sweep_that_diverges_at_once_falls_back_with_a_note(losses):
    lr_max, lr_min, notes = suggest_lrs(np.logspace(-7, 1, len(losses)), losses)
    assert (lr_max, lr_min) == (FALLBACK_LR_MAX, FALLBACK_LR_MAX / FALLBACK_RATIO)
    assert len(notes) == 1 and "no usable curve" in notes[0]


def test_range_test_restores_model_and_optimizer(tiny_data):
    cfg = Config(data_dir=str(tiny_data), batch_size=50, workers=0)
    data = load_cifar10(tiny_data, download=False)
    train_loader, _, _, _ = make_loaders(data, cfg, torch.device("cpu"))
    model = ResNet()
    optimizer = make_optimizer(model, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer_before = optimizer.state_dict()
    sweep = lr_range_test(model, optimizer, torch.nn.CrossEntropyLoss(), train_loader,
                                torch.device("cpu"), start_lr=1e-6, end_lr=1.0, steps=12)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert optimizer.state_dict() == optimizer_before
    assert len(sweep["lrs"]) == len(sweep["losses"]) >= 5
    assert sweep["lrs"][0] == pytest.approx(1e-6)
    lr_max, lr_min, _ = suggest_lrs(sweep["lrs"], sweep["losses"])
    assert math.isfinite(lr_max) and math.isfinite(lr_min) and 0 < lr_min < lr_max


class RecordsPrecision(torch.nn.Module):
    """A linear classifier that notes, on each forward pass, the autocast dtype it ran under."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 10)
        self.seen = set()

    def forward(self, x):
        self.seen.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, None])
def test_range_test_runs_under_the_training_precision(tiny_data, dtype):
    data = load_cifar10(tiny_data, download=False)
    train_loader, _, _, _ = make_loaders(data, Config(batch_size=50, workers=0), torch.device("cpu"))
    model = RecordsPrecision()
    sweep = lr_range_test(model, torch.optim.Adam(model.parameters()), torch.nn.CrossEntropyLoss(),
                                train_loader, torch.device("cpu"), steps=3, amp_dtype=dtype)
    assert model.seen == {dtype} and len(sweep["lrs"]) == 3


def scheduled_lrs(lr_max, lr_min, epochs, steps_per_epoch):
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr_min)
    scheduler = make_scheduler(optimizer, lr_max, lr_min, epochs, steps_per_epoch)
    lrs = []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_one_cycle_step_by_step_against_hand_computation():
    lr_max, lr_min, epochs, steps = 0.02, 2e-4, 24, 10
    peak, last = 5 * steps - 1, epochs * steps - 1  # the last step of epoch 5; the last step
    expected = [lr_min + (lr_max - lr_min) * i / peak if i <= peak
                else lr_max - (lr_max - lr_min) * (i - peak) / (last - peak)
                for i in range(epochs * steps)]
    lrs = scheduled_lrs(lr_max, lr_min, epochs, steps)
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-12)
    assert lrs[0] == pytest.approx(lr_min) and lrs[peak] == pytest.approx(lr_max)
    assert lrs[-1] == pytest.approx(lr_min)
    assert min(lrs) >= lr_min * (1 - 1e-9)  # no annihilation below LR_min


def test_schedule_of_the_real_run_peaks_at_the_end_of_epoch_5():
    lrs = scheduled_lrs(1e-2, 1e-4, 24, 98)
    assert int(np.argmax(lrs)) == 5 * 98 - 1
