"""s10.checks: the run's model on its own training images, un-augmented, beside its last
evaluation (check_fit.py), and in float32 beside bf16 (check_precision.py)."""
import json

import numpy as np
import pytest
import torch

from s10 import checks, engine, record
from s10.cifar import load_cifar10
from s10.config import Config
from s10.recipe import build_model
from s10.record import CHECKPOINT


def check_fit(argv):
    return checks.check_main("check_fit", checks.training_fit, checks.format_fit, argv)


def logits_by_hand(out, images):
    """The run's saved weights on `images` (uint8 HWC), normalised with the run's statistics,
    in eval mode and float32: what the checks must reproduce."""
    metrics = json.loads((out / "metrics.json").read_text())
    inputs = (images / 255.0 - np.array(metrics["mean"])) / np.array(metrics["std"])
    model = build_model(Config(), torch.device("cpu"))
    model.load_state_dict(torch.load(out / CHECKPOINT, weights_only=True)["model"])
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(inputs, dtype=torch.float32).permute(0, 3, 1, 2))


def test_it_evaluates_the_runs_model_on_the_images_it_trained_on(recorded_run, tiny_data, capsys, monkeypatch):
    out, _ = recorded_run
    fit = checks.training_fit(out, tiny_data, "cpu")
    metrics = json.loads((out / "metrics.json").read_text())
    assert fit["eval"] == metrics["epochs"][-1]["eval"] and fit["eval_set"] == "validation"

    # the same numbers by hand: the 150 images that trained (not the 50 held out), normalised
    # with the run's statistics, through the saved weights in eval mode
    data = load_cifar10(tiny_data, download=False)
    x, y = data["train_x"][:-50], data["train_y"][:-50]
    logits = logits_by_hand(out, x)
    targets = torch.tensor(y, dtype=torch.long)
    trained_on = fit["training_images"]
    assert trained_on["total"] == 150
    assert trained_on["correct"] == int((logits.argmax(1) == targets).sum())
    # relative: float32 sums in another order (batches of 50, not one batch of 150) differ in the
    # last bits, and a diverged tiny run's loss can be in the thousands
    assert trained_on["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-5)

    # a bf16 run is checked in bf16, like its own evaluations
    real_read = record.RunRecord.from_dict

    def read_as_bf16(values):
        run = real_read(values)
        run.precision = "bfloat16"
        return run
    monkeypatch.setattr(record.RunRecord, "from_dict", read_as_bf16)
    seen = []
    monkeypatch.setattr(engine, "evaluate", lambda *a, amp_dtype=None, **k: seen.append(amp_dtype) or trained_on)
    checks.training_fit(out, tiny_data, "cpu")
    monkeypatch.undo()
    assert seen == [torch.bfloat16]

    assert check_fit([str(out), "--data-dir", str(tiny_data), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "training images, un-augmented:" in printed and "validation set:" in printed and "gap:" in printed
    assert "test" not in printed


def test_a_folder_without_a_run_is_one_clear_error(tmp_path, capsys):
    assert check_fit([str(tmp_path), "--device", "cpu"]) == 2
    assert "error: no checkpoint at" in capsys.readouterr().err


def test_check_precision_compares_float32_with_bf16_on_the_held_out_images(recorded_run, tiny_data, capsys):
    out, _ = recorded_run
    check = checks.precision_check(out, tiny_data, "cpu")
    assert list(check["results"]) == ["float32", "bfloat16"]
    # float32 by hand: the 50 held-out images through the saved weights, no autocast
    metrics = json.loads((out / "metrics.json").read_text())
    data = load_cifar10(tiny_data, download=False)
    x, y = data["train_x"][-50:], data["train_y"][-50:]
    preds = logits_by_hand(out, x).argmax(1)
    fp32 = check["results"]["float32"]
    assert (fp32["total"], fp32["changed"]) == (50, 0)
    assert fp32["correct"] == int((preds == torch.tensor(y)).sum())
    # the run itself evaluated in float32, so its record agrees with the float32 row
    assert fp32["acc"] == pytest.approx(metrics["epochs"][-1]["eval"]["acc"])

    argv = [str(out), "--data-dir", str(tiny_data), "--device", "cpu"]
    assert checks.check_main("check_precision", checks.precision_check, checks.format_precision_check, argv) == 0
    printed = capsys.readouterr().out
    assert "float32" in printed and "bfloat16" in printed and "predictions unlike float32's" in printed
