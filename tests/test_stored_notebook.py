"""S10.ipynb's stored outputs: written only by `python -m s10.publish RUN_DIR --notebook`, from
papermill's executed copy of the same cells, with progress bars as a terminal shows them and a first
cell whose figures are the run's record's."""
import copy
import json
import shutil

import nbformat
import pytest

from s10.config import ConfigError
from s10.engine import format_eval_line
from s10.publish import main
from s10.record import read_record
from s10.stored_notebook import INJECTED, coalesced, store_notebook, stored_run_paragraph, terminal_text
from tests.conftest import ROOT

GPU_RUN = ROOT / "assets" / "runs" / "gpu" / "test" / "seed1"  # a full 24-epoch run (first record format)
EPOCH_CELL = "for epoch in run.epochs_left():"


def test_a_progress_bar_keeps_what_a_terminal_shows():
    bar = "\r  0%|   | 0/98\rTrain: Loss=2.1 50%|#  | 49/98\rTrain: Loss=1.3 100%|###| 98/98\n"
    assert terminal_text("Epoch 1/24\n" + bar + "Test set: ...\n") == \
        "Epoch 1/24\nTrain: Loss=1.3 100%|###| 98/98\nTest set: ...\n"
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in ("Epoch 1/2\n", "\rA 1", "\rA 2\n")]
    outputs.append(nbformat.v4.new_output("stream", name="stderr", text="a warning\n"))
    assert [(o.name, o.text) for o in coalesced(outputs)] == [("stdout", "Epoch 1/2\nA 2\n"), ("stderr", "a warning\n")]


def executed_copy(tmp_path, edit=None):
    """The repository's notebook as papermill would leave it: a parameters cell injected after
    ours, and every code cell printing a progress bar; `edit` changes one code cell's source."""
    notebook = nbformat.read(ROOT / "S10.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for index, cell in enumerate(code):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"\rcell {index} 50%\rcell {index} 100%\n")]
    if edit is not None:
        code[edit].source += "\nprint('changed')"
    injected = nbformat.v4.new_code_cell("smoke = False", metadata={"tags": [INJECTED]})
    parameters = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    notebook.cells.insert(parameters + 1, injected)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    nbformat.write(notebook, run_dir / "S10.ipynb")
    shutil.copyfile(GPU_RUN / "metrics.json", run_dir / "metrics.json")
    shutil.copyfile(ROOT / "S10.ipynb", tmp_path / "S10.ipynb")
    return run_dir


def test_the_run_is_stored_cell_for_cell_with_its_records_figures(tmp_path):
    run_dir = executed_copy(tmp_path)
    store_notebook(run_dir / "S10.ipynb", read_record(run_dir), "assets/metrics.json", tmp_path / "S10.ipynb")
    stored, ours = (nbformat.read(p, as_version=4) for p in (tmp_path / "S10.ipynb", ROOT / "S10.ipynb"))
    assert [c.source for c in stored.cells[1:]] == [c.source for c in ours.cells[1:]]  # papermill's cell dropped
    code = [cell for cell in stored.cells if cell.cell_type == "code"]
    assert [cell.outputs[0].text for cell in code] == [f"cell {i} 100%\n" for i in range(len(code))]
    first = stored.cells[0].source
    # the committed H200 run: 90.52% after epoch 24, 91.00% with flip TTA, read off its record
    assert "**90.52%**, 91.00% with flip TTA" in first and "[`assets/metrics.json`](assets/metrics.json)" in first
    assert "stores no run's outputs yet" not in first


@pytest.mark.parametrize("change, message", [
    ("cell", "executed from other code cells"),
    ("recipe", r"not the default recipe \(weight_decay changed\)"),
])
def test_another_notebook_or_recipe_is_refused_and_nothing_written(tmp_path, change, message):
    run_dir = executed_copy(tmp_path, edit=3 if change == "cell" else None)
    record = read_record(run_dir)
    if change == "recipe":
        record = copy.deepcopy(record)
        record.config["weight_decay"] = 5e-4
    before = (tmp_path / "S10.ipynb").read_bytes()
    with pytest.raises(ConfigError, match=message):
        store_notebook(run_dir / "S10.ipynb", record, "assets/metrics.json", tmp_path / "S10.ipynb")
    assert (tmp_path / "S10.ipynb").read_bytes() == before


def test_publish_notebook_needs_the_executed_copy(tmp_path, capsys, monkeypatch):
    run_dir = executed_copy(tmp_path)
    (run_dir / "S10.ipynb").unlink()
    monkeypatch.chdir(tmp_path)
    assert main([str(run_dir), "--to", str(tmp_path / "assets"), "--notebook"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no S10.ipynb: run the notebook with papermill" in err
    assert not (tmp_path / "assets").exists()


def test_the_repositorys_notebook_says_what_it_stores():
    notebook = nbformat.read(ROOT / "S10.ipynb", as_version=4)
    first = notebook.cells[0].source
    epoch_cell = next(cell for cell in notebook.cells if EPOCH_CELL in cell.source)
    if not epoch_cell.outputs:
        assert "stores no run's outputs yet" in first
        stale = [c.source.splitlines()[-1] for c in notebook.cells if c.cell_type == "code" and c.outputs
                 and "summary(ResNet" not in c.source]
        assert not stale, f"outputs stored without a run's record: {stale}"
        return
    record = read_record(ROOT / "assets")  # the published run is the stored one
    assert stored_run_paragraph(record, "assets/metrics.json") in first
    printed = "".join(o.text for o in epoch_cell.outputs if o.output_type == "stream")
    assert printed.rstrip().splitlines()[-1] == format_eval_line(record.epochs[-1]["eval"], record.eval_set)
    assert json.loads((ROOT / "assets" / "metrics.json").read_text())["complete"]
