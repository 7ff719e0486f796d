"""LR finder (restores the model, the rule and its fallbacks, the flag that scales its pick, a
warning the notebook shows) and the One Cycle schedule."""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train
from s10 import lr
from s10.cifar import load_cifar10
from s10.config import Config, ConfigError, validate_config
from s10.data import make_loaders
from s10.lr import SweepPlan, choose_lrs, lr_range_test
from s10.lr_rules import FALLBACK_LR_MAX, FALLBACK_RATIO, finder_smoothing, read_curve, suggest_lrs
from s10.recipe import make_optimizer
from tests.conftest import CPU, TinyNet, scheduled_lrs

# what choose_lrs hands a (patched) lr_range_test: no model is needed
NO_RECIPE = SimpleNamespace(model=None, optimizer=None, criterion=None, device=CPU, amp_dtype=None)


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


def test_an_lr_min_not_below_lr_max_falls_back_to_a_hundredth_with_a_note():
    lrs = np.logspace(-6, 0, 13)
    losses = [2.3, 2.3, 2.2, 2.0, 1.6, 1.2, 1.0, 0.9, 1.4, 3.0, 6.0, 9.0, 20.0]  # LR_min at lrs[3]
    lr_max, lr_min, notes = suggest_lrs(lrs, losses, lr_max_factor=1e-3)  # LR_max below lrs[3]
    assert lr_max == pytest.approx(lrs[7] * 1e-3) and lr_min == pytest.approx(lr_max / FALLBACK_RATIO)
    assert len(notes) == 1 and "is not below LR_max" in notes[0]


@pytest.mark.parametrize("factor", [None, "0.3"])
def test_the_lr_max_factor_flag_reaches_the_finders_pick(tiny_data, monkeypatch, factor):
    lrs = list(np.logspace(-6, 0, 13))
    losses = [2.3, 2.3, 2.2, 2.0, 1.6, 1.2, 1.0, 0.9, 1.4, 3.0, 6.0, 9.0, 20.0]  # lowest at lrs[7]
    monkeypatch.setattr(lr, "lr_range_test", lambda *args, **kwargs: {"lrs": lrs, "losses": losses})
    flags = ["--data-dir", str(tiny_data)] + ([] if factor is None else ["--lr-max-factor", factor])
    cfg, _, _ = train.resolve_run(train.build_parser().parse_args(flags))
    lr_max, lr_min, finder = choose_lrs(cfg, NO_RECIPE, None, log=lambda line: None)
    assert lr_max == pytest.approx(lrs[7] * float(factor or 1)) and lr_min == pytest.approx(lrs[3])
    assert finder == {"lrs": lrs, "losses": losses, "rule": "ema-min", "notes": [], "reading": None}


def test_a_lag_free_rule_reads_the_raw_losses(monkeypatch):
    lrs = list(np.logspace(-7, 1, 81))
    raw = list(2.3 - np.clip(np.log10(lrs) + 5, 0, 2) * 0.6 + np.clip(np.log10(lrs) + 2, 0, None) * 2)
    sweep = {"lrs": lrs, "losses": [2.3] * 81, "raw_losses": raw}  # the smoothed curve is flat
    monkeypatch.setattr(lr, "lr_range_test", lambda *args, **kwargs: sweep)
    cfg = Config(finder_rule="cliff1.3-b0.4")
    lr_max, lr_min, finder = choose_lrs(cfg, NO_RECIPE, None, log=lambda line: None)
    expected = read_curve(lrs, raw, bandwidth=0.4, rise=1.3)
    assert (lr_max, lr_min, finder["notes"], finder["reading"]) == expected
    assert finder["rule"] == "cliff1.3-b0.4"


def test_repeated_sweeps_average_the_raw_losses_of_single_sweeps(tiny_data):
    cfg = Config(batch_size=50, workers=0)
    data = load_cifar10(tiny_data, download=False)

    def sweeps(repeats_each, times):
        torch.manual_seed(0)
        loader = make_loaders(data, cfg, CPU)[0]  # seeded: the same batches each call
        model = TinyNet()
        optimizer = make_optimizer(model, cfg)
        return [lr_range_test(model, optimizer, torch.nn.CrossEntropyLoss(), loader, CPU,
                              SweepPlan(1e-4, 1.0, 6, repeats_each)) for _ in range(times)]

    averaged, = sweeps(2, 1)
    first, second = sweeps(1, 2)
    assert first["raw_losses"] != second["raw_losses"]  # each sweep on its own batches
    n = min(len(first["raw_losses"]), len(second["raw_losses"]))
    np.testing.assert_allclose(averaged["raw_losses"],
                               (np.array(first["raw_losses"][:n]) + second["raw_losses"][:n]) / 2, rtol=1e-6)
    np.testing.assert_allclose(averaged["losses"], finder_smoothing(averaged["raw_losses"]), rtol=1e-12)
    # and each sweep's own losses are kept, whole
    assert len(averaged["each_sweep"]) == 2
    for own, single in zip(averaged["each_sweep"], (first, second)):
        np.testing.assert_allclose(own["raw_losses"], single["raw_losses"], rtol=1e-6)
        np.testing.assert_allclose(own["lrs"], single["lrs"], rtol=1e-12)


def test_a_fallback_is_a_python_warning_in_the_notebook(monkeypatch):
    monkeypatch.setattr(lr, "lr_range_test", lambda *args, **kwargs: {"lrs": [1e-7, 1e-6], "losses": [2.3, 9.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choose_lrs(Config(), NO_RECIPE, None, log=lambda line: None)
    assert [str(w.message) for w in caught] == [suggest_lrs([1e-7, 1e-6], [2.3, 9.0])[2][0]]


def test_range_test_restores_model_and_optimizer(tiny_data):
    cfg = Config(batch_size=50, workers=0)
    train_loader, _, _, _ = make_loaders(load_cifar10(tiny_data, download=False), cfg, CPU)
    model = TinyNet()  # with BatchNorm, whose running statistics the sweep also moves
    optimizer = make_optimizer(model, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer_before = optimizer.state_dict()
    sweep = lr_range_test(model, optimizer, torch.nn.CrossEntropyLoss(), train_loader, CPU,
                          SweepPlan(start_lr=1e-6, end_lr=1.0, steps=12))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert optimizer.state_dict() == optimizer_before
    assert len(sweep["lrs"]) == len(sweep["losses"]) >= 5
    # exponential from start_lr to end_lr over the steps (it may stop early when the loss blows up)
    np.testing.assert_allclose(sweep["lrs"], np.geomspace(1e-6, 1.0, 12)[:len(sweep["lrs"])], rtol=1e-9)


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
    train_loader, _, _, _ = make_loaders(data, Config(batch_size=50, workers=0), CPU)
    model = RecordsPrecision()
    sweep = lr_range_test(model, torch.optim.Adam(model.parameters()), torch.nn.CrossEntropyLoss(),
                                train_loader, CPU, SweepPlan(steps=3), amp_dtype=dtype)
    assert model.seen == {dtype} and len(sweep["lrs"]) == 3


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


@pytest.mark.parametrize("settings, message", [({"finder_rule": "steepest"}, "finder_rule must be one of ema-min, "),
                                               ({"finder_repeats": 0}, "finder_repeats must be a positive")])
def test_finder_settings_that_cannot_work_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(Config(**settings))
