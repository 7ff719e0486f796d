"""The README's results tables quote the committed run records exactly.

Checked: in Results, the accuracy, best epoch, flip-TTA and seconds cells of the two test runs'
rows against assets/metrics.json and assets/runs/full24.json; in the validation-split table, each
run's row against assets/runs/val_*.json (accuracy, LRs, TTA, training accuracy, the flags shown)
and its last column against check_fit.py's output in assets/runs/check_fit.txt. The prose numbers
are not checked here.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SPLIT_RUNS = sorted((ROOT / "assets" / "runs").glob("val_*.json"))


def fit_checks():
    """{run name: training-image accuracy} from check_fit.py's output saved for each run."""
    text = (ROOT / "assets" / "runs" / "check_fit.txt").read_text()
    found = re.findall(r"check_fit\.py ~/runs/(\w+) .*?\n.*?\n\s+training images, un-augmented:"
                       r"\s+accuracy\s+([\d.]+)%", text)
    return dict(found)


def load(path):
    record = json.loads(path.read_text())
    assert record["complete"], f"{path.name}: the run did not finish"
    assert len(record["epochs"]) == record["config"]["epochs"] == 24, path.name
    return record


def accuracy(epoch):
    """How the README writes an epoch's accuracy: 89.99% (8,999 / 10,000)."""
    return f"{epoch['test_acc']:.2f}% ({epoch['correct']:,} / {epoch['total']:,})"


def cells(row):
    return [cell.strip() for cell in row.strip("|").split("|")]


def table_row(starts):
    rows = [line for line in README.splitlines() if line.startswith(starts)]
    assert len(rows) == 1, f"expected one README row starting {starts!r}, found {len(rows)}"
    return cells(rows[0])


def sci(x):
    """How the README writes an LR: 1.485e-3."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{x:.3e}").replace("e+", "e")


@pytest.mark.parametrize("path, row", [
    ("metrics.json", "| this repository, default recipe |"),
    ("runs/full24.json", "| the previous default, LR_max a tenth of the lowest-loss LR |"),
])
def test_results_table_quotes_the_test_runs(path, row):
    record = load(ROOT / "assets" / path)
    assert record["config"].get("val_split", 0) == 0 and record.get("evaluated_on", "test set") == "test set"
    last = record["epochs"][-1]
    best = max(record["epochs"], key=lambda e: e["test_acc"])
    seconds = sum(e["seconds"] for e in record["epochs"]) / len(record["epochs"])
    cols = table_row(row)
    assert cols[4].replace("**", "") == accuracy(last)  # bold or not
    assert cols[5] == f"{best['epoch']} ({best['test_acc']:.2f}%)"
    assert cols[6] == f"{last['test_acc_tta']:.2f}%"
    assert cols[7] == f"{seconds:.0f}"


def test_every_split_run_is_recorded():
    assert [p.stem for p in SPLIT_RUNS] == [
        "val_base", "val_base_s2", "val_cut05", "val_drop0", "val_lr10x", "val_lr10x_s2", "val_lr3x", "val_wd1e4"]


@pytest.mark.parametrize("path", SPLIT_RUNS, ids=lambda p: p.stem)
def test_split_table_quotes_each_record(path):
    record = load(path)
    assert record["config"]["val_split"] == 5000 and "validation split" in record["evaluated_on"]
    last = record["epochs"][-1]
    rows = [line for line in README.splitlines()
            if line.startswith("|") and accuracy(last) in line]
    assert len(rows) == 1, f"{path.name}: {accuracy(last)} is in {len(rows)} README table rows"
    row = cells(rows[0])
    assert f"(assets/runs/{path.name})" in row[0], "the run's name should link to its record"
    assert (row[2], row[3]) == (sci(record["lr_max"]), sci(record["lr_min"]))
    assert row[5] == f"{last['test_acc_tta']:.2f}%"
    assert row[6] == f"{last['train_acc']:.2f}%"
    assert row[7] == f"{fit_checks()[path.stem]}%", "the last column is check_fit.py's figure"
    flags = re.findall(r"--[a-z-]+ [^ `]+", row[1])
    for flag in flags:
        name, value = flag[2:].split(" ")
        assert float(record["config"][name.replace("-", "_")]) == float(value), (path.name, flag)
