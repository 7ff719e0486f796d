"""--seeds: one recipe over several seeds, each in its own resumable folder, and their summary."""
import json
import statistics
import subprocess
import sys

import pytest
import torch

import train
from s10 import seeds
from s10.cifar import load_cifar10
from s10.config import Config
from s10.data import make_loaders
from s10.engine import evaluate
from s10.recipe import EVAL_CRITERION, Recipe, make_criterion
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("no_figures")  # the seeds' machinery is under test, not the figures

# in-process runs of one short epoch on the given LRs, on the CPU in float32
TINY = ["--batch-size", "50", "--lr-max", "5e-3", "--lr-min", "5e-5", "--device", "cpu", "--precision", "fp32"]


def test_spread_is_the_mean_and_sample_standard_deviation():
    s = seeds.spread([90.0, 91.0, 92.5])
    assert s["mean"] == pytest.approx(91.167, abs=1e-3)
    # by hand: deviations -1.1667, -0.1667, 1.3333; squares summed 3.1667; / (3 - 1); sqrt
    assert s["std"] == pytest.approx(1.258, abs=1e-3)
    assert (s["n"], s["min"], s["max"]) == (3, 90.0, 92.5)
    assert seeds.spread([90.0])["std"] == 0.0


def test_seeds_trains_one_folder_per_seed_and_summarises_them(tiny_data, tmp_path, capsys, small_model):
    out = tmp_path / "series"
    args = ["--data-dir", str(tiny_data), "--epochs", "1", *TINY, "--seed", "3", "--seeds", "2", "--out", str(out)]
    assert train.main(args) == 0
    records = {k: json.loads((out / f"seed{k}" / "metrics.json").read_text()) for k in (3, 4)}
    assert [records[k]["config"]["seed"] for k in (3, 4)] == [3, 4]
    finals = [records[k]["epochs"][-1]["eval"]["acc"] for k in (3, 4)]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["run"] for r in summary["runs"]] == ["seed3", "seed4"]
    assert summary["final_acc"]["mean"] == pytest.approx(statistics.fmean(finals), abs=1e-3)
    assert summary["final_acc"]["std"] == pytest.approx(statistics.stdev(finals), abs=1e-3)
    tta = [records[k]["epochs"][-1]["eval"]["acc_tta"] for k in (3, 4)]  # TTA is on by default
    assert summary["final_acc_tta"]["mean"] == pytest.approx(statistics.fmean(tta), abs=1e-3)
    assert "mean ± std" in capsys.readouterr().out

    # the same command again continues each seed: both are finished, so nothing trains
    stamps = {k: (out / f"seed{k}" / "checkpoint.pt").stat().st_mtime_ns for k in (3, 4)}
    assert train.main(args) == 0
    assert stamps == {k: (out / f"seed{k}" / "checkpoint.pt").stat().st_mtime_ns for k in (3, 4)}


def test_seeds_refuses_flags_that_change_a_started_seed(tiny_data, tmp_path, capsys, small_model):
    out = tmp_path / "series"
    base = ["--data-dir", str(tiny_data), "--epochs", "1", *TINY, "--seeds", "1", "--out", str(out)]
    assert train.main(base) == 0
    capsys.readouterr()
    assert train.main([*base, "--weight-decay", "1e-4"]) == 2
    assert "weight_decay = 0.0001 (the run has 0.0)" in capsys.readouterr().err


def test_a_series_stopped_part_way_lists_the_missing_seed(tiny_data, tmp_path, small_model):
    out = tmp_path / "series"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", *TINY, "--out", str(out / "seed1")]) == 0
    summary = seeds.summarize(seeds.seed_dirs(out, 1, 2), relative_to=out)
    assert summary["pending"] == ["seed2"] and summary["final_acc"]["n"] == 1


def test_seeds_py_summarises_existing_folders_and_refuses_an_empty_one(tiny_data, tmp_path, capsys, small_model):
    out = tmp_path / "series"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", *TINY, "--out", str(out / "seed1")]) == 0
    script = [sys.executable, "seeds.py"]
    done = subprocess.run([*script, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "| seed1 | 1 |" in done.stdout and (out / "summary.json").exists()
    empty = subprocess.run([*script, str(tmp_path / "nothing")], cwd=ROOT, capture_output=True, text=True)
    assert empty.returncode == 2 and empty.stderr.startswith("error: ")


def test_label_smoothing_trains_on_the_smoothed_loss_and_reports_plain_cross_entropy(tiny_data):
    logits, targets = torch.randn(6, 10), torch.arange(6)
    eps = 0.1
    # by hand: (1 - eps) x the usual loss + eps x the mean over classes of -log p
    log_p = logits.log_softmax(1)
    by_hand = ((1 - eps) * -log_p[torch.arange(6), targets] - eps * log_p.mean(1)).mean()
    assert make_criterion(Config(label_smoothing=eps))(logits, targets) == pytest.approx(float(by_hand))

    cfg = Config(batch_size=50, label_smoothing=eps, workers=0, precision="fp32", epochs=1)
    cpu = torch.device("cpu")
    train_loader, eval_loader, _, _ = make_loaders(load_cifar10(tiny_data, download=False), cfg, cpu)
    recipe = Recipe(cfg, cpu)
    assert recipe.criterion.label_smoothing == eps
    recipe.schedule(5e-3, 5e-5, len(train_loader))
    recipe.train_epoch(train_loader, 0)
    reported = recipe.evaluate(eval_loader)
    plain = evaluate(recipe.model, eval_loader, torch.nn.CrossEntropyLoss(), cpu)
    smoothed = evaluate(recipe.model, eval_loader, make_criterion(cfg), cpu)
    assert reported["loss"] == pytest.approx(plain["loss"])
    assert smoothed["loss"] != pytest.approx(plain["loss"])
    assert EVAL_CRITERION.label_smoothing == 0


def test_seeds_refuses_an_out_that_is_a_file_before_any_work(tmp_path, capsys):
    out = tmp_path / "a_file"
    out.write_text("not a folder")
    assert train.main(["--data-dir", str(tmp_path / "no_data"), "--seeds", "2", "--out", str(out)]) == 2
    assert "cannot be a run folder" in capsys.readouterr().err
