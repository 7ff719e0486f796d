"""The notebook's own code cells, run top to bottom on each path a user can take: both LRs given,
a run folder holding an interrupted run (continued) or a finished one (shown, nothing trained),
and a validation split. `pytest --nbval` runs the fresh path with the LR sweep."""
import ast
import contextlib
import inspect
import io
import json
import re
from pathlib import Path

import pytest

import train
import utils
from s10 import runs
from s10.config import Config, DivergedError
from s10.recipe import Recipe

NOTEBOOK = Path(__file__).resolve().parents[1] / "S10.ipynb"
# a small run: 200 training images in batches of 50, a short sweep, 2 epochs (TinyNet: small_model)
SMALL = {"batch_size": 50, "epochs": 2, "finder_steps": 5, "workers": 0, "precision": "fp32", "device": "cpu"}


def notebook_code():
    """(code, tags) of the notebook's code cells as plain Python: IPython's `%` and `!` lines
    (Colab set-up and the inline backend) are left out."""
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    return [("\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!"))),
             c["metadata"].get("tags", [])) for c in cells]


def run_notebook(cfg, run_dir):
    """Every code cell, in order, in one namespace, with the parameters cell's values replaced
    as papermill replaces them: `cfg`'s settings, `run_dir`. Returns (namespace, what it printed)."""
    defaults = Config().to_dict()
    settings = {k: v for k, v in cfg.to_dict().items() if v != defaults[k]}
    injected = f"smoke = False\nrun_dir = {str(run_dir)!r}\nsettings = {settings!r}"
    namespace, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        for code, tags in notebook_code():
            exec(compile(code, str(NOTEBOOK), "exec"), namespace)
            if "parameters" in tags:  # papermill's injected cell comes right after it
                exec(injected, namespace)
    assert namespace["cfg"] == cfg
    return namespace, printed.getvalue()


def test_the_parameters_cell_is_the_one_papermill_replaces():
    tagged = [code for code, tags in notebook_code() if "parameters" in tags]
    assert len(tagged) == 1
    namespace = {}
    exec(tagged[0], namespace)
    assert {k: namespace[k] for k in ("smoke", "run_dir", "settings")} == {"smoke": None, "run_dir": None,
                                                                          "settings": {}}
    assert utils.notebook_config(False, {}) == Config() and utils.notebook_config(True, {}).subset == 1024


def test_with_both_lrs_given_the_finder_cell_says_so_and_training_runs(tiny_data, tmp_path, monkeypatch,
                                                                       small_model):
    cfg = Config(data_dir=str(tiny_data), lr_max=5e-3, lr_min=5e-5, **SMALL)
    assets = {p: p.stat().st_mtime_ns for p in (NOTEBOOK.parent / "assets").rglob("*")}
    namespace, printed = run_notebook(cfg, tmp_path / "run")
    assert assets == {p: p.stat().st_mtime_ns for p in (NOTEBOOK.parent / "assets").rglob("*")}  # untouched
    assert "no LR sweep: the config gives LR_max = 5.000e-03 and LR_min = 5.000e-05" in printed
    assert not (tmp_path / "run" / "lr_finder.png").exists()
    assert namespace["run"].record.complete and len(namespace["run"].record.epochs) == 2
    assert (tmp_path / "run" / "history.png").exists() and "| test accuracy, last epoch |" in printed


def test_an_interrupted_run_continues_and_a_finished_one_is_only_shown(tiny_data, tmp_path, monkeypatch,
                                                                       small_model):
    run_dir = tmp_path / "run"
    real_epoch = Recipe.train_epoch

    def stop_in_epoch_2(recipe, loader, epoch):
        if epoch == 1:  # as a disconnect would: epoch 1's checkpoint is on disk, epoch 2 is lost
            raise DivergedError("stopped for the test")
        return real_epoch(recipe, loader, epoch)

    monkeypatch.setattr(Recipe, "train_epoch", stop_in_epoch_2)
    assert train.main(["--data-dir", str(tiny_data), "--batch-size", "50", "--epochs", "2", "--finder-steps", "5",
                       "--workers", "0", "--precision", "fp32", "--device", "cpu", "--out", str(run_dir)]) == 2
    monkeypatch.setattr(Recipe, "train_epoch", real_epoch)

    cfg = Config(data_dir=str(tiny_data), **SMALL)
    namespace, printed = run_notebook(cfg, run_dir)
    assert f"resuming {run_dir} after epoch 1 of 2" in printed and "Epoch 2/2" in printed
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["complete"] and [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["resumed"][0]["after_epoch"] == 1
    assert (run_dir / "lr_finder.png").exists()  # the sweep comes from the checkpoint

    written = (run_dir / "metrics.json").read_bytes()
    namespace, printed = run_notebook(cfg, run_dir)
    assert f"{run_dir} holds a finished run of 2 epochs" in printed and "Epoch 2/2 (from the checkpoint)" in printed
    assert (run_dir / "metrics.json").read_bytes() == written
    assert "| test accuracy, last epoch |" in printed


@pytest.mark.filterwarnings("ignore:the LR sweep gave no usable curve")  # 5 steps on 150 images
def test_a_validation_split_runs_every_cell_on_the_held_out_images(tiny_data, tmp_path, monkeypatch,
                                                                   small_model):
    cfg = Config(data_dir=str(tiny_data), val_split=50, **SMALL)
    namespace, printed = run_notebook(cfg, tmp_path / "run")
    assert "150 training and 50 validation images" in printed
    assert "Validation set:" in printed and "| validation accuracy, last epoch |" in printed
    assert not re.search(r"\btest (set|images|accuracy)", printed, re.I)  # nothing calls them test images
    assert len(namespace["eval_images"]) == 50 and namespace["counts"].sum() == 50
    assert namespace["run"].record.eval_set == "validation"


def test_train_py_runs_the_notebooks_epoch_loop_step_for_step():
    """runs.train_epochs (train.py's loop) is the notebook's epoch cell, but for printing through
    `log` and calling the names utils re-exports by their own."""
    def loop(tree):
        node = next(n for n in ast.walk(tree) if isinstance(n, ast.For))
        return ast.dump(node).replace("Attribute(value=Name(id='utils', ctx=Load()), attr='format_eval_line', ctx=Load())",
                                      "Name(id='format_eval_line', ctx=Load())")
    cell = next(code for code, _ in notebook_code() if "run.epochs_left()" in code)
    function = ast.parse(inspect.getsource(runs.train_epochs))
    assert loop(ast.parse(cell)) == loop(function).replace("Name(id='log', ctx=Load())", "Name(id='print', ctx=Load())")
