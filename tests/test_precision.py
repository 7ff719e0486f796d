"""Mixed precision: which dtype each device gets, bf16 and fp16 steps on the CPU, and a T4's path
(fp16 with a grad scaler, the device loader) through a run killed and resumed."""
import json

import torch

from tests.conftest import comparable, kill_in_epoch_2, run_cli

# A T4's recipe on the CPU: fp16 autocast with a grad scaler (the precision autocast_dtype gives a
# GPU older than Ampere). The ResNet's fp16 convolution backward takes about a minute a step on a
# CPU (torch 2.14), so a small net stands in; the data, loader, finder, schedule, scaler,
# checkpoints and resume are the real ones.
FP16_LIKE_A_T4 = """
import torch
import utils
from s10 import device
from tests.conftest import TinyNet
device.cpu_autocast_dtype = lambda: torch.float16
utils.build_model = lambda cfg, dev: TinyNet(cfg.dropout).to(dev, memory_format=torch.channels_last)
"""


def test_a_t4s_path_fp16_with_a_grad_scaler_and_the_device_loader_resumes_after_sigkill(tiny_data, tmp_path):
    args = ["--data-dir", tiny_data, "--epochs", 3, "--batch-size", 50, "--finder-steps", 8, "--loader", "device"]
    whole = run_cli(*args, "--out", tmp_path / "whole", prelude=FP16_LIKE_A_T4)
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    kill_in_epoch_2(*args, "--out", killed, log=tmp_path / "killed.log", prelude=FP16_LIKE_A_T4)
    checkpoint = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert len(checkpoint["history"]["epochs"]) == 1
    assert checkpoint["scaler"]["scale"] > 0  # an active scaler's state, saved with the run

    resumed = run_cli("--resume", killed, prelude=FP16_LIKE_A_T4)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1 of 3; so far:" in resumed.stdout and "LR finder" not in resumed.stdout
    expected, got = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("whole", "killed"))
    assert (expected["precision"], expected["loader"]) == ("float16", "device")
    assert len(expected["lr_finder"]["lrs"]) > 0 and got["complete"]
    assert got["lrs"] == expected["lrs"] and comparable(got) == comparable(expected)
