"""Every candidate LR-finder rule applied to the same recorded sweeps, and the spread of each
rule's picks over the seeds (max/min), as docs/lr_finder.md measures them.

    python experiments/finder_rules.py DIR [DIR ...] [--json OUT]

DIR holds the seed<k>.json records of experiments/lr_sweeps.py (one sweep per seed, or several
whose raw losses are averaged).
"""
import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s10.lr import suggest_lrs  # noqa: E402
from s10.lr_rules import average_sweeps, finder_smoothing, read_curve  # noqa: E402

TARGETS = {"lr_max": 1.25, "lr_min": 1.5}  # max/min over the seeds


def ema_min(lrs, raw):
    """The rule in use: the finder's smoothed curve read by s10.lr.suggest_lrs."""
    return suggest_lrs(lrs, finder_smoothing(raw))[:2]


def gaussian(bandwidth, lr_max_at, rise=1.3):
    rule = functools.partial(read_curve, bandwidth=bandwidth, rise=rise, lr_max_at=lr_max_at)
    return lambda lrs, raw: rule(lrs, raw)[:2]


# fixed in docs/lr_finder.md before the 10-seed sweeps were read
CANDIDATES = {
    "ema-min": ema_min,
    "cliff1.3-b0.4": gaussian(0.4, "cliff", 1.3),
    "cliff1.2-b0.4": gaussian(0.4, "cliff", 1.2),
    "min-b0.4": gaussian(0.4, "min"),
    "cliff1.3-b0.25": gaussian(0.25, "cliff", 1.3),
    "cliff1.2-b0.25": gaussian(0.25, "cliff", 1.2),
    "min-b0.25": gaussian(0.25, "min"),
}


def load_sweeps(folder):
    """[(seed, lrs, raw losses)] of a folder's records, several sweeps of a seed averaged."""
    sweeps = []
    for path in sorted(Path(folder).glob("seed*.json"), key=lambda p: int(p.stem[4:])):
        record = json.loads(path.read_text())
        lrs, raw = average_sweeps(record.get("sweeps") or [record])
        sweeps.append((record["seed"], lrs, raw))
    return sweeps


def measure(sweeps, rule):
    """Each seed's (lr_max, lr_min) under `rule`, and the spread (max/min) of each."""
    picks = {seed: tuple(map(float, rule(lrs, raw))) for seed, lrs, raw in sweeps}
    lr_max, lr_min = np.array(list(picks.values())).T
    return {"picks": picks, "lr_max_spread": float(lr_max.max() / lr_max.min()),
            "lr_min_spread": float(lr_min.max() / lr_min.min()),
            "lr_max_median": float(np.median(lr_max)), "lr_min_median": float(np.median(lr_min))}


def passes(result):
    return (result["lr_max_spread"] <= TARGETS["lr_max"]) and (result["lr_min_spread"] <= TARGETS["lr_min"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write every rule's picks and spreads here")
    args = parser.parse_args(argv)
    results = {}
    print(f"{'sweeps':24s} {'rule':16s} {'seeds':>5s} {'LR_max median':>13s} {'max/min':>7s} "
          f"{'LR_min median':>13s} {'max/min':>7s}  pass")
    for folder in args.folders:
        sweeps = load_sweeps(folder)
        for name, rule in CANDIDATES.items():
            r = results.setdefault(folder.name, {})[name] = measure(sweeps, rule)
            print(f"{folder.name:24s} {name:16s} {len(sweeps):5d} {r['lr_max_median']:13.3e} "
                  f"{r['lr_max_spread']:7.2f} {r['lr_min_median']:13.3e} {r['lr_min_spread']:7.2f}  "
                  f"{'yes' if passes(r) else 'no'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
