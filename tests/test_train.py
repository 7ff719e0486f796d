"""train.py: a run end to end, resume after a kill, one writer per run folder, its help, and every
fault as one error line."""
import json
import re
import signal
import subprocess
import time
from dataclasses import fields

import psutil
import pytest

import train
from s10 import cifar, lr
from s10.recipe import Recipe
from s10.record import load_checkpoint
from s10.config import Config, DataError, DivergedError
from s10.lr_rules import suggest_lrs
from s10.run_lock import LOCK
from tests.conftest import (RECORDED_RUN, ROOT, SMALL_MODEL, comparable, held_by_another_process, kill_in_epoch_2,
                            run_cli, signals_itself, train_command)

# an in-process run of one short epoch on the given LRs
SHORT = ["--epochs", "1", "--batch-size", "50", "--lr-max", "5e-3", "--lr-min", "5e-5"]

def test_a_run_logs_like_the_assignment_and_records_everything(recorded_run):
    out, process = recorded_run
    printed = process.stdout
    assert "150 train / 50 validation images (the last 50 training images)" in printed
    assert "Train: Loss=" in printed and "Batch_id=2 Accuracy=" in printed  # 3 steps an epoch
    assert re.search(r"Validation set: Average loss: [\d.]+, Accuracy: \d+/50 \([\d.]+%\), with flip TTA", printed)
    assert "done: validation accuracy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["device"].startswith("cpu") and "local copy" in metrics["data"]
    assert metrics["precision"] == "float32" and metrics["loader"] == "albumentations"
    assert metrics["eval_set"] == "validation" and not re.search(r"\btest (set|images|accuracy)", printed, re.I)
    assert metrics["config"]["epochs"] == 3 and metrics["config"]["val_split"] == 50
    finder = metrics["lr_finder"]
    assert len(finder["lrs"]) == len(finder["losses"]) == 12
    # the LRs trained with are the rule's reading of the recorded sweep
    assert [metrics["lr_max"], metrics["lr_min"]] == list(suggest_lrs(finder["lrs"], finder["losses"])[:2])
    assert len(metrics["lrs"]) == 3 * 3 and metrics["lrs"][0] == pytest.approx(metrics["lr_min"])
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert all(e["eval"]["total"] == 50 and {"acc_tta", "loss_tta"} <= set(e["eval"]) for e in metrics["epochs"])
    for plot in ("history", "lr_schedule", "lr_finder", "misclassified", "confusion_matrix",
                 "raw_samples", "augmented_samples"):
        assert (out / f"{plot}.png").stat().st_size > 1000


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_data, recorded_run, tmp_path):
    whole, _ = recorded_run
    killed = tmp_path / "killed"
    kill_in_epoch_2("--data-dir", tiny_data, *RECORDED_RUN, "--out", killed, log=tmp_path / "killed.log")
    expected = json.loads((whole / "metrics.json").read_text())
    partial = json.loads((killed / "metrics.json").read_text())
    assert not partial["complete"] and len(partial["epochs"]) == 1
    # a second process with the same seed: the same sweep, LRs and first epoch, to the last bit
    assert (partial["lr_finder"], partial["lr_max"]) == (expected["lr_finder"], expected["lr_max"])
    assert comparable(partial) == comparable(expected)[:1]
    # the killed run's lock file stays behind, naming a process that is gone: it must not block
    assert (killed / LOCK).read_text().strip().isdigit()

    resumed = run_cli("--resume", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1 of 3; so far:" in resumed.stdout and "LR finder" not in resumed.stdout
    got = json.loads((killed / "metrics.json").read_text())
    assert got["complete"] and got["lrs"] == expected["lrs"]
    assert comparable(got) == comparable(expected)  # same batches, same dropout: same numbers
    assert not (killed / LOCK).exists()


def files(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_a_second_process_on_a_folder_in_use_stops_and_touches_nothing(tiny_data, tmp_path):
    out = tmp_path / "run"
    # the first run trains TinyNet (what is tested is the folder, not the model) and stops itself
    # at its first training step, holding the folder, so the test does not race a run that
    # lasts a second or two
    first = subprocess.Popen(train_command("--data-dir", tiny_data, *SHORT, "--precision", "fp32", "--out", out,
                                           prelude=SMALL_MODEL + signals_itself(signal.SIGSTOP, epoch=0)),
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while psutil.Process(first.pid).status() != psutil.STATUS_STOPPED:
            assert first.poll() is None and time.time() < deadline, "the first run never reached its first step"
            time.sleep(0.02)
        assert (out / LOCK).read_text().strip() == str(first.pid)
        before = files(out)
        for second in (["--data-dir", tiny_data, *SHORT, "--out", out], ["--resume", out]):
            refused = run_cli(*second)
            assert refused.returncode == 2 and refused.stdout == ""
            assert refused.stderr.startswith(f"error: {out} is in use by process {first.pid},")
            assert refused.stderr.count("\n") == 1
            assert files(out) == before
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0
    assert json.loads((out / "metrics.json").read_text())["complete"] and not (out / LOCK).exists()


def test_seeds_lock_every_seed_folder_before_any_work(tiny_data, tmp_path, capsys):
    out = tmp_path / "series"
    with held_by_another_process(out / "seed2") as pid:  # as another process running seed 2 would
        assert train.main(["--data-dir", str(tiny_data), *SHORT, "--seeds", "3", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out / 'seed2'} is in use by process {pid},")
        assert sorted(p.name for p in out.iterdir()) == ["seed2"]  # seed 1 was locked, then let go


def test_resume_refuses_conflicting_flags_and_out_refuses_a_run_folder(recorded_run, tiny_data, capsys):
    out, _ = recorded_run
    assert train.main(["--resume", str(out), "--epochs", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "epochs = 5 (the run has 3)" in err
    assert train.main(["--data-dir", str(tiny_data), *SHORT, "--out", str(out)]) == 2
    assert f"already holds a run: continue it with --resume {out}" in capsys.readouterr().err


def test_help_gives_every_flag_its_config_fields_text(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at the terminal's width: one line a flag
    text = train.build_parser().format_help()
    for field in fields(Config):
        flag = f"--{field.name.replace('_', '-')}"
        # the flag, its metavar, then (on the same line or the next) the field's own text
        assert re.search(rf"^  {flag}\b[^\n]*\s+{re.escape(field.metadata['help'])} \(default: ", text, re.M), flag
    assert "--pct-start PCT_START" in text and "(default: 5/24)" in text and "0.2083" not in text


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "epochs must be a positive whole number"),
    (["--batch-size", "-1"], "batch_size must be a positive whole number"),
    (["--lr-max", "0", "--lr-min", "1e-4"], "lr_max must be a positive number"),
    (["--lr-max", "1e-3", "--lr-min", "1e-2"], "lr_min (0.01) must be smaller than lr_max (0.001)"),
    (["--lr-max", "1e-3"], "give both --lr-max and --lr-min"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda:99"], "not available on this machine"),
    (["--loader", "fast"], "loader must be one of auto, albumentations, device, got 'fast'"),
    (["--precision", "fp8"], "precision must be one of auto, bf16, fp16, fp32, got 'fp8'"),
    (["--subset", "100000"], "subset 100000 is larger than the 200 training images"),
    (["--eval-subset", "0"], "eval_subset must be a positive number of images, got 0"),
    (["--eval-subset", "101"], "eval_subset 101 is larger than the 100 test images"),
    (["--val-split", "50", "--eval-subset", "51"], "eval_subset 51 is larger than the 50 validation images"),
    (["--val-split", "-5"], "val_split must be a whole number of images >= 0"),
    (["--cutout-p", "1.5"], "cutout_p must be in [0, 1], got 1.5"),
    (["--label-smoothing", "1"], "label_smoothing must be in [0, 1), got 1.0"),
    (["--label-smoothing", "-0.1"], "label_smoothing must be in [0, 1), got -0.1"),
    (["--seeds", "0"], "--seeds must be a positive number of runs, got 0"),
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
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # the folder its lock made is gone again


def test_bf16_on_a_cpu_without_it_is_refused_before_the_data_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("s10.device.cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(cifar, "download_cifar10", lambda root: pytest.fail("the data was looked for"))
    assert train.main(["--data-dir", str(tmp_path / "empty"), "--precision", "bf16", "--device", "cpu",
                       "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --precision bf16 needs a CPU with bf16 instructions") and err.count("\n") == 1


def test_missing_data_offline_exits_with_a_message(tmp_path, monkeypatch, capsys):
    def offline(root):
        raise DataError(f"CIFAR-10 is not in {root} and could not be downloaded")
    monkeypatch.setattr(cifar, "download_cifar10", offline)
    assert train.main(["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    assert "could not be downloaded" in capsys.readouterr().err


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch, capsys,
                                                             small_model):
    real_train = Recipe.train_epoch

    def diverge_in_epoch_2(recipe, loader, epoch):
        if epoch == 1:
            raise DivergedError(f"the training loss became nan at epoch {epoch + 1}, step 3")
        return real_train(recipe, loader, epoch)

    monkeypatch.setattr(Recipe, "train_epoch", diverge_in_epoch_2)
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), *SHORT, "--epochs", "3", "--out", str(out)]) == 2
    assert "loss became nan at epoch 2, step 3" in capsys.readouterr().err
    assert len(load_checkpoint(out / "checkpoint.pt")["record"].epochs) == 1


def test_a_real_nan_loss_is_caught(tiny_data, tmp_path, capsys):
    code = train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50",
                       "--lr-max", "1e12", "--lr-min", "1e11", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "error: the training loss became " in capsys.readouterr().err


def test_a_sweep_without_a_usable_curve_is_a_warning_line_and_recorded(tiny_data, tmp_path, monkeypatch, capsys,
                                                                       small_model, no_figures):
    sweep = {"lrs": [1e-7, 1e-6, 1e-5], "losses": [2.3, 50.0, float("nan")]}
    monkeypatch.setattr(lr, "lr_range_test", lambda *args, **kwargs: sweep)
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "1", "--batch-size", "50", "--out", str(out)]) == 0
    lr_max, lr_min, notes = suggest_lrs(sweep["lrs"], sweep["losses"])
    assert f"warning: {notes[0]}\n" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["lr_max"], metrics["lr_min"], metrics["lr_finder"]["notes"]) == (lr_max, lr_min, notes)


@pytest.mark.parametrize("flags, line", [
    (["--eval-subset", "20"], "200 train / 20 test images (the first 20 of the test set)"),
    (["--val-split", "50", "--eval-subset", "20"],
     "150 train / 20 validation images (the first 20 of the last 50 training images)"),
])
def test_an_eval_subset_says_which_images_and_each_epoch_counts_only_them(tiny_data, tmp_path, capsys, small_model,
                                                                         no_figures, flags, line):
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), *SHORT, "--no-tta", *flags, "--out", str(out)]) == 0
    assert line in capsys.readouterr().out
    assert [e["eval"]["total"] for e in json.loads((out / "metrics.json").read_text())["epochs"]] == [20]
