"""experiments/finder_plan.py: which sweeps are still to run under docs/lr_finder.md's early-stop
rule, and the command that runs them (lr_sweeps.py --variant), as the CPU queue and the GPU
command both use it."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import finder_plan, finder_rules
from experiments.finder_plan import FIRST_SEEDS, LAST_SEEDS, VARIANTS, pending, status, sweep_command
from s10.lr_rules import finder_smoothing

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lr_sweeps", ROOT / "experiments" / "lr_sweeps.py")
lr_sweeps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lr_sweeps)


def curve(lrs, shift):
    """Raw losses falling from 2.3 to 1 around 10^-4.5 and blowing up past 10^-2, moved `shift` x in LR."""
    x = np.log10(lrs) - np.log10(shift)
    return 1.0 + 1.3 / (1 + np.exp(4 * (x + 4.5))) + np.exp(3 * (x + 2))


def write_seed(folder, name, seed, shift=1.0):
    """A record as lr_sweeps.py writes it: the variant's LRs, a curve moved `shift` x in LR."""
    plan = VARIANTS[name]
    lrs = np.geomspace(plan["start_lr"], plan["end_lr"], plan["steps"])
    raw = curve(lrs, shift)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed{seed}.json").write_text(json.dumps(
        {"seed": seed, "lrs": lrs.tolist(), "losses": finder_smoothing(raw), "raw_losses": raw.tolist(),
         "sweep": {**plan, "subset": None, "batch_size": 512}}))


def write_series(root, name, seeds, shifts=None):
    for seed in seeds:
        write_seed(finder_plan.folder(root, name), name, seed, (shifts or {}).get(seed, 1.0))


def test_nothing_swept_yet_lists_the_first_seeds_of_every_variant(tmp_path):
    assert pending(tmp_path) == [(name, list(FIRST_SEEDS)) for name in VARIANTS]


def test_a_variant_stays_in_while_one_rule_passes_on_its_first_seeds(tmp_path):
    names = list(VARIANTS)
    # the same curve on every seed: every rule's spread is 1, within both targets
    write_series(tmp_path, names[0], FIRST_SEEDS)
    # moved 1x to 16x: no rule keeps LR_max within 1.25 on these, so the variant stops
    write_series(tmp_path, names[1], FIRST_SEEDS, shifts={seed: 2.0 ** (seed - 1) for seed in FIRST_SEEDS})
    # seeds 1, 2 and 4 only: its first seeds still to finish
    write_series(tmp_path, names[2], [1, 2, 4])
    assert pending(tmp_path) == [(names[2], [3, 5]), (names[0], list(LAST_SEEDS))]
    assert status(finder_plan.load_sweeps(finder_plan.folder(tmp_path, names[1]))) == "stopped"
    assert status(finder_plan.load_sweeps(finder_plan.folder(tmp_path, names[0]))) == "in progress"


def test_a_variant_in_its_second_half_lists_what_is_left_and_then_nothing(tmp_path):
    name = list(VARIANTS)[0]
    write_series(tmp_path, name, [*FIRST_SEEDS, 6, 7])
    assert (name, [8, 9, 10]) in pending(tmp_path)
    write_series(tmp_path, name, [8, 9, 10])
    assert name not in [n for n, _ in pending(tmp_path)]
    assert status(finder_plan.load_sweeps(finder_plan.folder(tmp_path, name))) == "complete"


def test_the_finder_as_it_is_is_already_measured_on_the_cpu():
    records = ROOT / "assets" / "runs" / "lr_finder"
    assert "as-is" not in [name for name, _ in pending(records)]
    assert finder_plan.folder(records, "as-is") == records / "cpu-as-is"


def test_the_cpu_study_has_nothing_left_to_sweep_and_says_so(capsys):
    # every variant's CPU folder is complete or stopped by the early-stop rule
    records = ROOT / "assets" / "runs" / "lr_finder"
    assert pending(records) == []
    finder_plan.main([str(records), "--data-dir", "DATA"])
    out, err = capsys.readouterr()
    assert out == "" and "nothing left to sweep" in err


def test_a_folder_of_other_sweeps_is_refused(tmp_path):
    name = list(VARIANTS)[1]
    write_seed(finder_plan.folder(tmp_path, name), list(VARIANTS)[0], seed=1)
    with pytest.raises(ValueError, match=f"not the variant {name}"):
        pending(tmp_path)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_costs_at_most_two_epochs_of_batches(name):
    assert VARIANTS[name]["steps"] * VARIANTS[name]["repeats"] <= 2 * 98  # 50,000 images in batches of 512


def test_the_sweep_command_runs_the_variant_into_its_folder(tmp_path, monkeypatch):
    ran = []

    def fake_sweep(cfg, images, device):  # what lr_sweeps.py would sweep, without sweeping
        ran.append(cfg)
        return {"seed": cfg.seed, "lr_max": 1e-2, "lr_min": 1e-5, "lrs": [], "losses": [], "raw_losses": [],
                "seconds": 0.0}

    monkeypatch.setattr(lr_sweeps, "sweep_seed", fake_sweep)
    monkeypatch.setattr(lr_sweeps.cifar, "load_cifar10", lambda data_dir: {"source": data_dir})
    argv = sweep_command("narrow-x8", [2, 4, 5], "DATA", tmp_path)
    assert argv[1].endswith("experiments/lr_sweeps.py") and argv[argv.index("--seeds") + 1] == "2,4,5"
    lr_sweeps.main(argv[2:] + ["--device", "cpu"])
    plan = VARIANTS["narrow-x8"]
    assert [cfg.seed for cfg in ran] == [2, 4, 5]
    assert all((cfg.finder_start_lr, cfg.finder_end_lr, cfg.finder_steps, cfg.finder_repeats)
               == (plan["start_lr"], plan["end_lr"], plan["steps"], plan["repeats"]) for cfg in ran)
    record = json.loads((tmp_path / "cpu-narrow-x8" / "seed4.json").read_text())
    assert record["variant"] == "narrow-x8" and record["data"] == finder_plan.DATA_LABEL
    assert {k: record["sweep"][k] for k in plan} == plan


def test_a_variant_with_its_own_sweep_flags_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        lr_sweeps.main(["--variant", "narrow-x4", "--steps", "50", "--out", str(tmp_path)])
    assert "drop --steps" in capsys.readouterr().err


def test_seeds_are_given_as_a_range_or_a_list():
    assert lr_sweeps.parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert lr_sweeps.parse_seeds("2,4,6-7") == [2, 4, 6, 7]
    assert finder_plan.seeds_text([6, 7, 8]) == "6-8" and finder_plan.seeds_text([3, 5]) == "3,5"


def test_the_decision_waits_for_every_folder_and_leaves_out_a_stopped_one(tmp_path):
    names = list(VARIANTS)
    write_series(tmp_path, names[0], [*FIRST_SEEDS, *LAST_SEEDS])  # complete: every rule's spread is 1
    # stopped after its first seeds (a seed 6 swept anyway is left out of its spread)
    write_series(tmp_path, names[1], [*FIRST_SEEDS, 6], shifts={seed: 2.0 ** (seed - 1) for seed in FIRST_SEEDS})
    finder_plan.folder(tmp_path, names[2]).mkdir()  # started, nothing recorded yet
    folders = [str(finder_plan.folder(tmp_path, name)) for name in names]
    finder_rules.main([*folders, "--json", str(tmp_path / "rules.json")])
    measured = json.loads((tmp_path / "rules.json").read_text())
    assert measured["status"] == {f"cpu-{names[0]}": "complete", f"cpu-{names[1]}": "stopped",
                                  f"cpu-{names[2]}": "in progress"}
    assert measured["decision"] is None
    assert {len(r["picks"]) for r in measured["results"][f"cpu-{names[1]}"].values()} == {len(FIRST_SEEDS)}
    finder_rules.main([*folders[:2], "--json", str(tmp_path / "rules.json")])
    decision = json.loads((tmp_path / "rules.json").read_text())["decision"]
    assert decision["sweep"] == f"cpu-{names[0]}" and decision["passes"]
