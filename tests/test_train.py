"""Training steps, train.py end to end, resume after a kill, bad settings, reproducibility."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import train
from s10 import cifar, engine
from s10.checkpoints import load_checkpoint
from s10.cifar import load_cifar10
from s10.config import Config, DataError, DivergedError
from s10.data import make_loaders
from s10.device import seed_everything
from s10.engine import make_optimizer, train_one_epoch
from s10.lr import make_scheduler
from models.resnet import ResNet

ROOT = Path(__file__).resolve().parents[1]
# on CPU in float32, where runs repeat to the last bit on any machine (GPU kernels and bf16 need not)
TINY = ["--batch-size", "50", "--lr-max", "5e-3", "--lr-min", "5e-5", "--device", "cpu", "--no-amp"]


def run_cli(*args, timeout=300):
    args = [*args, "--device", "cpu"] if "--device" not in args else args
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def comparable(metrics):
    """Per-epoch results without the wall-clock times."""
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in metrics["epochs"]]


def test_a_few_training_steps_reduce_the_loss(tiny_data):
    cfg = Config(batch_size=50, lr_max=5e-3, lr_min=5e-5, workers=0)
    seed_everything(0)
    data = load_cifar10(tiny_data, download=False)
    train_loader, _, _, _ = make_loaders(data, cfg, torch.device("cpu"))
    model, criterion = ResNet(), torch.nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.lr_max, cfg.lr_min, 3, len(train_loader))
    results = [train_one_epoch(model, train_loader, optimizer, scheduler, criterion,
                                     torch.device("cpu"), epoch) for epoch in range(3)]
    assert [len(r["lrs"]) for r in results] == [len(train_loader)] * 3 == [4] * 3
    assert results[-1]["train_loss"] < 0.5 * results[0]["train_loss"]
    assert results[-1]["train_acc"] > 50  # 10 colour classes: chance is 10%


def test_train_py_end_to_end_writes_valid_metrics(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = run_cli("--data-dir", tiny_data, "--epochs", 2, "--batch-size", 50,
                     "--finder-steps", 12, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "Test set: Average loss:" in result.stdout and "/100 (" in result.stdout
    assert "Train: Loss=" in result.stdout and "Batch_id=3 Accuracy=" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["device"].startswith("cpu") and "local copy" in metrics["data"]
    assert metrics["config"]["epochs"] == 2 and metrics["config"]["batch_size"] == 50
    assert 0 < metrics["lr_min"] < metrics["lr_max"]
    assert len(metrics["lr_finder"]["lrs"]) == len(metrics["lr_finder"]["losses"]) > 0
    assert len(metrics["lrs"]) == 2 * 4 and metrics["lrs"][0] == pytest.approx(metrics["lr_min"])
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for epoch in metrics["epochs"]:
        assert set(epoch) >= {"train_loss", "train_acc", "test_loss", "test_acc", "seconds"}
        assert 0 <= epoch["test_acc"] <= 100 and epoch["seconds"] > 0
    for plot in ("history", "lr_schedule", "lr_finder", "misclassified", "confusion_matrix",
                 "augmented_samples"):
        assert (out / f"{plot}.png").stat().st_size > 1000


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_data, tmp_path):
    args = ["--data-dir", tiny_data, "--epochs", 3, *TINY]
    whole = run_cli(*args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    killed, log = tmp_path / "killed", tmp_path / "killed.log"
    with open(log, "w") as stdout:
        process = subprocess.Popen([sys.executable, "train.py", *map(str, args), "--out", killed],
                                   cwd=ROOT, stdout=stdout, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 120
        while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.02)
        seen = len(log.read_text())
        # kill without warning once epoch 2 has finished its second step
        while "Batch_id=1 " not in log.read_text()[seen:] and time.time() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (killed / "checkpoint.pt").exists()
    partial = json.loads((killed / "metrics.json").read_text())
    assert not partial["complete"] and len(partial["epochs"]) < 3

    resumed = run_cli("--resume", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1 of 3; so far:" in resumed.stdout and "LR finder" not in resumed.stdout
    expected, got = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", killed))
    assert got["complete"] and len(got["epochs"]) == 3
    assert got["lrs"] == expected["lrs"]
    assert comparable(got) == comparable(expected)  # same batches, same dropout: same numbers


def test_same_seed_same_metrics(tiny_data, tmp_path):
    runs = [run_cli("--data-dir", tiny_data, "--epochs", 2, *TINY, "--seed", 7, "--out", tmp_path / str(i))
            for i in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    first, second = (json.loads((tmp_path / str(i) / "metrics.json").read_text()) for i in range(2))
    assert comparable(first) == comparable(second)


def test_resume_refuses_conflicting_flags(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert run_cli("--data-dir", tiny_data, "--epochs", 1, *TINY, "--out", out).returncode == 0
    result = run_cli("--resume", out, "--epochs", 5)
    assert result.returncode == 2
    assert "--epochs 5 (the run has 1)" in result.stderr and "Traceback" not in result.stderr
    again = run_cli("--data-dir", tiny_data, "--epochs", 1, *TINY, "--out", out)
    assert again.returncode == 2 and f"--resume {out}" in again.stderr


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "epochs must be a positive whole number"),
    (["--batch-size", "-1"], "batch_size must be a positive whole number"),
    (["--lr-max", "0", "--lr-min", "1e-4"], "lr_max must be a positive number"),
    (["--lr-max", "1e-3", "--lr-min", "1e-2"], "lr_min (0.01) must be smaller than lr_max (0.001)"),
    (["--lr-max", "1e-3"], "give both --lr-max and --lr-min"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda:99"], "not available on this machine"),
    (["--subset", "100000"], "subset 100000 is larger than the 200 training images"),
    (["--val-split", "-5"], "val_split must be a whole number of images >= 0"),
    (["--cutout-p", "1.5"], "cutout_p must be in [0, 1], got 1.5"),
    (["--lr-max-factor", "0"], "lr_max_factor must be in (0, 1], got 0.0"),
    (["--lr-max-factor", "2"], "lr_max_factor must be in (0, 1], got 2.0"),
    (["--lr-max-factor", "nan"], "lr_max_factor must be in (0, 1], got nan"),
    (["--lr-max-factor", "inf"], "lr_max_factor must be in (0, 1], got inf"),
    (["--val-split", "200"], "val_split 200 leaves none of the 200 training images"),
    (["--resume", "/nonexistent/run"], "no checkpoint at /nonexistent/run/checkpoint.pt"),
])
def test_bad_settings_get_one_clear_message(tiny_data, tmp_path, capsys, flags, message):
    code = train.main(["--data-dir", str(tiny_data), "--out", str(tmp_path / "run"), *flags]
                      if "--resume" not in flags else flags)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_missing_data_offline_exits_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cifar, "download_cifar10", lambda root: (_ for _ in ()).throw(
        DataError(f"CIFAR-10 is not in {root} and could not be downloaded")))
    assert train.main(["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    assert "could not be downloaded" in capsys.readouterr().err


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    real_train = train_one_epoch

    def diverge_in_epoch_2(model, loader, optimizer, scheduler, criterion, device, epoch, *rest):
        if epoch == 1:
            raise DivergedError(f"the training loss became nan at epoch {epoch + 1}, step 3")
        return real_train(model, loader, optimizer, scheduler, criterion, device, epoch, *rest)

    monkeypatch.setattr(engine, "train_one_epoch", diverge_in_epoch_2)
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "3", *TINY, "--out", str(out)]) == 2
    assert "loss became nan at epoch 2, step 3" in capsys.readouterr().err
    assert len(load_checkpoint(out / "checkpoint.pt")["history"]["epochs"]) == 1


def test_a_real_nan_loss_is_caught(tiny_data, tmp_path, capsys):
    code = train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                       "--lr-max", "1e12", "--lr-min", "1e11", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "the training loss became" in capsys.readouterr().err


def test_help_gives_every_flag_its_config_fields_text(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at the terminal's width: one line a flag
    text = train.build_parser().format_help()
    for field in fields(Config):
        flag = f"--{field.name.replace('_', '-')}"
        # the flag, its metavar, then (on the same line or the next) the field's own text
        assert re.search(rf"^  {flag}\b[^\n]*\s+{re.escape(field.metadata['help'])} \(default: ", text, re.M), flag
    assert "--pct-start PCT_START" in text and "(default: 5/24)" in text and "0.2083" not in text
