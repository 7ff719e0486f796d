"""Evaluation with flip TTA, precision and loader choice, resuming in the notebook, LR fallback."""
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import train
import utils
from s10 import device, lr, runs
from s10.checkpoints import load_checkpoint
from s10.cifar import channel_stats, load_cifar10
from s10.config import Config, ConfigError, validate_config
from s10.data import make_loaders, reseed_loader, resolve_loader, split_data
from s10.device import autocast_dtype, cpu_has_native_bf16, get_device, make_grad_scaler, maybe_compile, precision_dtype, precision_name
from s10.engine import build_model, evaluate, make_optimizer, predict, train_one_epoch
from s10.lr import choose_lrs, make_scheduler
from s10.runs import config_conflicts, find_checkpoint, run_record, train_with_checkpoints
from tests.test_lr import scheduled_lrs

CPU = torch.device("cpu")


class Linear(nn.Module):
    """A model that is not flip-invariant, so TTA changes its logits."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_tta_averages_the_logits_of_the_image_and_its_flip():
    torch.manual_seed(0)
    model, images, targets = Linear(), torch.randn(20, 3, 4, 4), torch.randint(0, 3, (20,))
    loader = [(images[:12], targets[:12]), (images[12:], targets[12:])]
    result = evaluate(model, loader, nn.CrossEntropyLoss(), CPU, tta=True)
    with torch.no_grad():
        plain = model(images)
        averaged = (plain + model(images.flip(3))) / 2
    assert result["correct"] == int((plain.argmax(1) == targets).sum())
    assert result["test_acc_tta"] == pytest.approx(100 * float((averaged.argmax(1) == targets).float().mean()))
    assert result["test_loss_tta"] == pytest.approx(float(nn.functional.cross_entropy(averaged, targets)), rel=1e-5)
    assert "test_acc_tta" not in evaluate(model, loader, nn.CrossEntropyLoss(), CPU)


def test_the_results_table_shows_tta_only_when_the_run_measured_it():
    epochs = [{"epoch": 1, "test_acc": 80.0, "train_acc": 70.0, "seconds": 10.0, "test_acc_tta": 81.5},
              {"epoch": 2, "test_acc": 79.5, "train_acc": 75.0, "seconds": 12.0, "test_acc_tta": 80.25}]
    metrics = {"epochs": epochs, "config": {"epochs": 2}, "lr_max": 1e-3, "lr_min": 1e-5,
               "device": "cpu (2 threads)", "precision": "bfloat16", "data": "generated"}
    table = utils.format_results(metrics)
    assert "| test accuracy, last epoch | 79.50% |" in table
    assert "| best test accuracy | 80.00% (epoch 1) |" in table
    assert "| with flip TTA, last epoch | 80.25% |" in table
    assert "| seconds per epoch (mean) | 11.0 |" in table and "bfloat16" in table
    for epoch in epochs:
        del epoch["test_acc_tta"]
    assert "TTA" not in utils.format_results(metrics)


@pytest.mark.parametrize("flags, native", [("fpu avx2 avx512f avx512_bf16 avx_vnni", True),
                                           ("fpu avx2 amx_bf16 amx_tile", True),
                                           ("fpu avx2 avx512f avx512bw", False), ("neon asimd", False)])
def test_cpu_bf16_is_native_only_with_bf16_instructions(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, None)])
def test_cpu_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch, native, dtype):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(Config(), CPU) == dtype
    assert autocast_dtype(Config(amp=False), CPU) is None
    assert autocast_dtype(Config(), torch.device("mps")) is None


def test_cpu_uses_the_albumentations_loader_and_no_grad_scaler():
    cfg = Config()
    assert resolve_loader(cfg, CPU) == "albumentations"
    assert not make_grad_scaler(None, CPU).is_enabled()
    assert resolve_loader(Config(loader="device"), CPU) == "device"
    assert maybe_compile(model := Linear(), Config(compile=True), CPU, log=lambda m: None) is model


@pytest.mark.parametrize("capability, dtype", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                               ((7, 5), torch.float16), ((7, 0), torch.float16)])
def test_cuda_precision_is_bf16_from_ampere_else_fp16_with_a_scaler(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda")
    assert autocast_dtype(Config(), cuda) == dtype
    assert autocast_dtype(Config(amp=False), cuda) is None
    assert resolve_loader(Config(), cuda) == "device"


def test_cuda_turns_on_cudnn_autotuning_and_cpu_leaves_it(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert get_device("cpu").type == "cpu" and not torch.backends.cudnn.benchmark
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_device("cuda").type == "cuda" and torch.backends.cudnn.benchmark


def tiny_training(tiny_data, epochs):
    """(model, train_loader, test_loader, optimizer, scheduler) on the tiny data, LRs 5e-3 / 5e-5."""
    cfg = Config(batch_size=50, lr_max=5e-3, lr_min=5e-5, workers=0)
    train_loader, test_loader, _, _ = make_loaders(load_cifar10(tiny_data, download=False), cfg, CPU)
    model = build_model(cfg, CPU)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.lr_max, cfg.lr_min, epochs, len(train_loader))
    return model, train_loader, test_loader, optimizer, scheduler


def test_a_training_epoch_under_bf16_autocast(tiny_data):
    model, train_loader, test_loader, optimizer, scheduler = tiny_training(tiny_data, epochs=1)
    result = train_one_epoch(model, train_loader, optimizer, scheduler, nn.CrossEntropyLoss(), CPU,
                                   amp_dtype=torch.bfloat16)
    assert len(result["lrs"]) == 4 and 0 < result["train_loss"] < 10
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert 0 <= evaluate(model, test_loader, nn.CrossEntropyLoss(), CPU, amp_dtype=torch.bfloat16)["test_acc"] <= 100


def test_a_validation_split_replaces_the_test_set_with_held_out_training_images(tiny_data, tmp_path, capsys):
    data = load_cifar10(tiny_data, download=False)
    cfg = Config(val_split=150, workers=0)  # more images than the 100 of the tiny test set
    train_loader, val_loader, mean, std = make_loaders(data, cfg, CPU)
    assert np.array_equal(val_loader.dataset.images, data["train_x"][-150:])
    assert np.array_equal(train_loader.dataset.images, data["train_x"][:-150])
    assert np.array_equal(split_data(data, cfg)[2], data["train_x"][-150:])  # what the plots show
    assert (mean, std) == channel_stats(data["train_x"][:-150])  # nothing learnt from held-out images
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50", "--val-split", "150",
                       "--lr-max", "5e-3", "--lr-min", "5e-5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "50 train / 150 validation images" in printed and "Validation set: Average loss" in printed
    assert "done: validation accuracy" in printed and (out / "misclassified.png").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluated_on"].startswith("validation split: the last 150") and metrics["epochs"][0]["total"] == 150
    assert "| validation accuracy, last epoch |" in utils.format_results(metrics)


def test_predictions_agree_with_the_reported_accuracy_under_bf16(tiny_data):
    model, _, test_loader, _, _ = tiny_training(tiny_data, epochs=1)
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
    model, train_loader, _, optimizer, scheduler = tiny_training(tiny_data, epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train_one_epoch(model, train_loader, optimizer, scheduler, nn.CrossEntropyLoss(),
                                       CPU, scaler=SkipsEveryStep())
    assert result["lrs"] == pytest.approx(scheduled_lrs(5e-3, 5e-5, 2, len(train_loader))[:len(train_loader)])


def test_unknown_loader_is_refused():
    with pytest.raises(ConfigError, match="loader must be one of"):
        validate_config(Config(loader="fast"))


def test_train_py_records_tta_accuracy(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                       "--lr-max", "5e-3", "--lr-min", "5e-5", "--tta", "--out", str(out)]) == 0
    epoch = json.loads((out / "metrics.json").read_text())["epochs"][0]
    assert 0 <= epoch["test_acc_tta"] <= 100 and "test_loss_tta" in epoch


def test_a_file_that_is_not_our_checkpoint_gets_a_message(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="not a checkpoint of this project"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_the_notebook_refuses_to_continue_a_run_with_another_config(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                       "--lr-max", "5e-3", "--lr-min", "5e-5", "--out", str(out)]) == 0
    same = Config(data_dir="elsewhere", epochs=1, batch_size=50, lr_max=5e-3, lr_min=5e-5)
    assert find_checkpoint(out, same)["history"]["epochs"][0]["epoch"] == 1
    with pytest.raises(ConfigError, match=r"epochs = 2 \(the run has 1\)"):
        find_checkpoint(out, Config(epochs=2, batch_size=50, lr_max=5e-3, lr_min=5e-5))
    assert find_checkpoint(tmp_path / "empty", same) is None
    # a run saved before a setting existed ran with its default, so another value conflicts
    older = {k: v for k, v in Config().to_dict().items() if k != "val_split"}
    assert config_conflicts(older, Config()) == {}
    assert config_conflicts(older, Config(val_split=5000)) == {"val_split": (5000, 0)}


def test_a_resumed_run_keeps_the_precision_it_started_with(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    real_save = runs.save_checkpoint

    def save_then_stop(*args, **kwargs):  # an interruption right after epoch 1's checkpoint
        real_save(*args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(runs, "save_checkpoint", save_then_stop)
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "2", "--batch-size", "50", "--no-amp",
                       "--lr-max", "5e-3", "--lr-min", "5e-5", "--out", str(out)]) == 130
    monkeypatch.setattr(runs, "save_checkpoint", real_save)
    assert train.main(["--resume", str(out), "--amp"]) == 0  # epoch 2 in bf16
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "float32" and len(metrics["epochs"]) == 2
    assert [(r["after_epoch"], r["precision"]) for r in metrics["resumed"]] == [(1, "bfloat16")]


def test_the_notebook_shows_a_finished_run_without_changing_its_record(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                       "--lr-max", "5e-3", "--lr-min", "5e-5", "--tta", "--out", str(out)]) == 0
    written = (out / "metrics.json").read_bytes()
    cfg = Config(data_dir=str(tiny_data), epochs=1, batch_size=50, lr_max=5e-3, lr_min=5e-5, workers=0)
    data = load_cifar10(tiny_data, download=False)
    train_loader, test_loader, mean, std = make_loaders(data, cfg, CPU)
    model = build_model(cfg, CPU)
    optimizer = make_optimizer(model, cfg)
    checkpoint = find_checkpoint(out, cfg)
    record = run_record(cfg, CPU, data, 5e-3, 5e-5, None, mean, std, commit="later")
    lines = []
    metrics = train_with_checkpoints(out, cfg, model, optimizer, nn.CrossEntropyLoss(), train_loader,
                                           test_loader, CPU, record, checkpoint, log=lines.append)
    assert metrics == json.loads(written) and "resumed" not in metrics  # the run's own record
    assert (out / "metrics.json").read_bytes() == written
    assert "holds a finished run of 1 epochs" in lines[0] and "with flip TTA" in lines[1]
    assert all(torch.equal(v, checkpoint["model"][k]) for k, v in model.state_dict().items())
    (out / "metrics.json").unlink()  # stopped before its final metrics.json: rebuilt from the checkpoint
    rebuilt = train_with_checkpoints(out, cfg, model, optimizer, nn.CrossEntropyLoss(), train_loader,
                                           test_loader, CPU, record, checkpoint, log=lines.append)
    assert rebuilt["complete"] and rebuilt["epochs"] == metrics["epochs"] and rebuilt["commit"] == metrics["commit"]
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(rebuilt))  # saved
    completed = (out / "metrics.json").read_bytes()
    assert train.main(["--resume", str(out)]) == 0  # the command line: history and plots, nothing trained
    assert (out / "metrics.json").read_bytes() == completed


def test_a_diverging_sweep_falls_back_with_a_visible_warning(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lr, "lr_range_test", lambda *args, **kwargs: {"lrs": [1e-7, 1e-6, 1e-5],
                                                             "losses": [2.3, 50.0, float("nan")]})
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                       "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: the LR sweep gave no usable curve" in captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["lr_max"], metrics["lr_min"]) == (1e-3, 1e-5)
    assert metrics["lr_finder"]["notes"]
    with warnings.catch_warnings(record=True) as caught:  # in the notebook: a Python warning
        warnings.simplefilter("always")
        choose_lrs(Config(), None, None, None, None, CPU, log=lambda m: None)
    assert any("no usable curve" in str(w.message) for w in caught)


def test_lr_max_factor_reaches_the_finders_pick(tiny_data, tmp_path, monkeypatch):
    lrs = list(np.logspace(-6, 0, 13))
    losses = [2.3, 2.3, 2.2, 2.0, 1.6, 1.2, 1.0, 0.9, 1.4, 3.0, 6.0, 9.0, 20.0]  # lowest at lrs[7]
    monkeypatch.setattr(lr, "lr_range_test", lambda *args, **kwargs: {"lrs": lrs, "losses": losses})
    for factor in (None, "0.1", "0.3"):
        out = tmp_path / f"run{factor}"
        flags = [] if factor is None else ["--lr-max-factor", factor]
        assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                           "--out", str(out), *flags]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["lr_max"] == pytest.approx(lrs[7] * float(factor or 1))
        assert metrics["lr_min"] == pytest.approx(lrs[3])


def test_the_device_loader_runs_the_whole_cli(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                       "--finder-steps", "6", "--loader", "device", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loader"] == "device" and len(metrics["lrs"]) == 4
    assert len(metrics["lr_finder"]["lrs"]) > 0


@pytest.mark.parametrize("native_bf16", [True, False])
def test_bench_prints_its_figures_and_the_ratio(capsys, monkeypatch, native_bf16):
    import bench
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native_bf16)
    bench.main(["--device", "cpu", "--batches", "2", "--batch-size", "8"])
    out = capsys.readouterr().out
    assert "bare step, channels_last:" in out and "FLOPs per image" in out
    # the float32 comparison appears exactly when the default precision is lower
    assert ("bare step, float32:" in out) == native_bf16
    assert out.strip().splitlines()[-1].startswith("full loop / bare step: ")


def test_worker_processes_repeat_with_the_seed_and_differ_from_each_other(tiny_data):
    data = load_cifar10(tiny_data, download=False)
    # every training image the same: batches then differ only through the augmentation
    data["train_x"][:] = data["train_x"][0]
    loader, _, _, _ = make_loaders(data, Config(batch_size=50, workers=2), CPU)

    def epoch(seed):
        reseed_loader(loader, seed)
        return [images for images, _ in loader]

    first, again, other = epoch(3), epoch(3), epoch(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    # batches 0 and 1 come from different workers, which must not share one random stream
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize("loader", ["albumentations", "device"])
def test_cutout_p_reaches_the_training_loader(tiny_data, loader):
    data = load_cifar10(tiny_data, download=False)

    def images_with_a_hole(cutout_p):
        cfg = Config(batch_size=50, workers=0, loader=loader, cutout_p=cutout_p)
        train_loader, _, mean, std = make_loaders(data, cfg, CPU)
        # the hole's pixel once normalised; the noisy class colours almost never hit it exactly
        fill = torch.tensor([(round(m * 255) / 255 - m) / s for m, s in zip(mean, std)])
        count = 0
        for images, _ in train_loader:
            same = (images - fill.view(1, 3, 1, 1)).abs().lt(1e-4).all(dim=1)
            count += int((same.sum(dim=(1, 2)) >= 64).sum())
        return count

    assert images_with_a_hole(1.0) == 200 and images_with_a_hole(0.0) == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, None])
def test_precision_names_map_back_to_their_dtype(dtype):
    assert precision_dtype(precision_name(dtype)) is dtype
