"""Every candidate LR-finder rule applied to the same recorded sweeps, and the spread of each
rule's picks over the seeds (max/min), as docs/lr_finder.md measures them.

    python experiments/finder_rules.py DIR [DIR ...] [--json OUT] [--markdown]

DIR holds the seed<k>.json records of experiments/lr_sweeps.py (one sweep per seed, or several
whose raw losses are averaged) of one variant of experiments/finder_plan.py. A folder that its
early-stop rule stopped is measured on its first seeds only; the decision is taken among complete
folders, once no folder is in progress.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.finder_plan import (FIRST_SEEDS, TARGETS, load_sweeps, measure, passes,  # noqa: E402
                                     status)
from s10.config import Config  # noqa: E402
from s10.lr_rules import RULES  # noqa: E402


def sweep_cost(sweeps):
    """Batches one seed's finder trains on: steps x repeats (the finder may stop early)."""
    settings = next(iter(sweeps.values()))["sweep"]
    return settings["steps"] * settings["repeats"]


def choose(results, costs):
    """docs/lr_finder.md's decision rule. `results`: {sweep name: {rule: measure(...)}};
    `costs`: {sweep name: batches}. Among the (sweep, rule) pairs that pass, the cheapest sweep,
    then the smallest LR_max spread; if none passes, the pair nearest the targets, marked so."""
    pairs = [(s, rule, r) for s, rules in results.items() for rule, r in rules.items()]
    passing = [(costs[s], r["lr_max_spread"], s, rule) for s, rule, r in pairs if passes(r)]
    if passing:
        _, _, s, rule = min(passing)
        return {"sweep": s, "rule": rule, "passes": True}
    _, s, rule = min((max(r["lr_max_spread"] / TARGETS["lr_max"], r["lr_min_spread"] / TARGETS["lr_min"]), s, rule)
                     for s, rule, r in pairs)
    return {"sweep": s, "rule": rule, "passes": False}


def measure_folder(folder):
    """(status, cost, {rule: measure(...)}) of one variant's folder; a stopped one on FIRST_SEEDS,
    an empty one (a series that has not recorded its first seed) in progress with nothing measured."""
    sweeps = load_sweeps(folder)
    state = status(sweeps)
    if not sweeps:
        return state, None, {}
    if state == "stopped":
        sweeps = {seed: sweeps[seed] for seed in FIRST_SEEDS}
    return state, sweep_cost(sweeps), {name: measure(sweeps, rule) for name, rule in RULES.items()}


def markdown_table(measured):
    """docs/lr_finder.md's table of one folder: every rule's medians, spreads and targets met."""
    lines = ["| rule | LR_max median | LR_max max/min | LR_min median | LR_min max/min | targets met |",
             "|---|---|---|---|---|---|"]
    for name, r in measured.items():
        label = f"`{name}` (the rule in use)" if name == Config().finder_rule else f"`{name}`"
        lines.append(f"| {label} | {r['lr_max_median']:.3e} | {r['lr_max_spread']:.2f} | "
                     f"{r['lr_min_median']:.3e} | {r['lr_min_spread']:.2f} | {'yes' if passes(r) else 'no'} |"
                     .replace("e-0", "e-"))
    return "\n".join(lines)


def decide(folders):
    """{results, costs, status, decision} of the folders: every rule measured on each, and the
    decision among the complete ones once none is in progress (else None)."""
    results, costs, states = {}, {}, {}
    for folder in folders:
        states[folder.name], costs[folder.name], results[folder.name] = measure_folder(folder)
    complete = {name: rules for name, rules in results.items() if states[name] == "complete"}
    decision = None
    if complete and "in progress" not in states.values():
        decision = choose(complete, costs)
    return {"results": results, "costs": costs, "status": states, "decision": decision}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write every rule's picks and spreads here")
    parser.add_argument("--markdown", action="store_true", help="also print each folder's table as docs/lr_finder.md shows it")
    args = parser.parse_args(argv)
    record = decide(args.folders)
    print(f"{'sweeps':24s} {'rule':16s} {'seeds':>5s} {'LR_max median':>13s} {'max/min':>7s} "
          f"{'LR_min median':>13s} {'max/min':>7s}  pass")
    for folder, measured in record["results"].items():
        for name, r in measured.items():
            print(f"{folder:24s} {name:16s} {len(r['picks']):5d} {r['lr_max_median']:13.3e} "
                  f"{r['lr_max_spread']:7.2f} {r['lr_min_median']:13.3e} {r['lr_min_spread']:7.2f}  "
                  f"{'yes' if passes(r) else 'no'}")
    if args.markdown:
        for folder, measured in record["results"].items():
            if measured:
                print(f"\n{folder}\n\n{markdown_table(measured)}\n")
    print("status: " + ", ".join(f"{name} {state}" for name, state in record["status"].items()))
    decision = record["decision"]
    if decision:
        print(f"chosen: sweep {decision['sweep']}, rule {decision['rule']}"
              + ("" if decision["passes"] else " (the nearest to the targets: none passes)"))
    else:
        print("no decision: a folder is in progress, or none is complete")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
