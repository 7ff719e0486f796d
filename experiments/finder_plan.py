"""The LR-finder sweeps docs/lr_finder.md measures, their targets and its early-stop rule, in one
place: lr_sweeps.py (--variant), finder_rules.py and the GPU command read them from here.

    python experiments/finder_plan.py [ROOT] [--data-dir DATA] [--prefix cpu-]

prints the command of each sweep still to run under ROOT (default assets/runs/lr_finder), one a
line, in the order to run them.

A variant's records are ROOT/<prefix><name>/seed<k>.json as lr_sweeps.py writes them, one folder
per variant and device: the CPU's are assets/runs/lr_finder/cpu-<name>/ (the finder as it is,
already measured: cpu-as-is/). A folder never mixes devices, since a spread is measured within one.
"""
import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s10.lr_rules import RULES  # noqa: E402

# name -> the sweep: `repeats` sweeps of `steps` LRs spaced exponentially from start_lr to
# end_lr, each from the seed's initial weights on batches of its own, their raw losses averaged
# step by step. Each costs at most two epochs' worth of batches (196 of 512); docs/lr_finder.md
# says why these and not as-is-x2, narrow-x2, narrow-x3 or fine.
VARIANTS = {
    "as-is": {"start_lr": 1e-7, "end_lr": 10.0, "steps": 100, "repeats": 1},
    "narrow-x4": {"start_lr": 1e-6, "end_lr": 1.0, "steps": 49, "repeats": 4},
    "narrow-x8": {"start_lr": 1e-6, "end_lr": 1.0, "steps": 24, "repeats": 8},
}
FIRST_SEEDS = range(1, 6)   # every variant
LAST_SEEDS = range(6, 11)   # only a variant still in after FIRST_SEEDS
TARGETS = {"lr_max": 1.25, "lr_min": 1.5}  # max/min of each pick over the seeds
PREFIX = "cpu-"             # the device a folder's sweeps ran on
DATA_LABEL = "stand-in data (the public JPEG copy of CIFAR-10)"


def folder(root, name, prefix=PREFIX):
    return Path(root) / f"{prefix}{name}"


def load_sweeps(path, seeds=None):
    """{seed: record} of a folder's seed<k>.json records (those in `seeds`, if given), in seed order."""
    records = [json.loads(p.read_text()) for p in Path(path).glob("seed*.json")]
    return {r["seed"]: r for r in sorted(records, key=lambda r: r["seed"]) if seeds is None or r["seed"] in seeds}


def measure(sweeps, rule):
    """Each seed's (lr_max, lr_min) under `rule`, and the spread (max/min) of each."""
    picks = {seed: tuple(map(float, rule(sweep)[:2])) for seed, sweep in sweeps.items()}
    lr_max, lr_min = np.array(list(picks.values())).T
    return {"picks": picks, "lr_max_spread": float(lr_max.max() / lr_max.min()),
            "lr_min_spread": float(lr_min.max() / lr_min.min()),
            "lr_max_median": float(np.median(lr_max)), "lr_min_median": float(np.median(lr_min))}


def passes(result):
    """Both picks of one rule within their targets (a pair (sweep, rule) passes on one rule's two)."""
    return (result["lr_max_spread"] <= TARGETS["lr_max"]) and (result["lr_min_spread"] <= TARGETS["lr_min"])


def still_in(sweeps):
    """The early-stop rule: max/min over more seeds is never below max/min over fewer, so a
    variant stays in only while some rule passes on the seeds it has."""
    return any(passes(measure(sweeps, rule)) for rule in RULES.values())


def check_settings(name, sweeps, path):
    """Refuses a folder whose records swept something other than the variant its name says."""
    wanted = VARIANTS[name]
    for seed, record in sweeps.items():
        swept = {key: record["sweep"][key] for key in wanted}
        if swept != wanted:
            raise ValueError(f"{path}/seed{seed}.json swept {swept}, not the variant {name} ({wanted}): "
                             "move it to a folder of its own")


def pending(root, prefix=PREFIX):
    """[(variant, [seeds])] still to sweep under root/<prefix><variant>/: FIRST_SEEDS of every
    variant, listed first; then LAST_SEEDS of each variant whose FIRST_SEEDS are all recorded and
    still in (still_in). A variant's second half depends on its own first half alone."""
    first, last = [], []
    for name in VARIANTS:
        path = folder(root, name, prefix)
        sweeps = load_sweeps(path) if path.is_dir() else {}
        check_settings(name, sweeps, path)
        missing = [seed for seed in FIRST_SEEDS if seed not in sweeps]
        if missing:
            first.append((name, missing))
            continue
        missing = [seed for seed in LAST_SEEDS if seed not in sweeps]
        if missing and still_in({seed: sweeps[seed] for seed in FIRST_SEEDS}):
            last.append((name, missing))
    return first + last


def status(sweeps):
    """'complete' (every seed), 'stopped' (FIRST_SEEDS recorded and no rule passes on them) or
    'in progress', for the report and the decision."""
    seeds = set(sweeps)
    if seeds >= set(FIRST_SEEDS) | set(LAST_SEEDS):
        return "complete"
    if seeds >= set(FIRST_SEEDS) and not still_in({seed: sweeps[seed] for seed in FIRST_SEEDS}):
        return "stopped"
    return "in progress"


def seeds_text(seeds):
    """lr_sweeps.py's --seeds: "first-last" for a run of seeds, else "a,b,c"."""
    seeds = sorted(seeds)
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def sweep_command(name, seeds, data_dir, out_root, prefix=PREFIX, data_label=DATA_LABEL):
    """The argv that sweeps `seeds` of the variant into out_root/<prefix><name>/ (seeds already
    recorded there are skipped)."""
    return [sys.executable, str(ROOT / "experiments" / "lr_sweeps.py"), "--data-dir", str(data_dir),
            "--variant", name, "--seeds", seeds_text(seeds), "--out", str(folder(out_root, name, prefix)),
            "--data-label", data_label]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=ROOT / "assets" / "runs" / "lr_finder")
    parser.add_argument("--data-dir", default="DATA")
    parser.add_argument("--prefix", default=PREFIX, help="the device the folders' sweeps run on")
    args = parser.parse_args(argv)
    todo = pending(args.root, args.prefix)
    for name, seeds in todo:
        print(shlex.join(sweep_command(name, seeds, args.data_dir, args.root, args.prefix)))
    if not todo:  # on stderr, so that stdout stays a list of commands to run
        print(f"nothing left to sweep under {args.root}: every variant is complete or stopped "
              "(experiments/finder_rules.py decides)", file=sys.stderr)


if __name__ == "__main__":
    main()
