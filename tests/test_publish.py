"""s10.publish: the one step that copies a finished full run to assets/; quick and unfinished runs
are refused, and nothing is copied for them."""
import json
import shutil

import pytest

from s10.config import ConfigError
from s10.publish import main, publish
from tests.conftest import ROOT

NOTEBOOK_RUN = ROOT / "assets" / "runs" / "gpu" / "test" / "seed1" / "metrics.json"  # a full 24-epoch run


def run_folder(tmp_path, **changes):
    """A run folder holding the notebook's committed record (with `changes`) and one figure."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = json.loads(NOTEBOOK_RUN.read_text())
    record["config"].update(changes.pop("config", {}))
    (run_dir / "metrics.json").write_text(json.dumps({**record, **changes}))
    (run_dir / "history.png").write_bytes(b"\x89PNG a figure")
    return run_dir


def test_a_finished_full_run_is_copied_as_it_is(tmp_path):
    run_dir = run_folder(tmp_path)
    assert publish(run_dir, tmp_path / "assets") == ["metrics.json", "history.png"]
    for name in ("metrics.json", "history.png"):
        assert (tmp_path / "assets" / name).read_bytes() == (run_dir / name).read_bytes()


@pytest.mark.parametrize("changes, message", [
    ({"config": {"subset": 1024}}, "trained on 1024 images, a quick or smoke run"),
    ({"config": {"eval_subset": 1000}}, "evaluated on 1000 test images, a quick or smoke run"),
    ({"config": {"val_split": 5000}}, r"evaluated on a validation split \(5000 held-out training images\)"),
    ({"complete": False}, "has not finished"),
])
def test_a_smoke_or_unfinished_run_is_refused_and_nothing_is_copied(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        publish(run_folder(tmp_path, **changes), tmp_path / "assets")
    assert not (tmp_path / "assets").exists()


def test_the_command_says_what_it_copied_or_one_error_line(tmp_path, capsys):
    assert main([str(run_folder(tmp_path)), "--to", str(tmp_path / "assets")]) == 0
    assert capsys.readouterr().out == f"copied to {tmp_path / 'assets'}: metrics.json, history.png\n"
    shutil.rmtree(tmp_path / "run")
    assert main([str(tmp_path / "run"), "--to", str(tmp_path / "assets")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no metrics.json" in err and err.count("\n") == 1
