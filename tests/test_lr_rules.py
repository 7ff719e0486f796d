"""The rules that read a sweep's raw losses (s10.lr_rules): the raw losses recovered from
torch-lr-finder's smoothing, smoothing without lag, the halfway and cliff points, the fallbacks;
and the script that measures each rule's spread over seeds."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from s10.cifar import load_cifar10
from s10.config import Config
from s10.data import make_loaders
from s10.lr_rules import (FALLBACK_LR_MAX, FALLBACK_RATIO, RULES, average_sweeps, crossing, finder_smoothing,
                          read_curve, smooth_over_log_lr, start_steps, unsmooth)
from s10.recipe import make_optimizer
from tests.conftest import CPU, TinyNet

ROOT = Path(__file__).resolve().parents[1]


def script(name):
    """experiments/<name>.py, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


finder_rules, lr_sweeps, finder_plan, sweep_stats = (script(name) for name in
                                                     ("finder_rules", "lr_sweeps", "finder_plan", "sweep_stats"))


def sweep_history(tiny_data, smooth_f):
    """torch-lr-finder's own history of a short sweep, the same batches and weights each call."""
    from torch_lr_finder import LRFinder
    torch.manual_seed(0)
    cfg = Config(batch_size=50, workers=0)
    loader = make_loaders(load_cifar10(tiny_data, download=False), cfg, CPU)[0]
    model = TinyNet()
    finder = LRFinder(model, make_optimizer(model, cfg), torch.nn.CrossEntropyLoss(), device=CPU)
    finder.range_test(loader, start_lr=1e-4, end_lr=1.0, num_iter=8, smooth_f=smooth_f, diverge_th=1e9)
    return finder.history["loss"]


def test_unsmooth_recovers_the_finders_raw_losses(tiny_data):
    # the oracle: the finder itself, asked for no smoothing on the same sweep
    raw, smoothed = sweep_history(tiny_data, 0.0), sweep_history(tiny_data, 0.05)
    assert raw != smoothed
    np.testing.assert_allclose(unsmooth(smoothed), raw, rtol=1e-9)
    np.testing.assert_allclose(finder_smoothing(raw), smoothed, rtol=1e-12)


def test_gaussian_smoothing_keeps_a_line_and_does_not_lag():
    lrs = np.logspace(-6, 0, 121)  # 20 points per decade
    x = np.log10(lrs)
    line = smooth_over_log_lr(lrs, 3.0 - 0.2 * x, bandwidth=0.2)
    inner = (x > -6 + 1.0) & (x < -1.0)  # five bandwidths from either end
    np.testing.assert_allclose(line[inner], (3.0 - 0.2 * x)[inner], rtol=1e-6)
    valley = smooth_over_log_lr(lrs, np.abs(x + 3.0), bandwidth=0.3)
    assert x[np.argmin(valley)] == pytest.approx(-3.0)  # an EMA would move it to larger LRs
    ema = finder_smoothing(np.abs(x + 3.0))
    assert x[np.argmin(ema)] > -3.0 + 0.5


def test_crossing_interpolates_in_log_lr():
    lrs = [1e-3, 1e-2, 1e-1]
    assert crossing(lrs, [2.0, 1.0, 3.0], 1.5, falling=True) == pytest.approx(10 ** -2.5)
    assert crossing(lrs, [2.0, 1.0, 3.0], 2.0, falling=False) == pytest.approx(10 ** -1.5)
    assert crossing(lrs, [2.0, 1.0, 3.0], 0.5, falling=True) is None


def piecewise_curve():
    """Flat at 2.3 to 1e-5, falling linearly in log10(LR) to 1.0 at 1e-3, flat to 1e-2, then
    rising by 2 per decade: halfway (1.65) at 1e-4, 1.3 x the bottom at 10^-1.85."""
    lrs = np.logspace(-7, 1, 801)
    x = np.log10(lrs)
    losses = np.select([x <= -5, x <= -3, x <= -2], [2.3, 2.3 - 0.65 * (x + 5), 1.0], 1.0 + 2 * (x + 2))
    return lrs, losses


def test_read_curve_finds_the_halfway_point_and_the_cliff():
    lrs, losses = piecewise_curve()
    lr_max, lr_min, notes, reading = read_curve(lrs, losses, bandwidth=0.02, rise=1.3, min_divisor=3)
    assert notes == []
    assert reading["halfway_lr"] == pytest.approx(1e-4, rel=0.01)
    assert lr_min == pytest.approx(1e-4 / 3, rel=0.01)
    assert lr_max == reading["cliff_lr"] == pytest.approx(10 ** -1.85, rel=0.01)
    by_min = read_curve(lrs, losses, bandwidth=0.02, lr_max_at="min")
    assert 1e-3 <= by_min[0] <= 1e-2  # somewhere on the flat bottom


COARSE = np.geomspace(1e-6, 1.0, 24)  # narrow-x8's LRs: 0.26 decades (1.8x) a step
STEP = 6 / 23


def test_between_steps_the_bottom_of_a_valley_is_read_where_it_is_not_at_a_step():
    # a parabola in log10(LR) with its vertex halfway between two steps; the Gaussian smoothing
    # only lifts it by bandwidth^2 (a symmetric kernel keeps a vertex where it is)
    vertex = -6 + 11.5 * STEP
    raw = 1.0 + (np.log10(COARSE) - vertex) ** 2
    sweep = {"lrs": COARSE.tolist(), "raw_losses": raw.tolist()}
    between = RULES["min-b0.4-i"](sweep)[3]
    assert np.log10(between["bottom_lr"]) == pytest.approx(vertex, abs=0.005)
    assert between["bottom"] == pytest.approx(1.0 + 0.4 ** 2, rel=1e-3)
    at_steps = RULES["min-b0.4"](sweep)[3]
    assert abs(np.log10(at_steps["bottom_lr"]) - vertex) == pytest.approx(STEP / 2)  # snapped to a step


def test_between_steps_a_crossing_halfway_between_two_steps_is_read_there():
    vertex, bandwidth = -6 + 10 * STEP, 0.4
    x = np.log10(COARSE)
    raw = 1.0 + (x - vertex) ** 2
    bottom = 1.0 + bandwidth ** 2  # the smoothed parabola's lowest value
    # the rise at which the smoothed curve crosses rise x bottom 2.5 steps past the vertex
    rise = 1 + (2.5 * STEP) ** 2 / bottom
    lr_max, lr_min, notes, reading = read_curve(COARSE, raw, bandwidth=bandwidth, rise=rise, between_steps=True)
    assert notes == []
    assert np.log10(lr_max) == pytest.approx(vertex + 2.5 * STEP, abs=1e-3)
    # halfway down from the start (the median of the first decade's steps) to the bottom
    start = np.median(raw[x <= -5 + 1e-9])
    assert np.log10(reading["halfway_lr"]) == pytest.approx(vertex - np.sqrt((start - bottom) / 2), abs=0.01)


@pytest.mark.parametrize("lrs, steps", [(np.geomspace(1e-7, 10, 100), 13), (np.geomspace(1e-6, 1, 49), 9),
                                        (COARSE, 4)])
def test_between_steps_the_start_is_the_first_decade_of_steps(lrs, steps):
    assert start_steps(lrs, between_steps=True) == steps
    assert start_steps(lrs, between_steps=False) == 10


def test_a_sweep_that_ends_before_the_cliff_takes_the_bottom_with_a_note():
    lrs, losses = piecewise_curve()
    keep = lrs <= 10 ** -2.5
    lr_max, _, notes, _ = read_curve(lrs[keep], losses[keep], bandwidth=0.02)
    assert 1e-3 <= lr_max <= 10 ** -2.5
    assert len(notes) == 1 and "ended before" in notes[0]


@pytest.mark.parametrize("losses", [[2.3] * 40, [2.3, 4.0, 9.0, 30.0] * 10, [2.3] * 5 + [float("nan")] * 35, []])
def test_a_curve_with_no_fall_falls_back_with_a_note(losses):
    lr_max, lr_min, notes, reading = read_curve(np.logspace(-7, 1, len(losses)), losses)
    assert (lr_max, lr_min, reading) == (FALLBACK_LR_MAX, FALLBACK_LR_MAX / FALLBACK_RATIO, None)
    assert len(notes) == 1 and "falling back" in notes[0]


def test_average_sweeps_cuts_to_the_shortest():
    lrs, raw = average_sweeps([{"lrs": [1, 2, 3], "raw_losses": [1.0, 2.0, 3.0]},
                               {"lrs": [1, 2], "raw_losses": [3.0, 4.0]}])
    assert lrs.tolist() == [1, 2] and raw.tolist() == [2.0, 3.0]


def write_sweeps(folder, curves):
    folder.mkdir()
    for seed, (lrs, raw) in enumerate(curves, start=1):
        (folder / f"seed{seed}.json").write_text(json.dumps(
            {"seed": seed, "lrs": list(lrs), "losses": finder_smoothing(raw), "raw_losses": list(raw),
             "sweep": {"steps": len(lrs), "repeats": 1}}))
    return folder


def test_the_spread_of_a_rule_is_max_over_min_across_seeds(tmp_path, capsys):
    lrs, losses = piecewise_curve()
    shifted = [(lrs * factor, losses) for factor in (1.0, 1.1, 1.2)]  # the same curve, moved
    folder = write_sweeps(tmp_path / "moved", shifted)
    result = finder_rules.measure(finder_rules.load_sweeps(folder), RULES["cliff1.3-b0.4"])
    assert result["lr_max_spread"] == pytest.approx(1.2, rel=1e-6)
    assert result["lr_min_spread"] == pytest.approx(1.2, rel=1e-6)
    assert finder_rules.passes(result)
    finder_rules.main([str(folder), "--json", str(tmp_path / "rules.json")])
    assert set(json.loads((tmp_path / "rules.json").read_text())["results"]["moved"]) == set(RULES)
    assert "cliff1.3-b0.4" in capsys.readouterr().out


def test_the_sweeps_summary_lists_the_seeds_in_order_and_their_spread(tmp_path):
    for seed, lr_max, lr_min in [(10, 4e-2, 2e-5), (2, 1e-2, 1e-5), (9, 2e-2, 3e-5)]:
        (tmp_path / f"seed{seed}.json").write_text(json.dumps({"seed": seed, "lr_max": lr_max, "lr_min": lr_min}))
    assert lr_sweeps.summarise(tmp_path) == {"seeds": [2, 9, 10], "lr_max": [1e-2, 2e-2, 4e-2],
                                             "lr_min": [1e-5, 3e-5, 2e-5], "lr_max_spread": 4.0,
                                             "lr_min_spread": pytest.approx(3.0)}


def result(lr_max_spread, lr_min_spread=1.0):
    return {"lr_max_spread": lr_max_spread, "lr_min_spread": lr_min_spread}


def test_the_cheapest_passing_sweep_wins_then_the_smallest_spread():
    results = {"one": {"a": result(1.4), "b": result(1.3)},
               "two": {"a": result(1.2), "b": result(1.1)},
               "four": {"a": result(1.05)}}
    costs = {"one": 100, "two": 196, "four": 196}
    assert finder_rules.choose(results, costs) == {"sweep": "four", "rule": "a", "passes": True}
    results["four"]["a"] = result(1.05, lr_min_spread=1.6)  # LR_min fails
    assert finder_rules.choose(results, costs) == {"sweep": "two", "rule": "b", "passes": True}
    # none passes: the pair nearest the targets, marked as failing
    failing = {"one": {"a": result(1.4), "b": result(1.3, 1.7)}}
    assert finder_rules.choose(failing, {"one": 100}) == {"sweep": "one", "rule": "a", "passes": False}


SWEEP_RECORDS = ROOT / "assets" / "runs" / "lr_finder"


@pytest.mark.parametrize("path", sorted(SWEEP_RECORDS.glob("*/seed*.json")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_rule_in_use_gives_each_stored_sweeps_recorded_picks(path):
    record = json.loads(path.read_text())
    lr_max, lr_min, _, _ = RULES[record.get("rule", "ema-min")](record)
    assert (lr_max, lr_min) == (record["lr_max"], record["lr_min"])
    # and the raw losses stored beside the finder's smoothed ones are the ones behind them
    np.testing.assert_allclose(finder_smoothing(record["raw_losses"]), record["losses"], rtol=1e-9)


@pytest.mark.parametrize("stored", sorted(SWEEP_RECORDS.glob("*/rules.json")), ids=lambda p: p.parent.name)
def test_every_rules_picks_on_the_stored_sweeps_are_the_recorded_ones(stored):
    _, _, measured = finder_rules.measure_folder(stored.parent)
    recorded = json.loads(stored.read_text())["results"][stored.parent.name]
    assert set(recorded) == set(RULES)
    for rule, r in measured.items():
        assert {str(seed): list(picks) for seed, picks in r["picks"].items()} == recorded[rule]["picks"], rule


def test_the_expected_range_of_normal_draws_is_the_control_chart_constant():
    # d2 of the quality-control tables (ASTM E2587): 2.326 for 5 draws, 3.078 for 10
    assert sweep_stats.expected_range(5) == pytest.approx(2.326, abs=1e-3)
    assert sweep_stats.expected_range(10) == pytest.approx(3.078, abs=1e-3)


def test_the_sweeps_sd_is_pooled_within_groups():
    lrs, losses = piecewise_curve()
    # two groups far apart in LR, each of two sweeps 10^0.1 apart: only the within-group moves count
    groups = [[{"lrs": lrs * 10 ** (offset + d), "raw_losses": losses} for d in (0.0, 0.1)] for offset in (0.0, 1.0)]
    sd, dof = sweep_stats.pooled_sd(groups, bandwidth=0.02, between_steps=True)
    assert dof == 2
    # halfway and both cliffs (the bottom of this curve is a flat basin, with no one place)
    np.testing.assert_allclose(sd[:3], np.std([0.0, 0.1], ddof=1), atol=2e-3)


def test_the_averaging_fit_splits_the_spread_into_what_averaging_leaves_and_what_it_divides():
    a, b = 0.05 ** 2, 0.08 ** 2
    repeats = [1, 4, 8]
    sds = [np.sqrt(a + b / k) for k in repeats]
    assert sweep_stats.averaging_fit(repeats, sds, [9, 4, 4]) == pytest.approx((a, b))
    # the k a target SD needs: b / (target^2 - a); none when what averaging leaves is already above it
    assert sweep_stats.repeats_needed(a, b, 0.06) == pytest.approx(b / (0.06 ** 2 - a))
    assert sweep_stats.repeats_needed(a, b, 0.05) is None
    # SDs that fall faster than 1/sqrt(k) would fit a < 0: kept at 0, all of it divided by k
    a, b = sweep_stats.averaging_fit([1, 4], [0.1, 0.02], [9, 4])
    assert a == 0 and b > 0


LR_FINDER_DOC = ROOT / "docs" / "lr_finder.md"


def test_the_sd_within_a_seed_is_pooled_over_the_sweeps_of_each_seed(tmp_path):
    lrs, losses = piecewise_curve()
    # two seeds far apart in LR; within each, two sweeps 10^0.1 apart
    for seed, offset in ((1, 0.0), (2, 1.0)):
        each = [{"lrs": (lrs * 10 ** (offset + d)).tolist(), "raw_losses": losses.tolist()} for d in (0.0, 0.1)]
        (tmp_path / f"seed{seed}.json").write_text(json.dumps({"seed": seed, "each_sweep": each}))
    sd, dof, seeds = sweep_stats.within_sd(tmp_path, bandwidth=0.02)
    assert (dof, seeds) == (2, 2)
    np.testing.assert_allclose(sd[:3], np.std([0.0, 0.1], ddof=1), atol=2e-3)


def test_the_sd_within_a_seed_needs_records_that_keep_each_sweep(tmp_path):
    (tmp_path / "seed1.json").write_text(json.dumps({"seed": 1, "lrs": [1e-3], "raw_losses": [2.3]}))
    with pytest.raises(SystemExit, match="one by one"):
        sweep_stats.within_sd(tmp_path)


def docs_table(heading):
    """{first cell's `name`: [the other cells]} of the tables between `heading` in docs/lr_finder.md
    and the next heading."""
    text = LR_FINDER_DOC.read_text().split(heading)[1].split("\n#")[0]
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| `")]
    return {cells[0].strip().split("`")[1]: [c.strip() for c in cells[1:]] for cells in rows}


def assert_docs_table_is(table, measured):
    """Every rule's row: medians, spreads and whether it meets the targets, as measured."""
    assert set(table) == set(RULES)
    for rule, cells in table.items():
        r = measured[rule]
        assert cells == [f"{r['lr_max_median']:.3e}".replace("e-0", "e-"), f"{r['lr_max_spread']:.2f}",
                         f"{r['lr_min_median']:.3e}".replace("e-0", "e-"), f"{r['lr_min_spread']:.2f}",
                         "yes" if finder_plan.passes(r) else "no"], rule


def test_the_docs_spread_table_is_the_stored_sweeps_measured_again():
    sweeps = finder_rules.load_sweeps(SWEEP_RECORDS / "cpu-as-is")
    assert f"measured on seeds 1 to {len(sweeps)}\n" in LR_FINDER_DOC.read_text()
    measured = {name: finder_rules.measure(sweeps, rule) for name, rule in RULES.items()}
    assert_docs_table_is(docs_table("## The finder as it is, measured"), measured)
    # the rows are the ones `finder_rules.py --markdown` prints
    for row in finder_rules.markdown_table(measured).splitlines()[2:]:
        assert row in LR_FINDER_DOC.read_text()


@pytest.mark.parametrize("variant", sorted(set(finder_plan.VARIANTS) - {"as-is"}))
def test_the_docs_table_of_each_measured_variant_is_its_records_measured_again(variant):
    folder = finder_plan.folder(SWEEP_RECORDS, variant)
    state, _, measured = finder_rules.measure_folder(folder) if folder.is_dir() else ("in progress", None, {})
    heading = f"### `{variant}`, seeds 1 to "
    if state == "in progress":
        # no spread is shown before the seeds the decision reads
        assert heading not in LR_FINDER_DOC.read_text()
        return
    seeds = len(next(iter(measured.values()))["picks"])
    assert_docs_table_is(docs_table(f"{heading}{seeds}\n"), measured)
    assert finder_rules.markdown_table(measured) in LR_FINDER_DOC.read_text()


def test_the_stored_decision_is_the_folders_decided_again_and_the_docs_say_it():
    stored = json.loads((SWEEP_RECORDS / "decision.json").read_text())
    folders = [finder_plan.folder(SWEEP_RECORDS, variant) for variant in finder_plan.VARIANTS]
    again = json.loads(json.dumps(finder_rules.decide(folders)))  # seeds as JSON keys, tuples as lists
    assert again == stored
    decision = stored["decision"]
    text = LR_FINDER_DOC.read_text().split("### The decision")[1].split("\n## ")[0]
    r = stored["results"][decision["sweep"]][decision["rule"]]
    assert (f"the finder as it is with `{decision['rule']}`, LR_max {r['lr_max_spread']:.2f} times and LR_min "
            f"{r['lr_min_spread']:.2f} times") in " ".join(text.split())
    assert ("no pair passes, and the finder in use stays" in " ".join(text.split())) == (not decision["passes"])


def test_the_docs_status_of_the_averaged_sweeps_is_their_folders():
    rows = docs_table("## The averaged sweeps, measured")
    assert set(rows) == set(finder_plan.VARIANTS) - {"as-is"}
    for variant, (seeds, state) in rows.items():
        folder = finder_plan.folder(SWEEP_RECORDS, variant)
        sweeps = finder_rules.load_sweeps(folder) if folder.is_dir() else {}
        assert seeds == (", ".join(map(str, sorted(sweeps))) if sweeps else "none yet"), variant
        assert state == finder_plan.status(sweeps), variant


def test_the_docs_sds_of_the_averaged_sweeps_are_their_folders_measured_again():
    rows = docs_table("### What averaging did")
    assert set(rows) == set(finder_plan.VARIANTS)
    for variant, cells in rows.items():
        repeats, seeds, sd = sweep_stats.folder_sd(finder_plan.folder(SWEEP_RECORDS, variant))
        assert cells == [str(repeats), str(seeds), *(f"{v:.3f}" for v in sd)], variant


def test_the_docs_sd_within_a_seed_is_its_records_measured_again():
    folder = SWEEP_RECORDS / "cpu-as-is-x4-within"
    assert sweep_stats.within_line(folder) in LR_FINDER_DOC.read_text()
