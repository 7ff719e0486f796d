"""The README's and docs/experiments.md's results tables quote the committed run records exactly.

Checked: the README's result row and seed links against assets/runs/gpu/test (the records and
summary.json, itself recomputed from them by seeds.py); the regularisation experiment's decision
recomputed by its own rule from the grid's records; each row of the split table and of the
test-run table in docs/experiments.md against its records; and the earlier CPU tables there (two
test runs, eight split runs, check_fit.py's output). The prose numbers are not checked here.
"""
import importlib.util
import json
import re
import statistics
from pathlib import Path

import pytest

from s10 import seeds
from s10.record import RunRecord, read_record, write_record

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXPERIMENTS = (ROOT / "docs" / "experiments.md").read_text()
SPLIT_RUNS = sorted((ROOT / "assets" / "runs").glob("val_*.json"))
GPU = ROOT / "assets" / "runs" / "gpu"


def fit_checks():
    """{run name: training-image accuracy} from check_fit.py's output saved for each run."""
    text = (ROOT / "assets" / "runs" / "check_fit.txt").read_text()
    found = re.findall(r"check_fit\.py RUNS/(\w+) .*?\n.*?\n\s+training images, un-augmented:"
                       r"\s+accuracy\s+([\d.]+)%", text)
    return dict(found)


def load(path):
    """A committed record, read as every reader reads it (RunRecord, old formats included)."""
    record = RunRecord.from_dict(json.loads(path.read_text()))
    assert record.complete, f"{path.name}: the run did not finish"
    assert len(record.epochs) == record.config["epochs"] == 24, path.name
    return record


def accuracy(epoch):
    """How the README writes an epoch's accuracy: 89.99% (8,999 / 10,000)."""
    evaluation = epoch["eval"]
    return f"{evaluation['acc']:.2f}% ({evaluation['correct']:,} / {evaluation['total']:,})"


def final(record, key="acc"):
    return record.epochs[-1]["eval"][key]


def cells(row):
    return [cell.strip() for cell in row.strip("|").split("|")]


def table_row(starts, text=EXPERIMENTS):
    rows = [line for line in text.splitlines() if line.startswith(starts)]
    assert len(rows) == 1, f"expected one row starting {starts!r}, found {len(rows)}"
    return cells(rows[0])


def sci(x):
    """How the README writes an LR: 1.485e-3."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{x:.3e}").replace("e+", "e")


@pytest.mark.parametrize("path, row", [
    ("runs/full24_f1.json", "| full24_f1, the default before the regularisation experiment |"),
    ("runs/full24.json", "| the previous default, LR_max a tenth of the lowest-loss LR |"),
])
def test_results_table_quotes_the_test_runs(path, row):
    record = load(ROOT / "assets" / path)
    assert record.eval_set == "test"
    last = record.epochs[-1]
    best = max(record.epochs, key=lambda e: e["eval"]["acc"])
    seconds = sum(e["seconds"] for e in record.epochs) / len(record.epochs)
    cols = table_row(row)
    assert cols[4].replace("**", "") == accuracy(last)  # bold or not
    assert cols[5] == f"{best['epoch']} ({best['eval']['acc']:.2f}%)"
    assert cols[6] == f"{last['eval']['acc_tta']:.2f}%"
    assert cols[7] == f"{seconds:.0f}"


def test_every_split_run_is_recorded():
    assert [p.stem for p in SPLIT_RUNS] == [
        "val_base", "val_base_s2", "val_cut05", "val_drop0", "val_lr10x", "val_lr10x_s2", "val_lr3x", "val_wd1e4"]


@pytest.mark.parametrize("path", SPLIT_RUNS, ids=lambda p: p.stem)
def test_split_table_quotes_each_record(path):
    record = load(path)
    assert record.config["val_split"] == 5000 and record.eval_set == "validation"
    last = record.epochs[-1]
    rows = [line for line in EXPERIMENTS.splitlines()
            if line.startswith("|") and accuracy(last) in line]
    assert len(rows) == 1, f"{path.name}: {accuracy(last)} is in {len(rows)} table rows of docs/experiments.md"
    row = cells(rows[0])
    assert f"(../assets/runs/{path.name})" in row[0], "the run's name should link to its record"
    assert (row[2], row[3]) == (sci(record.lr_max), sci(record.lr_min))
    assert row[5] == f"{last['eval']['acc_tta']:.2f}%"
    assert row[6] == f"{last['train_acc']:.2f}%"
    assert row[7] == f"{fit_checks()[path.stem]}%", "the last column is check_fit.py's figure"
    flags = re.findall(r"--[a-z-]+ [^ `]+", row[1])
    for flag in flags:
        name, value = flag[2:].split(" ")
        assert float(record.config[name.replace("-", "_")]) == float(value), (path.name, flag)


# ---- the regularisation experiment: the GPU runs

def spread_cell(s, bold=False):
    mean = f"{s['mean']:.2f} ± {s['std']:.2f}%"
    return f"{'**' + mean + '**' if bold else mean} [{s['min']:.2f}, {s['max']:.2f}]"


def test_the_test_summary_is_what_seeds_py_computes_from_the_records():
    summary = json.loads((GPU / "test" / "summary.json").read_text())
    again = seeds.summarize(seeds.seed_dirs(GPU / "test", 1, 3), relative_to=GPU / "test")
    assert again == summary and summary["final_acc"]["n"] == 3 and summary["eval_set"] == "test"


def test_readme_result_row_quotes_the_summary_and_each_seed():
    summary = json.loads((GPU / "test" / "summary.json").read_text())
    row = table_row("| this repository, default recipe |", README)
    assert row[3] == "3"
    assert row[4] == spread_cell(summary["final_acc"], bold=True)
    assert row[5] == spread_cell(summary["final_acc_tta"])
    for run in summary["runs"]:
        assert f"[{run['final_acc']:.2f}%](assets/runs/gpu/test/{run['run']}/metrics.json)" in README


NOTEBOOK_RUN = ROOT / "assets" / "runs" / "cpu" / "notebook" / "seed1"


def test_readme_notebook_row_quotes_the_stored_run_whose_record_the_plots_are_drawn_from():
    record = load(NOTEBOOK_RUN / "metrics.json")
    row = table_row("| this repository, `S10.ipynb` as stored |", README)
    assert row[3] == "1" and record.config["seed"] == 1
    assert row[4] == f"[{final(record):.2f}%](assets/runs/cpu/notebook/seed1/metrics.json)"
    assert row[5] == f"{final(record, 'acc_tta'):.2f}%"
    # assets/metrics.json, which publish copied and the figures were drawn from, is that record
    assert (ROOT / "assets" / "metrics.json").read_bytes() == (NOTEBOOK_RUN / "metrics.json").read_bytes()
    seconds = f"{record.seconds:,.0f} s"
    assert seconds in README and seconds in (ROOT / "docs" / "speed.md").read_text()


def test_the_decision_follows_from_the_grid_records_by_the_written_rule():
    spec = importlib.util.spec_from_file_location("regularisation", ROOT / "experiments" / "regularisation.py")
    regularisation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regularisation)
    # the decision saw the runs of the first GPU call (seeds 1 and 2 of nine settings); the
    # follow-up call's runs came later, from another commit
    decision_commit = load(GPU / regularisation.DEFAULT / "seed1" / "metrics.json").commit
    results = {}
    for setting in regularisation.GRID:
        records = [load(path) for path in sorted((GPU / setting).glob("seed*/metrics.json"))]
        results[setting] = [final(r) for r in records if r.commit == decision_commit]
    decision = json.loads((GPU / "decision.json").read_text())
    assert decision == {"results": results, **regularisation.choose(results)}
    assert decision["chosen"] == regularisation.DEFAULT


SPLIT_SETTINGS = sorted(p.name for p in GPU.iterdir() if p.is_dir() and p.name != "test")


@pytest.mark.parametrize("setting", SPLIT_SETTINGS)
def test_split_table_row_quotes_the_settings_records(setting):
    records = [load(p) for p in sorted((GPU / setting).glob("seed*/metrics.json"))]
    for record in records:
        assert record.config["val_split"] == 5000 and record.eval_set == "validation"
    row = table_row(f"| `{setting}` | {records[0].config['weight_decay']:g} |")
    config = records[0].config
    assert [float(v) for v in row[1:5]] == [config["weight_decay"], config["dropout"],
                                            config["label_smoothing"], config["lr_max_factor"]]
    finals = [final(r) for r in records]
    assert row[5] == ", ".join(f"[{a:.2f}](../assets/runs/gpu/{setting}/seed{r.config['seed']}/metrics.json)"
                               for a, r in zip(finals, records))
    assert row[6] == f"{statistics.fmean(finals):.2f} ± {statistics.stdev(finals):.2f}"
    assert row[7] == f"{statistics.fmean(final(r, 'acc_tta') for r in records):.2f}"
    assert row[8] == f"{statistics.fmean(r.epochs[-1]['train_acc'] for r in records):.2f}"
    assert row[9] == ", ".join(f"{r.lr_max:.1e}" for r in records)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_test_run_table_quotes_each_record(seed):
    record = load(GPU / "test" / f"seed{seed}" / "metrics.json")
    assert record.config["seed"] == seed and record.eval_set == "test"
    last = record.epochs[-1]
    row = table_row(f"| {seed} | {final(record):.2f}% ")
    assert row[1] == accuracy(last)
    assert row[2:7] == [f"{final(record, 'acc_tta'):.2f}%", f"{final(record, 'loss'):.4f}", f"{record.lr_max:.2e}",
                        f"{last['train_acc']:.2f}%", f"{record.seconds:.1f}"]
    assert f"(../assets/runs/gpu/test/seed{seed}/metrics.json)" in row[7]


def test_a_record_in_the_first_format_reads_as_the_current_one(tmp_path):
    old = json.loads((ROOT / "assets" / "runs" / "val_base.json").read_text())  # "test_*" keys, a validation run
    record = RunRecord.from_dict(old)
    last = old["epochs"][-1]
    assert record.eval_set == "validation" and record.config == old["config"]
    assert record.epochs[-1]["eval"] == {"loss": last["test_loss"], "acc": last["test_acc"], "correct": last["correct"],
                                         "total": last["total"], "loss_tta": last["test_loss_tta"],
                                         "acc_tta": last["test_acc_tta"]}
    write_record(tmp_path, record)  # written again, it is in the current format, and reads back the same
    text = (tmp_path / "metrics.json").read_text()
    assert '"eval_set": "validation"' in text and "test_acc" not in text and "evaluated_on" not in text
    assert read_record(tmp_path) == record
