"""The regularisation experiment on one GPU: choose the regularisation on the validation split, then
train the choice over 3 seeds on the full training set and evaluate on the test set.

    python experiments/regularisation.py --runs RUNS [--parallel 6] [--budget 560]

1. The grid. Every setting in GRID, on a validation split (--val-split 5000: the last 5,000
   training images, never the test set), with the LR finder and 24 epochs each, several runs at
   once on the one GPU. Seeds 1 and 2 of a setting are queued together, settings in GRID's
   order, then a third seed of each while time allows; a run is started only if it should end
   in time to leave the test runs their share of the budget.
2. The rule, fixed before any result (docs/experiments.md says the same): see `choose`.
3. The test runs: the chosen setting on the full training set, test set, seeds 1-3. Seed 1 is
   the notebook itself, executed top to bottom by papermill with the chosen setting as its
   `settings` parameter (its stored outputs are that run); seeds 2 and 3 are `train.py` with
   the same setting as flags. Then check_precision.py and check_fit.py on seed 1 and the seeds'
   summary. The script prints the command that makes seed 1 the repository's record
   (python -m s10.publish): that step is taken on purpose, after reading the results.

Everything lands under RUNS (one folder per setting, one per seed); the decision in
RUNS/decision.json. Timings are the machine's own; nothing here is specific to the H200.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s10.record import read_record  # noqa: E402
from s10.seeds import choose_setting  # noqa: E402
from s10.seeds import format_summary, run_folders, write_summary  # noqa: E402

DEFAULT = "wd0_do05_ls0"
# name -> (weight_decay, dropout, label_smoothing); the current default first, then the
# settings the evidence points to, most likely first
GRID = {
    DEFAULT: (0.0, 0.05, 0.0),
    "wd5e-4_do0_ls0": (5e-4, 0.0, 0.0),
    "wd1e-4_do0_ls0": (1e-4, 0.0, 0.0),
    "wd5e-4_do05_ls0": (5e-4, 0.05, 0.0),
    "wd5e-4_do0_ls01": (5e-4, 0.0, 0.1),
    "wd1e-3_do0_ls0": (1e-3, 0.0, 0.0),
    "wd1e-4_do05_ls0": (1e-4, 0.05, 0.0),
    "wd1e-4_do0_ls01": (1e-4, 0.0, 0.1),
    "wd5e-4_do05_ls01": (5e-4, 0.05, 0.1),
    "wd1e-4_do05_ls01": (1e-4, 0.05, 0.1),
}
VAL_SPLIT = 5000
# --follow-up: runs after the decision, which they cannot change (docs/experiments.md): the
# grid's missing cell, third seeds of the four best settings, and the lead that weight decay
# needs a lower LR_max than the finder's lowest-loss LR (--lr-max-factor)
FOLLOW_UP = [("wd1e-4_do05_ls01", 1, []), ("wd1e-4_do05_ls01", 2, []), (DEFAULT, 3, []),
             ("wd1e-4_do0_ls01", 3, []),
             ("wd5e-4_do0_ls0", 1, ["--lr-max-factor", "0.3"]), ("wd5e-4_do0_ls0", 2, ["--lr-max-factor", "0.3"]),
             ("wd1e-4_do0_ls0", 3, []), ("wd1e-4_do05_ls0", 3, []),
             ("wd1e-3_do0_ls0", 1, ["--lr-max-factor", "0.1"]), ("wd1e-3_do0_ls0", 2, ["--lr-max-factor", "0.1"]),
             ("wd5e-4_do0_ls01", 1, ["--lr-max-factor", "0.3"]), ("wd5e-4_do0_ls01", 2, ["--lr-max-factor", "0.3"])]
# --smoke: every step of the experiment as the small run (train.py --smoke; the notebook in its
# smoke mode), to try the script on a CPU
SMOKE_FLAGS = ["--smoke"]
EXTRA_FLAGS = []


def settings(setting):
    """The Config fields a GRID setting sets."""
    return dict(zip(("weight_decay", "dropout", "label_smoothing"), GRID[setting]))


def flags(setting):
    return [*(token for name, value in settings(setting).items()
              for token in (f"--{name.replace('_', '-')}", f"{value:g}")), *EXTRA_FLAGS]


def notebook_command(setting, run_dir, smoke=False):
    """papermill running S10.ipynb with `setting` as its parameters (the Config fields in
    `settings`, the run folder, the smoke mode); the executed copy goes to the run folder, never
    over the repository's S10.ipynb."""
    parameters = json.dumps({"settings": settings(setting), "run_dir": str(run_dir), "smoke": smoke})
    return [sys.executable, "-m", "papermill", "S10.ipynb", str(ROOT / run_dir / "S10.ipynb"), "--cwd", str(ROOT),
            "-y", parameters]


def choose(results):
    """The rule, fixed before any result: s10.seeds.choose_setting with this grid's default."""
    return choose_setting(results, DEFAULT)


class Pool:
    """Up to `size` commands at once, each with its own log file."""

    def __init__(self, size):
        self.size, self.running, self.done = size, [], []

    def start(self, name, command, log, env=None):
        log.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
        self.running.append((name, process, time.time()))
        print(f"{time.strftime('%H:%M:%S')} start {name}", flush=True)

    def reap(self):
        for item in list(self.running):
            name, process, started = item
            if process.poll() is not None:
                self.running.remove(item)
                self.done.append((name, process.returncode, time.time() - started))
                print(f"{time.strftime('%H:%M:%S')} end {name}: exit {process.returncode}, "
                      f"{time.time() - started:.0f} s", flush=True)

    def wait_for_room(self):
        while len(self.running) >= self.size:
            time.sleep(1)
            self.reap()

    def wait_all(self, deadline=None):
        while self.running:
            if deadline is not None and time.time() > deadline:
                for name, process, _ in self.running:
                    print(f"stopping {name}: past the deadline", flush=True)
                    process.terminate()
                deadline = None
            time.sleep(1)
            self.reap()


def final_accuracy(run_dir):
    record = read_record(run_dir)
    return record.epochs[-1]["eval"]["acc"] if record and record.complete else None


def start_split_run(pool, runs, setting, seed, data_dir, extra=(), name=None):
    """train.py on the validation split with `setting`'s flags (and `extra`), in runs/name/seed<k>."""
    name = name or setting
    out = runs / name / f"seed{seed}"
    pool.start(f"{name}/seed{seed}",
               [sys.executable, "train.py", "--data-dir", data_dir, "--val-split", str(VAL_SPLIT),
                "--seed", str(seed), "--out", str(out), *flags(setting), *extra], out.with_suffix(".log"))


def run_grid(runs, pool, budget_end, data_dir):
    """The grid's runs, as many as the budget allows; {setting: [final accuracy of each seed]}."""
    queue = [(setting, seed) for setting in GRID for seed in (1, 2)] + [(setting, 3) for setting in GRID]
    for setting, seed in queue:
        pool.wait_for_room()
        durations = [seconds for _, _, seconds in pool.done]
        if durations:  # a run must end in time to leave the test runs (one run's time + a margin)
            expected = max(durations)
            if time.time() + expected > budget_end - (1.3 * expected + 40):
                print(f"grid: no time for {setting} seed {seed} and later (a run takes ~{expected:.0f} s)")
                break
        start_split_run(pool, runs, setting, seed, data_dir)
    pool.wait_all()
    return {setting: [a for a in (final_accuracy(d) for d in sorted((runs / setting).glob("seed*/")))
                      if a is not None] for setting in GRID}


def run_follow_up(runs, pool, budget_end, data_dir):
    """FOLLOW_UP's runs, in order, each started only if it should end within the budget."""
    for setting, seed, extra in FOLLOW_UP:
        pool.wait_for_room()
        durations = [seconds for _, _, seconds in pool.done]
        if durations and time.time() + max(durations) > budget_end:
            print(f"follow-up: no time for {setting} seed {seed} and later")
            break
        name = setting + "".join(f"_f{v}" for v in extra[1::2])  # e.g. wd5e-4_do0_ls0_f0.3
        start_split_run(pool, runs, setting, seed, data_dir, extra, name)
    pool.wait_all(budget_end + 30)


def run_tests(runs, pool, setting, data_dir, deadline, smoke=False):
    """Seeds 1-3 of `setting` on the test set: seed 1 by executing the notebook."""
    test = runs / "test"
    (test / "seed1").mkdir(parents=True, exist_ok=True)  # papermill writes its copy there from the start
    pool.start("test/seed1 (notebook)", notebook_command(setting, test.relative_to(ROOT) / "seed1", smoke),
               test / "seed1.log", env={"S10_DATA": data_dir})
    for seed in (2, 3):
        out = test / f"seed{seed}"
        pool.start(f"test/seed{seed}", [sys.executable, "train.py", "--data-dir", data_dir, "--seed", str(seed),
                                        "--out", str(out), *flags(setting)], out.with_suffix(".log"))
    pool.wait_all(deadline)
    return test


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="where the run folders go (inside the repo)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--parallel", type=int, default=6, help="runs at once on the GPU")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the grid and the tests")
    parser.add_argument("--smoke", action="store_true", help="tiny runs, to try the script itself")
    parser.add_argument("--follow-up", action="store_true", help="FOLLOW_UP's runs only")
    args = parser.parse_args(argv)
    if args.smoke:
        EXTRA_FLAGS.extend(SMOKE_FLAGS)
    started = time.time()
    runs = args.runs.resolve()
    if args.follow_up:
        run_follow_up(runs, Pool(args.parallel), started + args.budget, args.data_dir)
        return 0
    results = run_grid(runs, Pool(args.parallel), started + args.budget, args.data_dir)
    decision = {"results": results, **choose(results)}
    (runs / "decision.json").write_text(json.dumps(decision, indent=1) + "\n")
    print(json.dumps(decision, indent=1), flush=True)
    test = run_tests(runs, Pool(3), decision["chosen"], args.data_dir, started + args.budget, args.smoke)
    for tool in ("check_precision.py", "check_fit.py"):
        subprocess.run([sys.executable, tool, str(test / "seed1"), "--data-dir", args.data_dir], cwd=ROOT,
                       stdout=(test / f"{Path(tool).stem}.txt").open("w"), stderr=subprocess.STDOUT)
    relative = test.relative_to(ROOT)  # the log names no folder of the machine
    print(f"{relative}:\n{format_summary(write_summary(relative, run_folders(relative)))}")
    print(f"to make seed 1 the repository's record: python -m s10.publish {relative / 'seed1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
