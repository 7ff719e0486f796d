"""Every candidate LR-finder rule applied to the same recorded sweeps, and the spread of each
rule's picks over the seeds (max/min), as docs/lr_finder.md measures them.

    python experiments/finder_rules.py DIR [DIR ...] [--json OUT]

DIR holds the seed<k>.json records of experiments/lr_sweeps.py (one sweep per seed, or several
whose raw losses are averaged).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s10.lr_rules import RULES  # noqa: E402

TARGETS = {"lr_max": 1.25, "lr_min": 1.5}  # max/min over the seeds


def load_sweeps(folder):
    """{seed: sweep} of a folder's records, in seed order."""
    records = [json.loads(p.read_text()) for p in Path(folder).glob("seed*.json")]
    return {r["seed"]: r for r in sorted(records, key=lambda r: r["seed"])}


def measure(sweeps, rule):
    """Each seed's (lr_max, lr_min) under `rule`, and the spread (max/min) of each."""
    picks = {seed: tuple(map(float, rule(sweep)[:2])) for seed, sweep in sweeps.items()}
    lr_max, lr_min = np.array(list(picks.values())).T
    return {"picks": picks, "lr_max_spread": float(lr_max.max() / lr_max.min()),
            "lr_min_spread": float(lr_min.max() / lr_min.min()),
            "lr_max_median": float(np.median(lr_max)), "lr_min_median": float(np.median(lr_min))}


def passes(result):
    return (result["lr_max_spread"] <= TARGETS["lr_max"]) and (result["lr_min_spread"] <= TARGETS["lr_min"])


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write every rule's picks and spreads here")
    args = parser.parse_args(argv)
    results, costs = {}, {}
    print(f"{'sweeps':24s} {'rule':16s} {'seeds':>5s} {'LR_max median':>13s} {'max/min':>7s} "
          f"{'LR_min median':>13s} {'max/min':>7s}  pass")
    for folder in args.folders:
        sweeps = load_sweeps(folder)
        costs[folder.name] = sweep_cost(sweeps)
        for name, rule in RULES.items():
            r = results.setdefault(folder.name, {})[name] = measure(sweeps, rule)
            print(f"{folder.name:24s} {name:16s} {len(sweeps):5d} {r['lr_max_median']:13.3e} "
                  f"{r['lr_max_spread']:7.2f} {r['lr_min_median']:13.3e} {r['lr_min_spread']:7.2f}  "
                  f"{'yes' if passes(r) else 'no'}")
    decision = choose(results, costs)
    print(f"chosen: sweep {decision['sweep']}, rule {decision['rule']}"
          + ("" if decision["passes"] else " (the nearest to the targets: none passes)"))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "costs": costs, "decision": decision}, indent=1) + "\n")


if __name__ == "__main__":
    main()
