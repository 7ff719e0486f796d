"""The notebook's own code cells, run top to bottom on each path a user can take: both LRs given,
a run folder holding an interrupted run (continued) or a finished one (shown, nothing trained),
and a validation split. `pytest --nbval` runs the fresh path with the LR sweep."""
import contextlib
import io
import json
from pathlib import Path

import pytest

import train
import utils
from s10 import engine
from s10.config import Config, DivergedError

NOTEBOOK = Path(__file__).resolve().parents[1] / "S10.ipynb"
# a small run: 200 training images in batches of 50, a short sweep, 2 epochs (TinyNet: small_model)
SMALL = {"batch_size": 50, "epochs": 2, "finder_steps": 5, "workers": 0, "precision": "fp32", "device": "cpu"}


def notebook_code():
    """The notebook's code cells as plain Python: IPython's `%` and `!` lines (Colab set-up and
    the inline backend) are left out."""
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    return ["\n".join(line for line in "".join(c["source"]).splitlines()
                      if not line.lstrip().startswith(("%", "!"))) for c in cells]


def run_notebook(cfg, run_dir, figures, monkeypatch):
    """Every code cell, in order, in one namespace, with `cfg` as the config cell's; returns
    (namespace, what the cells printed)."""
    monkeypatch.setattr(utils, "notebook_config", lambda: cfg)
    monkeypatch.setenv("S10_RUN_DIR", str(run_dir))
    monkeypatch.setenv("S10_FIGURES", str(figures))
    namespace, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        for code in notebook_code():
            exec(compile(code, str(NOTEBOOK), "exec"), namespace)
    return namespace, printed.getvalue()


def test_with_both_lrs_given_the_finder_cell_says_so_and_training_runs(tiny_data, tmp_path, monkeypatch,
                                                                       small_model):
    cfg = Config(data_dir=str(tiny_data), lr_max=5e-3, lr_min=5e-5, **SMALL)
    namespace, printed = run_notebook(cfg, tmp_path / "run", tmp_path / "figures", monkeypatch)
    assert "no LR sweep: the config gives LR_max = 5.000e-03 and LR_min = 5.000e-05" in printed
    assert not (tmp_path / "figures" / "lr_finder.png").exists()
    assert namespace["metrics"]["complete"] and len(namespace["metrics"]["epochs"]) == 2
    assert (tmp_path / "figures" / "history.png").exists() and "| test accuracy, last epoch |" in printed


def test_an_interrupted_run_continues_and_a_finished_one_is_only_shown(tiny_data, tmp_path, monkeypatch,
                                                                       small_model):
    run_dir = tmp_path / "run"
    real_epoch = engine.train_one_epoch

    def stop_in_epoch_2(model, loader, optimizer, scheduler, criterion, device, epoch, *rest):
        if epoch == 1:  # as a disconnect would: epoch 1's checkpoint is on disk, epoch 2 is lost
            raise DivergedError("stopped for the test")
        return real_epoch(model, loader, optimizer, scheduler, criterion, device, epoch, *rest)

    monkeypatch.setattr(engine, "train_one_epoch", stop_in_epoch_2)
    assert train.main(["--data-dir", str(tiny_data), "--batch-size", "50", "--epochs", "2", "--finder-steps", "5",
                       "--workers", "0", "--precision", "fp32", "--device", "cpu", "--out", str(run_dir)]) == 2
    monkeypatch.setattr(engine, "train_one_epoch", real_epoch)

    cfg = Config(data_dir=str(tiny_data), **SMALL)
    namespace, printed = run_notebook(cfg, run_dir, tmp_path / "figures", monkeypatch)
    assert f"resuming {run_dir} after epoch 1 of 2" in printed and "Epoch 2/2" in printed
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["complete"] and [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["resumed"][0]["after_epoch"] == 1
    assert (tmp_path / "figures" / "lr_finder.png").exists()  # the sweep comes from the checkpoint

    written = (run_dir / "metrics.json").read_bytes()
    namespace, printed = run_notebook(cfg, run_dir, tmp_path / "figures", monkeypatch)
    assert f"{run_dir} holds a finished run of 2 epochs" in printed and "Epoch 2/2 (from the checkpoint)" in printed
    assert (run_dir / "metrics.json").read_bytes() == written
    assert "| test accuracy, last epoch |" in printed


@pytest.mark.filterwarnings("ignore:the LR sweep gave no usable curve")  # 5 steps on 150 images
def test_a_validation_split_runs_every_cell_on_the_held_out_images(tiny_data, tmp_path, monkeypatch,
                                                                   small_model):
    cfg = Config(data_dir=str(tiny_data), val_split=50, **SMALL)
    namespace, printed = run_notebook(cfg, tmp_path / "run", tmp_path / "figures", monkeypatch)
    assert "150 training and 50 test images" in printed  # the 50 held out stand in for the test set
    assert "Validation set:" in printed and "| validation accuracy, last epoch |" in printed
    assert len(namespace["test_images"]) == 50 and namespace["counts"].sum() == 50
