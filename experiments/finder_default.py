"""Choose the LR finder, then the default with it, on one GPU (docs/lr_finder.md holds the plan
and both rules, written before the runs).

    python experiments/finder_default.py --data-dir DATA --runs DIR [--parallel 6] [--smoke]

1. sweeps:  every sweep in SWEEPS on seeds 1-10 (experiments/lr_sweeps.py), DIR/sweeps/<name>/
2. finder:  every rule on every sweep, and the choice (experiments/finder_rules.py), DIR/finder.json
3. split:   every candidate in CANDIDATES on seeds 1-3, on the validation split, with the chosen
            finder, DIR/split/<name>/seed<k>/; the choice in DIR/decision.json
4. test:    the chosen setting on seeds 1-5, on the test set, DIR/test/seed<k>/; DIR/test/summary.json

The same command again continues: finished sweeps and runs are kept, unfinished runs resume.
Several runs share the GPU at once (--parallel); nothing here is specific to one machine.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s10.record import CHECKPOINT, read_record  # noqa: E402
from s10.seeds import choose_setting  # noqa: E402

SEEDS = range(1, 11)
# name -> (first LR, last LR, steps, sweeps averaged): each at most two epochs' worth of batches
SWEEPS = {
    "as-is": (1e-7, 10.0, 100, 1),
    "as-is-x2": (1e-7, 10.0, 98, 2),
    "narrow-x2": (1e-6, 1.0, 98, 2),
    "narrow-x3": (1e-6, 1.0, 65, 3),
    "fine": (1e-6, 1.0, 196, 1),
}
DEFAULT = "default"
# name -> flags; "LOW" is replaced by the factor that recasts "a tenth of the old pick"
CANDIDATES = {
    DEFAULT: ["--weight-decay", "0", "--dropout", "0.05", "--label-smoothing", "0"],
    "wd1e-3_low": ["--weight-decay", "1e-3", "--dropout", "0", "--label-smoothing", "0", "--lr-max-factor", "LOW"],
    "wd1e-4_ls01": ["--weight-decay", "1e-4", "--dropout", "0", "--label-smoothing", "0.1"],
    "wd1e-4_ls01_nobn": ["--weight-decay", "1e-4", "--dropout", "0", "--label-smoothing", "0.1",
                         "--no-decay-norm-and-bias"],
}
VAL_SPLIT = 5000
SMOKE = {"seeds": range(1, 3), "sweep": ["--subset", "256", "--batch-size", "32"], "sweep_steps": 30,
         "train": ["--subset", "256", "--eval-subset", "256", "--batch-size", "64", "--epochs", "1",
                   "--finder-steps", "12", "--no-tta"]}


def python(*args, log):
    """Run `python args...` from the repository's root, its output in `log`; the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        started = time.time()
        code = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    print(f"{time.strftime('%H:%M:%S')} {log.relative_to(log.parents[2])}: exit {code}, {time.time() - started:.0f} s",
          flush=True)
    return code


def run_sweeps(runs, data_dir, parallel, smoke):
    seeds = SMOKE["seeds"] if smoke else SEEDS

    def sweep(name):
        start, end, steps, repeats = SWEEPS[name]
        steps = SMOKE["sweep_steps"] if smoke else steps
        return python("experiments/lr_sweeps.py", "--data-dir", data_dir, "--seeds", f"{seeds[0]}-{seeds[-1]}",
                      "--out", runs / "sweeps" / name, "--start-lr", start, "--end-lr", end, "--steps", steps,
                      "--repeats", repeats, *(SMOKE["sweep"] if smoke else []),
                      "--data-label", "stand-in data (the public JPEG copy of CIFAR-10)",
                      log=runs / "sweeps" / f"{name}.log")

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(sweep, SWEEPS))


def choose_finder(runs):
    """finder_rules.py's choice over every sweep; {"sweep", "rule", "passes", "flags", "low"}."""
    out = runs / "finder.json"
    python("experiments/finder_rules.py", *[runs / "sweeps" / name for name in SWEEPS], "--json", out,
           log=runs / "finder.log")
    measured = json.loads(out.read_text())
    decision = measured["decision"]
    start, end, steps, repeats = SWEEPS[decision["sweep"]]
    old = measured["results"][decision["sweep"]]["ema-min"]["lr_max_median"]
    new = measured["results"][decision["sweep"]][decision["rule"]]["lr_max_median"]
    decision.update(flags=["--finder-start-lr", f"{start:g}", "--finder-end-lr", f"{end:g}", "--finder-steps",
                           str(steps), "--finder-repeats", str(repeats), "--finder-rule", decision["rule"]],
                    low=round(min(1.0, 0.1 * old / new), 4))
    measured["decision"] = decision
    out.write_text(json.dumps(measured, indent=1) + "\n")
    return decision


def train(run_dir, flags, data_dir, smoke):
    """train.py in run_dir: started, resumed, or (finished) left alone."""
    record = read_record(run_dir)
    if record and record.complete:
        return 0
    if (run_dir / CHECKPOINT).exists():
        return python("train.py", "--resume", run_dir, log=run_dir.with_suffix(".log"))
    return python("train.py", "--data-dir", data_dir, "--out", run_dir, *flags, *(SMOKE["train"] if smoke else []),
                  log=run_dir.with_suffix(".log"))


def final_accuracy(run_dir):
    record = read_record(run_dir)
    return record.epochs[-1]["eval"]["acc"] if record and record.complete else None


def run_split(runs, finder, data_dir, parallel, smoke):
    seeds = SMOKE["seeds"] if smoke else range(1, 4)
    jobs = [(name, seed) for seed in seeds for name in CANDIDATES]

    def job(name_seed):
        name, seed = name_seed
        flags = [f if f != "LOW" else str(finder["low"]) for f in CANDIDATES[name]]
        return train(runs / "split" / name / f"seed{seed}", ["--val-split", str(VAL_SPLIT), "--seed", str(seed),
                                                              *finder["flags"], *flags], data_dir, smoke)

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(job, jobs))
    results = {name: [a for a in (final_accuracy(runs / "split" / name / f"seed{s}") for s in seeds) if a is not None]
               for name in CANDIDATES}
    decision = {"results": results, **choose_setting(results, DEFAULT)}
    (runs / "decision.json").write_text(json.dumps(decision, indent=1) + "\n")
    return decision


def run_test(runs, finder, chosen, data_dir, parallel, smoke):
    seeds = SMOKE["seeds"] if smoke else range(1, 6)
    flags = [f if f != "LOW" else str(finder["low"]) for f in CANDIDATES[chosen]]
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda seed: train(runs / "test" / f"seed{seed}", ["--seed", str(seed), *finder["flags"], *flags],
                                         data_dir, smoke), seeds))
    python("seeds.py", (runs / "test").relative_to(ROOT) if runs.is_relative_to(ROOT) else runs / "test",
           log=runs / "test" / "summary.log")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--runs", type=Path, required=True, help="where the sweeps and run folders go")
    parser.add_argument("--parallel", type=int, default=6, help="processes at once on the GPU")
    parser.add_argument("--smoke", action="store_true", help="tiny sweeps and runs, to try the script itself")
    parser.add_argument("--until", choices=("sweeps", "finder", "split", "test"), default="test")
    args = parser.parse_args(argv)
    runs = args.runs.resolve()
    if args.smoke:
        os.environ["S10_SMOKE"] = "1"
    run_sweeps(runs, args.data_dir, args.parallel, args.smoke)
    if args.until == "sweeps":
        return 0
    finder = choose_finder(runs)
    print(json.dumps(finder), flush=True)
    if args.until == "finder":
        return 0
    decision = run_split(runs, finder, args.data_dir, args.parallel, args.smoke)
    print(json.dumps(decision), flush=True)
    if args.until == "split":
        return 0
    run_test(runs, finder, decision["chosen"], args.data_dir, args.parallel, args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
