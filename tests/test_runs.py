"""Runs as the notebook continues them: a run folder with another config is refused, a finished run
is shown without changing its record, a resumed run keeps what it started with."""
import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import train
from s10.cifar import load_cifar10
from s10.config import Config, ConfigError
from s10.data import make_loaders
from s10.recipe import Recipe
from s10.record import read_record
from s10.run_lock import LOCK, FolderInUse
from s10.runs import Run, config_conflicts, find_checkpoint, open_run, run_record, train_epochs
from tests.conftest import CPU, ROOT, held_by_another_process

# the config of conftest's recorded run, as the notebook would spell it
RECORDED = {"epochs": 3, "batch_size": 50, "finder_steps": 12, "val_split": 50, "tta": True, "precision": "fp32"}


def test_a_run_folder_with_another_config_is_refused(recorded_run, tmp_path):
    out, _ = recorded_run
    same = Config(**RECORDED, data_dir="elsewhere", workers=0)  # runtime settings may differ
    assert find_checkpoint(out, same)["record"].epochs[0]["epoch"] == 1
    with pytest.raises(ConfigError, match=r"epochs = 4 \(the run has 3\)"):
        find_checkpoint(out, Config(**{**RECORDED, "epochs": 4}))
    assert find_checkpoint(tmp_path / "empty", same) is None
    # a run saved before a setting existed ran with its default, so another value conflicts
    older = {k: v for k, v in Config().to_dict().items() if k != "val_split"}
    assert config_conflicts(older, Config()) == {}
    assert config_conflicts(older, Config(val_split=5000)) == {"val_split": (5000, 0)}


def test_a_finished_run_is_shown_without_changing_its_record(recorded_run, tiny_data, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(recorded_run[0], out)
    written = (out / "metrics.json").read_bytes()
    cfg = Config(**RECORDED, data_dir=str(tiny_data), workers=0)
    data = load_cifar10(tiny_data, download=False)
    train_loader, eval_loader, mean, std = make_loaders(data, cfg, CPU)
    recipe = Recipe(cfg, CPU)
    recipe.schedule(5e-3, 5e-5, len(train_loader))
    checkpoint = find_checkpoint(out, cfg)
    record = run_record(cfg, recipe, data, mean, std, None, commit="later")
    lines = []
    finished = train_epochs(open_run(out, recipe, record, checkpoint, log=lines.append), recipe,
                            (train_loader, eval_loader), log=lines.append)
    assert finished == read_record(out) and finished.resumed == []  # the run's own record
    assert (out / "metrics.json").read_bytes() == written
    assert "holds a finished run of 3 epochs" in lines[0] and "Validation set:" in lines[1]
    assert "with flip TTA" in lines[1] and not {"Epoch 1/3", "Epoch 2/3", "Epoch 3/3"} & set(lines)  # none trained
    assert all(torch.equal(v, checkpoint["model"][k]) for k, v in recipe.model.state_dict().items())
    (out / "metrics.json").unlink()  # stopped before its final metrics.json: rewritten from the checkpoint
    rebuilt = open_run(out, recipe, record, checkpoint, log=lines.append).record
    assert rebuilt.complete and rebuilt.epochs == finished.epochs and rebuilt.commit == finished.commit
    assert read_record(out) == rebuilt  # saved
    completed = (out / "metrics.json").read_bytes()
    assert train.main(["--resume", str(out)]) == 0  # the command line: history and plots, nothing trained
    assert (out / "metrics.json").read_bytes() == completed


def test_a_resumed_run_keeps_the_precision_it_started_with(tiny_data, tmp_path, monkeypatch, small_model,
                                                           no_figures):
    real_save = Run.save_epoch

    def save_then_stop(*args, **kwargs):  # an interruption right after epoch 1's checkpoint
        real_save(*args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(Run, "save_epoch", save_then_stop)
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "2", "--batch-size", "50", "--precision", "fp32",
                       "--lr-max", "5e-3", "--lr-min", "5e-5", "--out", str(out)]) == 130
    monkeypatch.setattr(Run, "save_epoch", real_save)
    monkeypatch.setattr("s10.device.cpu_has_native_bf16", lambda: True)
    assert train.main(["--resume", str(out), "--precision", "bf16"]) == 0  # epoch 2 in bf16
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "float32" and len(metrics["epochs"]) == 2
    assert [(r["after_epoch"], r["precision"]) for r in metrics["resumed"]] == [(1, "bfloat16")]


@pytest.mark.parametrize("amp, precision", [(True, "auto"), (False, "fp32")])
def test_a_config_saved_with_amp_resumes_with_the_precision_it_meant(amp, precision):
    saved = {**{k: v for k, v in Config().to_dict().items() if k != "precision"}, "amp": amp}
    assert Config.from_dict(saved).precision == precision
    checkpoint = {"record": SimpleNamespace(config=saved)}  # resumed_config reads the record's config
    assert train.resumed_config(checkpoint, {}, "run").precision == precision
    # the precision may change on resume, as amp could: it changes how the run computes, not what
    assert train.resumed_config(checkpoint, {"precision": "fp16"}, "run").precision == "fp16"


def test_a_committed_record_from_before_precision_reads_amp_as_auto():
    # the GPU test runs' records were written when the config had `amp`, not `precision`
    config = json.loads((ROOT / "assets" / "runs" / "gpu" / "test" / "seed1" / "metrics.json").read_text())["config"]
    assert config["amp"] is True and "precision" not in config
    assert Config.from_dict(config).precision == "auto" and config_conflicts(config, Config()) == {}


def test_the_notebooks_run_holds_its_folder_for_as_long_as_its_kernel_lives(tiny_data, tmp_path, small_model):
    cfg = Config(epochs=1, batch_size=50, workers=0, precision="fp32", data_dir=str(tiny_data))
    data = load_cifar10(tiny_data, download=False)
    train_loader, _, mean, std = make_loaders(data, cfg, CPU)
    recipe = Recipe(cfg, CPU)
    recipe.schedule(5e-3, 5e-5, len(train_loader))
    record = run_record(cfg, recipe, data, mean, std, None)
    out = tmp_path / "run"
    with held_by_another_process(out) as pid:  # a train.py writing the folder
        with pytest.raises(FolderInUse, match=f"is in use by process {pid},"):
            open_run(out, recipe, record, log=lambda line: None)
        assert [p.name for p in out.iterdir()] == [LOCK]  # nothing written
    open_run(out, recipe, record, log=lambda line: None)
    open_run(out, recipe, record, log=lambda line: None)  # its cells run again in the same kernel
    assert (out / LOCK).read_text() == f"{os.getpid()}\n"
    other = subprocess.run([sys.executable, "-c", "import sys\nfrom s10.run_lock import run_folder_lock\n"
                            "with run_folder_lock(sys.argv[1]):\n    pass", str(out)],
                           cwd=ROOT, capture_output=True, text=True)
    assert other.returncode != 0 and f"is in use by process {os.getpid()}," in other.stderr
