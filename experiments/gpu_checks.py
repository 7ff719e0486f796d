"""Every check that needs a CUDA GPU, in one command, within a time limit (docs/gpu_checks.md).

    python experiments/gpu_checks.py --data-dir DATA --out DIR --time-limit SECONDS
        [--parallel 6] [--airbench PATH] [--before-rev 4781151] [--skip PHASE,...] [--smoke]

Phases, in this order, each writing its records under DIR as it goes:

1. bench:    bench.py in auto precision and in fp16 (DIR/bench/*.txt), and the bench.py of
             --before-rev, the loop before its rare read-backs, for the before/after ratio
2. alone:    one default train.py run, alone on the GPU (DIR/alone/)
3. fp16:     the notebook through papermill in fp16, killed with SIGKILL once its record holds 3
             epochs and run again to continue (DIR/fp16/notebook/), beside the same notebook run
             through uninterrupted (DIR/fp16/straight/); both records compared epoch by epoch
             (DIR/fp16/compare.txt)
4. sweeps:   the LR-finder sweeps experiments/finder_plan.py still lacks (DIR/sweeps/), then
             finder_rules.py's choice (DIR/finder.json)
5. split:    the candidates of docs/lr_finder.md on the validation split with the finder as
             decided (DIR/split/), and the choice by s10.seeds.choose_setting (DIR/decision.json)
6. test:     5 seeds of the chosen setting on the test set, seed 1 the notebook executed by
             papermill (DIR/test/seed1/S10.ipynb), and their summary (DIR/test/summary.json)
7. airbench: the public airbench94.py (--airbench, kept outside the repository) on the same data
8. compiled: bench.py --compile in both precisions (DIR/bench/*_compiled.txt): last, as its time
             is the least known and no target needs it

A phase starts only if its estimated time fits what is left; every command runs in its own
process group and is killed at the limit. The same command again continues: finished runs are
kept, stopped ones resume. DIR/summary.json and the printed table say which phases finished,
their figures and the issue's targets. --smoke runs every phase on a few images on this machine
(the CPU where there is no GPU), to try the script itself.
"""
import argparse
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # in requirements.txt: ends a notebook kernel's whole process tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments import finder_plan  # noqa: E402
from s10.publish import EXECUTED  # noqa: E402
from s10.record import CHECKPOINT, load_checkpoint, read_record  # noqa: E402
from s10.seeds import SUMMARY, choose_setting  # noqa: E402

# compiled last: its time on the GPU is not measured and may be the largest, and no target needs it
PHASES = ("bench", "alone", "fp16", "sweeps", "split", "test", "airbench", "compiled")
BEFORE_REV = "4781151"  # the last commit whose loop read the loss back every step (docs/speed.md)
BENCHES = {"auto": ["--precision", "auto"], "fp16": ["--precision", "fp16"]}
COMPILED = {f"{name}_compiled": [*argv, "--compile"] for name, argv in BENCHES.items()}

# The split of docs/lr_finder.md, written before its runs: name -> the Config fields it sets. LOW
# stands for the factor that recasts "a tenth of the old pick" with the chosen finder.
LOW = "low"
DEFAULT = "default"
CANDIDATES = {
    DEFAULT: {"weight_decay": 0.0, "dropout": 0.05, "label_smoothing": 0.0},
    "wd1e-3_low": {"weight_decay": 1e-3, "dropout": 0.0, "label_smoothing": 0.0, "lr_max_factor": LOW},
    "wd1e-4_ls01": {"weight_decay": 1e-4, "dropout": 0.0, "label_smoothing": 0.1},
    "wd1e-4_ls01_nobn": {"weight_decay": 1e-4, "dropout": 0.0, "label_smoothing": 0.1,
                         "decay_norm_and_bias": False},
}
VAL_SPLIT = 5000
FINDER_IN_USE = {"name": "in use", "settings": {}, "low": 0.1}  # the Config's finder flags as they are

# Seconds each piece of work is expected to take on an H200, from the committed records:
# - run: one 24-epoch train.py run with up to 6 at once took 85 to 109 s from start to end
#   (assets/runs/gpu/call1_experiment.log, call2_follow_up.log: the regularisation grid);
# - alone, notebook: with 3 at once the test runs took 64 to 69 s, the notebook through papermill
#   69 s (call1_experiment.log); one run alone is no slower;
# - sweep_round: one lr_sweeps.py process sweeping 5 seeds: each seed is at most 196 batches, two
#   epochs' worth, and an epoch took 0.8 to 2.0 s in the test runs' records
#   (assets/runs/gpu/test/seed*/metrics.json), plus a process's start-up (the 20 s between a
#   run's wall time and its record's seconds there); not measured as such;
# - bench: one bench.py run: not measured; its measurements are 50 batches each at 18,000 img/s
#   or more (assets/runs/gpu/bench_h200.txt), so the allowance is for CUDA's start-up and cuDNN's
#   search; compiled: the same with --compile, plus torch.compile's two compilations (not measured);
# - airbench: airbench94.py trains 25 runs of 3.83 s each on an A100 (its own header), plus loading.
GPU_COST = {"bench": 45, "compiled": 240, "run": 110, "alone": 70, "notebook": 70, "sweep_round": 60, "finder": 15,
            "airbench": 150}
# The same in --smoke, as its two calls took on a 2-core CPU busy with a training run at a higher
# priority (docs/gpu_checks.md): a bench 39 to 77 s, a compiled bench (nothing compiled on a CPU)
# about 72 s, the alone run 68 s, the fp16 phase 482 s for its two notebooks (fp16 is emulated
# there), the 3 sweeps 2 at a time 301 s, a split run (2 at a time) 126 to 168 s, the test phase 160 s.
SMOKE_COST = {"bench": 55, "compiled": 75, "run": 150, "alone": 70, "notebook": 240, "sweep_round": 150,
              "finder": 30, "airbench": 15}
END_MARGIN_S = 15  # kept free at the end, to stop the children and write the summary
POLL_S = 0.5


@dataclass(frozen=True)
class Mode:
    """What the checks run: the real ones, or the smoke run's few images."""
    name: str            # "gpu" or "smoke"; the sweeps' folders carry it as their prefix
    split_seeds: tuple   # the validation split's seeds; seeds 1 and 2 of every candidate come first
    test_seeds: tuple
    kill_after: int      # epochs in the notebook's record when it is killed
    train: dict          # Config fields every run gets on top of train.py --smoke (smoke only)
    bench: list          # bench.py's size flags
    sweep: list          # lr_sweeps.py's size flags
    sweep_seeds: int | None  # seeds per variant (None: every seed finder_plan.pending lists)
    sweep_rounds: int    # FIRST_SEEDS, then LAST_SEEDS of the variants still in
    cost: dict

    @property
    def smoke(self):
        return self.name == "smoke"


GPU = Mode("gpu", (1, 2, 3), (1, 2, 3, 4, 5), 3, {}, [], [], None, 2, GPU_COST)
# the smoke run: every phase on 8 images (fp16 is slow on a CPU without fp16 instructions: 0.4 img/s
# in bench.py's bare step on the 2-core CPU of docs/gpu_checks.md), 2 seeds (choose_setting needs
# 2), one sweep seed per variant
SMOKE = Mode("smoke", (1, 2), (1, 2), 1,
             {"subset": 8, "eval_subset": 8, "batch_size": 4, "epochs": 2, "finder_steps": 4},
             ["--batches", "1", "--batch-size", "2"], ["--subset", "8", "--batch-size", "1"], 1, 1,
             SMOKE_COST)


class Skip(Exception):
    """A phase not started: the message says why."""


class Stopped(Exception):
    """A phase that did not finish: the message is its status."""


@dataclass
class Job:
    name: str
    argv: list
    log: Path
    cwd: Path = ROOT
    append: bool = True  # a resumed run's log goes on; a bench's output is written afresh


@dataclass
class Checks:
    """One call of the checks: where, what, and until when."""
    out: Path
    data_dir: str
    mode: Mode
    parallel: int
    deadline: float          # time.monotonic() by which every child is gone
    airbench: Path | None = None
    before_rev: str | None = BEFORE_REV
    skip: tuple = ()
    running: dict = field(default_factory=dict)  # pid -> Popen of every child still running

    def left(self):
        return self.deadline - time.monotonic()


# --- the children: each in its own process group, all killed at the deadline --------------------

def kill_tree(pid):
    """SIGKILL a process, its descendants and their process groups: a Jupyter kernel runs in a
    session of its own, so killing papermill's group alone would leave it training."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with suppress(OSError, psutil.Error):
            group = os.getpgid(process.pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        with suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=10)


def start(checks, job):
    """Start `job` in a session of its own, its output in its log."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with job.log.open("a" if job.append else "w") as log:
        process = subprocess.Popen(job.argv, cwd=job.cwd, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    checks.running[process.pid] = process
    say(f"start {job.name}")
    return process


def stop(checks, process):
    kill_tree(process.pid)
    process.wait()
    checks.running.pop(process.pid, None)


def stop_all(checks):
    for process in list(checks.running.values()):
        stop(checks, process)


def run_jobs(checks, jobs, parallel=1):
    """Run `jobs`, `parallel` at a time, until done or the deadline: {name: exit code}, None for a
    job stopped at the deadline or never started."""
    queue, running, codes = list(jobs), {}, {}
    while queue or running:
        while queue and len(running) < parallel and checks.left() > 0:
            job = queue.pop(0)
            running[job.name] = (job, start(checks, job), time.monotonic())
        time.sleep(POLL_S)
        for name, (job, process, started) in list(running.items()):
            if process.poll() is not None:
                checks.running.pop(process.pid, None)
                codes[name] = process.returncode
                del running[name]
                say(f"end {name}: exit {process.returncode}, {time.monotonic() - started:.0f} s")
        if checks.left() <= 0:
            for name, (job, process, _) in running.items():
                stop(checks, process)
                say(f"stopped {name}: the time limit")
            codes.update({name: None for name in [*running, *(job.name for job in queue)]})
            break
    return codes


def check_codes(checks, jobs, codes):
    """Raise Stopped naming the first failed job (and its log), or the time limit."""
    failed = [(job, codes[job.name]) for job in jobs if codes.get(job.name)]
    if failed:
        job, code = failed[0]
        more = f"; {len(failed) - 1} more failed" if len(failed) > 1 else ""
        raise Stopped(f"failed (exit {code}, log {relative(checks, job.log)}{more})")
    if any(codes.get(job.name, None) is None for job in jobs):
        raise Stopped("stopped: the time limit (the same command continues)")


def relative(checks, path):
    with suppress(ValueError):
        return str(Path(path).relative_to(checks.out))
    return str(path)


def say(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


# --- commands ------------------------------------------------------------------------------------

def flags(settings):
    """Config fields as train.py's flags: {"weight_decay": 1e-4, "tta": False} -> --weight-decay 0.0001 --no-tta."""
    argv = []
    for name, value in settings.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            argv += [f"--{flag}", f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


def complete(run_dir):
    record = read_record(run_dir)
    return bool(record and record.complete)


def train_job(checks, name, run_dir, settings):
    """train.py in run_dir: a new run, the stopped one resumed, or None where it is finished."""
    if complete(run_dir):
        return None
    log = run_dir.with_suffix(".log")
    if (run_dir / CHECKPOINT).exists():
        return Job(name, [sys.executable, "train.py", "--resume", str(run_dir)], log)
    smoke = ["--smoke", *flags(checks.mode.train)] if checks.mode.smoke else []
    return Job(name, [sys.executable, "train.py", "--data-dir", checks.data_dir, "--out", str(run_dir),
                      *flags(settings), *smoke], log)


def notebook_job(checks, name, run_dir, settings, output, log):
    """S10.ipynb through papermill with `settings` as its parameters; it continues the run in
    run_dir if one is there. The executed copy goes to `output`, never over S10.ipynb."""
    parameters = {"settings": {**settings, **checks.mode.train, "data_dir": checks.data_dir},
                  "run_dir": str(run_dir), "smoke": checks.mode.smoke}
    output.parent.mkdir(parents=True, exist_ok=True)
    return Job(name, [sys.executable, "-m", "papermill", str(ROOT / "S10.ipynb"), str(output), "--cwd", str(ROOT),
                      "--log-output", "--no-progress-bar", "-y", json.dumps(parameters)], log)


def pin(path, value):
    """Write `value` to path, or check that the one written by an earlier call is the same: a
    folder's runs never mix settings."""
    if path.exists():
        pinned = json.loads(path.read_text())
        if pinned != value:
            raise Stopped(f"failed ({path} holds {pinned}, not {value}: an earlier call ran other "
                          "settings here; use another --out)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1) + "\n")


def read_json(path):
    return json.loads(path.read_text()) if path.exists() else None


def waves(count, parallel):
    return math.ceil(count / max(1, parallel))


def final_acc(run_dir):
    record = read_record(run_dir)
    return record.epochs[-1]["eval"]["acc"] if record and record.complete else None


def run_figures(run_dir):
    """A run record's key figures: where and how it ran, its time, its final accuracy."""
    record = read_record(run_dir)
    if record is None:
        return {}
    return {"device": record.device, "precision": record.precision, "epochs": len(record.epochs),
            "complete": record.complete, "seconds": round(record.seconds, 1),
            "epochs_seconds": round(sum(e["seconds"] for e in record.epochs), 1),
            "final_acc": record.epochs[-1]["eval"]["acc"] if record.epochs else None}


# --- 1. bench ------------------------------------------------------------------------------------

BENCH_FIGURES = {  # bench.py's lines, as it prints them
    "device": r"^device: ([^;]+);", "precision": r"precision (\w+)$",
    "bare_img_s": r"bare step, channels_last:\s+([\d.]+) img/s", "loop_ratio": r"full loop / bare step: ([\d.]+)",
    "compiled_speedup": r"\(compiled / eager: ([\d.]+)\)",
    "compiled_loop_ratio": r"full loop, compiled: .* = ([\d.]+) of the compiled bare step",
}


def bench_figures(text):
    """The figures of one bench.py output; "compiled" says why none were measured."""
    figures = {}
    for key, pattern in BENCH_FIGURES.items():
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            figures[key] = match.group(1) if key in ("device", "precision") else float(match.group(1))
    if "torch.compile: not measured" in text:
        figures["compiled"] = "not measured: bench.py compiles on CUDA only"
    return figures


def bench_done(path):
    return path.exists() and "full loop / bare step:" in path.read_text()


def before_path(checks):
    return checks.out / "bench" / f"before_{checks.before_rev}.txt"


def bench_jobs(checks, benches):
    folder = checks.out / "bench"
    return [Job(f"bench/{name}", [sys.executable, "bench.py", *argv, *checks.mode.bench], folder / f"{name}.txt",
                append=False)
            for name, argv in benches.items() if not bench_done(folder / f"{name}.txt")]


def plan_bench(checks):
    before = checks.before_rev is not None and not bench_done(before_path(checks))
    return (len(bench_jobs(checks, BENCHES)) + before) * checks.mode.cost["bench"]


def run_bench(checks):
    jobs = bench_jobs(checks, BENCHES)
    check_codes(checks, jobs, run_jobs(checks, jobs))  # one at a time: each alone on the GPU
    if checks.before_rev is not None and not bench_done(before_path(checks)):
        run_before_bench(checks)


def plan_compiled(checks):
    return len(bench_jobs(checks, COMPILED)) * checks.mode.cost["compiled"]


def run_compiled(checks):
    jobs = bench_jobs(checks, COMPILED)
    check_codes(checks, jobs, run_jobs(checks, jobs))


def export(rev, tree):
    """The files of commit `rev` in `tree`; the checkout and its .git are left as they are."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True)
    if archive.returncode:
        raise Stopped(f"failed (git archive {rev}: {archive.stderr.decode().strip()})")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as files:
        files.extractall(tree, filter="data")


def run_before_bench(checks):
    """bench.py as it was at --before-rev (auto precision: it had no other), in a temporary folder."""
    tree = Path(tempfile.mkdtemp(prefix="s10-before-"))
    try:
        export(checks.before_rev, tree)
        job = Job(f"bench/before_{checks.before_rev}", [sys.executable, "bench.py", *checks.mode.bench],
                  before_path(checks), cwd=tree, append=False)
        check_codes(checks, [job], run_jobs(checks, [job]))
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def bench_outputs(paths):
    return {name: bench_figures(path.read_text()) for name, path in paths.items() if path.exists()}


def figures_bench(checks):
    paths = {name: checks.out / "bench" / f"{name}.txt" for name in BENCHES}
    if checks.before_rev is not None:
        paths[f"before_{checks.before_rev}"] = before_path(checks)
    return bench_outputs(paths)


def figures_compiled(checks):
    return bench_outputs({name: checks.out / "bench" / f"{name}.txt" for name in COMPILED})


# --- 2. one default run alone --------------------------------------------------------------------

def plan_alone(checks):
    return 0 if complete(checks.out / "alone") else checks.mode.cost["alone"]


def run_alone(checks):
    jobs = [job for job in [train_job(checks, "alone", checks.out / "alone", {})] if job]
    check_codes(checks, jobs, run_jobs(checks, jobs))


def figures_alone(checks):
    return run_figures(checks.out / "alone")


# --- 3. fp16 end to end: the notebook killed and continued, the notebook run through beside it ----

FP16 = {"precision": "fp16", "seed": 1}


def plan_fp16(checks):
    folder = checks.out / "fp16"
    if complete(folder / "notebook") and complete(folder / "straight"):
        return 0
    notebooks = 1 if (folder / "killed.json").exists() else 2  # killed, then continued; the straight one beside them
    return notebooks * checks.mode.cost["notebook"]


def straight_job(checks, folder):
    """The notebook run through without a stop, or None where it is finished. Not train.py: the
    notebook's model-summary cell draws random numbers between the seeding and the model the run
    trains, so train.py of the same seed starts from other weights."""
    run_dir = folder / "straight"
    if complete(run_dir):
        return None
    return notebook_job(checks, "fp16/straight", run_dir, FP16, run_dir / EXECUTED, folder / "straight.log")


def run_fp16(checks):
    folder = checks.out / "fp16"
    straight = straight_job(checks, folder)
    beside = start(checks, straight) if straight else None
    try:
        run_notebook_killed_and_continued(checks, folder)
    finally:
        code = wait_for(checks, straight, beside) if beside else 0
    check_codes(checks, [straight] if straight else [], {straight.name: code} if straight else {})
    text, _ = compare_fp16(folder)
    (folder / "compare.txt").write_text(text)
    print(text, flush=True)


def run_notebook_killed_and_continued(checks, folder):
    run_dir, killed = folder / "notebook", folder / "killed.json"
    if complete(run_dir):
        return
    if not killed.exists():
        job = notebook_job(checks, "fp16/notebook (to be killed)", run_dir, FP16, run_dir / "S10_killed.ipynb",
                           folder / "notebook_killed.log")
        held = kill_after_epochs(checks, job, run_dir, checks.mode.kill_after)
        killed.write_text(json.dumps({"after_epoch": held}) + "\n")
    job = notebook_job(checks, "fp16/notebook (continued)", run_dir, FP16, run_dir / EXECUTED,
                       folder / "notebook_continued.log")
    check_codes(checks, [job], run_jobs(checks, [job]))


def kill_after_epochs(checks, job, run_dir, epochs):
    """Run `job` and SIGKILL it, kernel included, once run_dir's record holds `epochs` epochs;
    returns the epochs it held."""
    process = start(checks, job)
    while process.poll() is None and checks.left() > 0:
        record = read_record(run_dir)
        if record and len(record.epochs) >= epochs:
            stop(checks, process)
            say(f"killed {job.name} (SIGKILL) after epoch {len(record.epochs)}")
            return len(record.epochs)
        time.sleep(POLL_S)
    if process.poll() is None:
        stop(checks, process)
        raise Stopped("stopped: the time limit (the same command continues)")
    checks.running.pop(process.pid, None)
    raise Stopped(f"failed (the notebook ended, exit {process.returncode}, before its record held {epochs} "
                  f"epochs; log {relative(checks, job.log)})")


def wait_for(checks, job, process):
    """The exit code of a started job, or None if the deadline stopped it."""
    while process.poll() is None:
        if checks.left() <= 0:
            stop(checks, process)
            say(f"stopped {job.name}: the time limit")
            return None
        time.sleep(POLL_S)
    checks.running.pop(process.pid, None)
    say(f"end {job.name}: exit {process.returncode}")
    return process.returncode


def scaler_state(run_dir):
    scaler = load_checkpoint(run_dir / CHECKPOINT)["scaler"]  # None where no grad scaler ran
    return scaler and {key: scaler[key] for key in ("scale", "_growth_tracker")}


def compare_fp16(folder):
    """The notebook's record (killed, continued) beside the straight one's, epoch by epoch: the
    text, and the figures (None while either run is unfinished)."""
    runs = {name: read_record(folder / name) for name in ("notebook", "straight")}
    if not all(record and record.complete for record in runs.values()):
        return "not compared: a run is unfinished\n", None
    lines = [f"{name}: {r.device}, {r.precision}, resumed after epoch "
             f"{[x['after_epoch'] for x in r.resumed] or 'none'}, grad scaler {scaler_state(folder / name)}"
             for name, r in runs.items()]
    first = {name: r.lr_finder and r.lr_finder["raw_losses"][0] for name, r in runs.items()}
    lines.append(start_line(first))
    lines.append("epoch | notebook (killed, continued) | notebook (straight) | accuracy difference")
    acc, loss = [], []
    for a, b in zip(runs["notebook"].epochs, runs["straight"].epochs):
        acc.append(a["eval"]["acc"] - b["eval"]["acc"])
        loss.append(a["train_loss"] - b["train_loss"])
        lines.append(f"{a['epoch']:5d} | {a['eval']['acc']:7.2f}% train loss {a['train_loss']:.6f} | "
                     f"{b['eval']['acc']:7.2f}% train loss {b['train_loss']:.6f} | {acc[-1]:+.2f}")
    figures = {"epochs_compared": len(acc), "identical_epochs": sum(a == 0 and b == 0 for a, b in zip(acc, loss)),
               "max_acc_difference": round(max(map(abs, acc)), 3),
               "max_train_loss_difference": float(f"{max(map(abs, loss)):.3g}"),
               "resumed_after_epoch": [x["after_epoch"] for x in runs["notebook"].resumed],
               "first_sweep_loss": first,
               "precision": sorted({r.precision for r in runs.values()}),
               "device": runs["straight"].device}
    lines.append(f"identical epochs (accuracy and training loss): {figures['identical_epochs']} of {len(acc)}")
    return "\n".join(lines) + "\n", figures


def start_line(first):
    """Whether the two runs start alike: the LR sweep's first loss comes before any training step,
    so it differs only if the initial weights or the first batch do."""
    if None in first.values():
        return "the LR sweep's first loss: not recorded (no sweep ran)"
    same = "equal" if first["notebook"] == first["straight"] else (
        "different: the runs start from different weights or batches, so their epochs differ "
        "whatever the resume does")
    return f"the LR sweep's first loss: killed {first['notebook']:.6f}, straight {first['straight']:.6f} ({same})"


def figures_fp16(checks):
    folder = checks.out / "fp16"
    _, figures = compare_fp16(folder)
    if figures is None:
        return {name: run_figures(folder / name) for name in ("notebook", "straight")}
    if figures["device"].startswith("cpu") and figures["precision"] == ["float16"]:
        figures["note"] = "fp16 ran on the CPU: torch's CPU autocast and grad scaler take float16 here"
    return figures


# --- 4. the LR-finder sweeps still lacking, and the finder's choice ------------------------------

def sweep_prefix(checks):
    return f"{checks.mode.name}-"  # a folder holds one device's sweeps (finder_plan); smoke's stay apart


def sweep_jobs(checks):
    """lr_sweeps.py for each variant finder_plan.pending still lists, its seeds in one process."""
    root, prefix, count = checks.out / "sweeps", sweep_prefix(checks), checks.mode.sweep_seeds
    try:
        todo = finder_plan.pending(root, prefix=prefix)
    except ValueError as error:  # a folder whose records swept something else
        raise Stopped(f"failed ({error})") from None
    commands = {name: finder_plan.sweep_command(name, seeds[:count], checks.data_dir, root, prefix=prefix)
                for name, seeds in todo}
    return [Job(f"sweeps/{name}", [*argv, *checks.mode.sweep], root / f"{prefix}{name}.log")
            for name, argv in commands.items()]


def plan_sweeps(checks):
    jobs = sweep_jobs(checks)
    folders = [finder_plan.folder(checks.out / "sweeps", name, sweep_prefix(checks)) for name in finder_plan.VARIANTS]
    first_missing = any(not (path / "seed1.json").exists() for path in folders)
    rounds = (checks.mode.sweep_rounds if first_missing else 1) if jobs else 0
    return rounds * waves(len(jobs), checks.parallel) * checks.mode.cost["sweep_round"] + checks.mode.cost["finder"]


def run_sweeps(checks):
    for _ in range(checks.mode.sweep_rounds):  # pending again after each round: the early stop applies
        jobs = sweep_jobs(checks)
        if not jobs:
            break
        check_codes(checks, jobs, run_jobs(checks, jobs, checks.parallel))
    root, prefix = checks.out / "sweeps", sweep_prefix(checks)
    folders = [str(path) for path in (finder_plan.folder(root, name, prefix) for name in finder_plan.VARIANTS)
               if path.is_dir()]
    job = Job("sweeps/finder_rules", [sys.executable, "experiments/finder_rules.py", *folders, "--json",
                                      str(checks.out / "finder.json")], root / "finder_rules.log", append=False)
    check_codes(checks, [job], run_jobs(checks, [job]))


def finder_choice(measured, prefix):
    """The finder the split uses, from finder_rules.py's record: the chosen (sweep, rule) pair's
    flags and the LOW factor (docs/lr_finder.md: 0.1 x the rule in use's median LR_max over the
    chosen rule's, capped at 1); the finder in use where no pair passes."""
    decision = measured["decision"]
    if not decision["passes"]:
        return {**FINDER_IN_USE, "why": f"no (sweep, rule) pair passes; the nearest: {decision['sweep']} "
                                       f"{decision['rule']}"}
    variant = decision["sweep"].removeprefix(prefix)
    sweep, picks = finder_plan.VARIANTS[variant], measured["results"][decision["sweep"]]
    low = min(1.0, 0.1 * picks["ema-min"]["lr_max_median"] / picks[decision["rule"]]["lr_max_median"])
    settings = {"finder_start_lr": sweep["start_lr"], "finder_end_lr": sweep["end_lr"], "finder_steps": sweep["steps"],
                "finder_repeats": sweep["repeats"], "finder_rule": decision["rule"]}
    return {"name": f"{variant} {decision['rule']}", "settings": settings, "low": round(low, 4), "why": "passes"}


def finder_for_split(checks):
    """The finder as decided; Skip while the sweeps have not decided it (a smoke run, or --skip
    sweeps, goes on with the finder in use)."""
    measured = read_json(checks.out / "finder.json")
    if measured and measured.get("decision"):
        return finder_choice(measured, sweep_prefix(checks))
    if checks.mode.smoke or "sweeps" in checks.skip:
        why = "smoke: too few sweep seeds to decide" if checks.mode.smoke else "--skip sweeps"
        return {**FINDER_IN_USE, "why": why}
    raise Skip("waits for the finder's decision: the sweeps are not finished")


def figures_sweeps(checks):
    measured = read_json(checks.out / "finder.json")
    if measured is None:
        return {}
    figures = {"status": measured.get("status"), "decision": measured.get("decision")}
    if measured.get("decision"):
        figures["finder"] = finder_choice(measured, sweep_prefix(checks))
    elif checks.mode.smoke:
        figures["note"] = (f"smoke: {checks.mode.sweep_seeds} seed of each variant per call, so no decision "
                           "(it needs finder_plan's first seeds); the split uses the finder in use")
    return figures


# --- 5. the split: docs/lr_finder.md's candidates on the validation split ------------------------

def candidate_settings(name, low):
    return {key: low if value == LOW else value for key, value in CANDIDATES[name].items()}


def split_runs(checks, finder):
    """[(candidate, seed, run folder, settings)], seed by seed: seeds 1 and 2 of every candidate first."""
    return [(name, seed, checks.out / "split" / name / f"seed{seed}",
             {**candidate_settings(name, finder["low"]), **finder["settings"], "val_split": VAL_SPLIT, "seed": seed})
            for seed in checks.mode.split_seeds for name in CANDIDATES]


def split_jobs(checks, finder):
    jobs = (train_job(checks, f"split/{name}/seed{seed}", run_dir, settings)
            for name, seed, run_dir, settings in split_runs(checks, finder))
    return [job for job in jobs if job]


def plan_split(checks):
    return waves(len(split_jobs(checks, finder_for_split(checks))), checks.parallel) * checks.mode.cost["run"]


def run_split(checks):
    finder = finder_for_split(checks)
    pin(checks.out / "split" / "finder.json", finder)
    jobs = split_jobs(checks, finder)
    check_codes(checks, jobs, run_jobs(checks, jobs, checks.parallel))
    results = {name: [] for name in CANDIDATES}
    for name, _, run_dir, _ in split_runs(checks, finder):
        if final_acc(run_dir) is not None:
            results[name].append(final_acc(run_dir))
    decision = {"finder": finder, "results": results, **choose_setting(results, DEFAULT)}
    (checks.out / "decision.json").write_text(json.dumps(decision, indent=1) + "\n")


def figures_split(checks):
    decision = read_json(checks.out / "decision.json")
    if decision is None:
        return {}
    return {key: decision[key] for key in ("chosen", "winner", "margin", "threshold", "s", "means")} | \
        {"finder": decision["finder"]["name"]}


# --- 6. the test seeds of the chosen setting; seed 1 is the notebook -----------------------------

def test_setting(checks):
    decision = read_json(checks.out / "decision.json")
    if decision is None:
        raise Skip("needs the split's decision (decision.json)")
    finder = decision["finder"]
    return decision["chosen"], {**candidate_settings(decision["chosen"], finder["low"]), **finder["settings"]}


def test_jobs(checks, settings):
    folder, jobs = checks.out / "test", []
    for seed in checks.mode.test_seeds:
        run_dir = folder / f"seed{seed}"
        if seed == 1 and not complete(run_dir):
            jobs.append(notebook_job(checks, "test/seed1 (notebook)", run_dir, {**settings, "seed": 1},
                                     run_dir / EXECUTED, folder / "seed1.log"))
        elif seed != 1:
            jobs.append(train_job(checks, f"test/seed{seed}", run_dir, {**settings, "seed": seed}))
    return [job for job in jobs if job]


def plan_test(checks):
    _, settings = test_setting(checks)
    return waves(len(test_jobs(checks, settings)), checks.parallel) * checks.mode.cost["run"]


def run_test(checks):
    chosen, settings = test_setting(checks)
    folder = checks.out / "test"
    pin(folder / "plan.json", {"setting": chosen, "settings": settings})
    jobs = test_jobs(checks, settings)
    check_codes(checks, jobs, run_jobs(checks, jobs, checks.parallel))
    summary = Job("test/summary", [sys.executable, "seeds.py", str(folder)], checks.out / "test.summary.log",
                  append=False)
    check_codes(checks, [summary], run_jobs(checks, [summary]))
    print((checks.out / "test.summary.log").read_text(), flush=True)
    # storing seed 1's outputs in S10.ipynb is a step taken on purpose, after reading the results
    print(f"to make seed 1 the repository's record, its outputs in S10.ipynb: "
          f"python -m s10.publish {folder / 'seed1'} --notebook", flush=True)


def figures_test(checks):
    summary = read_json(checks.out / "test" / SUMMARY)
    if summary is None:
        return {}
    return {"setting": (read_json(checks.out / "test" / "plan.json") or {}).get("setting"),
            "final_acc": summary["final_acc"], "final_acc_tta": summary["final_acc_tta"],
            "seeds": {r["run"]: r["final_acc"] for r in summary["runs"]}, "pending": summary["pending"],
            "notebook_executed": (checks.out / "test" / "seed1" / EXECUTED).exists()}


# --- 7. airbench94 on the same data --------------------------------------------------------------

def write_airbench_data(data_dir, folder):
    """DATA as the files airbench94.py caches CIFAR-10 in (cifar10/train.pt, test.pt: uint8 NHWC
    images, int64 labels, class names), read back as it reads them, so that it trains on them."""
    import numpy as np
    import torch

    from s10.cifar import load_cifar10
    data = load_cifar10(data_dir, download=False)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images, labels = data[f"{split}_x"], data[f"{split}_y"].astype(np.int64)
        torch.save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
                    "classes": list(data["classes"])}, folder / f"{split}.pt")
        back = torch.load(folder / f"{split}.pt", map_location="cpu")
        if back["images"].dtype != torch.uint8 or tuple(back["images"].shape[1:]) != (32, 32, 3) \
                or len(back["labels"]) != len(images):
            raise Stopped(f"failed ({folder / split}.pt did not read back as airbench94 reads it)")


def airbench_figures(text):
    """Each finished run's final row (epoch "eval") of airbench94.py's table: TTA accuracy, seconds."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]
    finals = [row for row in rows if len(row) == 8 and row[1] == "eval"]
    if not finals:
        return {}
    accs, seconds = [100 * float(row[6]) for row in finals], [float(row[7]) for row in finals]
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
    return {"runs": len(accs), "tta_acc_mean": round(mean, 2), "tta_acc_std": round(std, 2),
            "tta_acc_min": round(min(accs), 2), "seconds_mean": round(sum(seconds) / len(seconds), 2)}


def airbench_done(checks):
    log = checks.out / "airbench.log"
    return log.exists() and "Mean:" in log.read_text()  # its last line, after all its runs


def plan_airbench(checks):
    if checks.airbench is None and not checks.mode.smoke:
        raise Skip("no --airbench (a copy of the public airbench94.py, kept outside the repository)")
    return 0 if airbench_done(checks) else checks.mode.cost["airbench"]


def run_airbench(checks):
    """airbench94.py in a temporary working folder holding DATA as its cache files; the smoke run
    writes and reads back those files even where airbench94 cannot run."""
    import torch
    if airbench_done(checks):
        return
    work = Path(tempfile.mkdtemp(prefix="s10-airbench-"))
    try:
        write_airbench_data(checks.data_dir, work / "cifar10")
        written = "its data files were written from DATA and read back"
        if checks.airbench is None:
            raise Skip(f"no --airbench ({written})")
        if not torch.cuda.is_available():
            raise Skip(f"airbench94 needs CUDA ({written})")
        job = Job("airbench", [sys.executable, str(checks.airbench)], checks.out / "airbench.log", cwd=work,
                  append=False)
        check_codes(checks, [job], run_jobs(checks, [job]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def figures_airbench(checks):
    log = checks.out / "airbench.log"
    return airbench_figures(log.read_text()) if log.exists() else {}


PHASE_STEPS = {  # name -> (estimated seconds, run, figures from the records on disk)
    "bench": (plan_bench, run_bench, figures_bench),
    "alone": (plan_alone, run_alone, figures_alone),
    "fp16": (plan_fp16, run_fp16, figures_fp16),
    "sweeps": (plan_sweeps, run_sweeps, figures_sweeps),
    "split": (plan_split, run_split, figures_split),
    "test": (plan_test, run_test, figures_test),
    "airbench": (plan_airbench, run_airbench, figures_airbench),
    "compiled": (plan_compiled, run_compiled, figures_compiled),
}


# --- the summary ---------------------------------------------------------------------------------

def run_phase(checks, name):
    """One phase: skipped, or run until done, failed or stopped; its status, seconds and figures.
    No error in one phase stops the next ones: GPU time is rare."""
    plan, run, figures = PHASE_STEPS[name]
    started, status = time.monotonic(), "done"
    try:
        if name in checks.skip:
            raise Skip("--skip")
        need = plan(checks)
        if need > checks.left():
            raise Skip(f"no time (needs ~{need:.0f} s, {max(0.0, checks.left()):.0f} s left)")
        say(f"== {name}: ~{need:.0f} s expected, {checks.left():.0f} s left")
        run(checks)
    except Skip as reason:
        status = f"skipped: {reason}"
    except Stopped as reason:
        status = str(reason)
    except Exception as error:  # a bug or a broken file: reported, and the next phase still runs
        status = f"failed ({type(error).__name__}: {error})"
    say(f"{name}: {status}")
    try:
        found = figures(checks)
    except Exception as error:
        found = {"error": f"{type(error).__name__}: {error}"}
    return {"status": status, "seconds": round(time.monotonic() - started, 1), "figures": found}


def targets(phases, smoke):
    """The issue's targets, each with its figure where one exists and met True/False; None where
    there is no figure, or it does not count (a smoke run; a run not on an H200)."""
    bench = phases.get("bench", {}).get("figures", {}).get("auto", {})
    alone = phases.get("alone", {}).get("figures", {})
    fp16 = phases.get("fp16", {}).get("figures", {})
    test = (phases.get("test", {}).get("figures", {}).get("final_acc") or {})
    on_h200 = "H200" in alone.get("device", "") and alone.get("epochs") == 24 and alone.get("complete")
    rows = {
        "loop_ratio": ("the training loop at 0.95 of the bare step or better (bench, auto)",
                       bench.get("loop_ratio"), lambda v: v >= 0.95, True),
        "alone_24_epochs_s": ("24 epochs in 12 s or less on an H200 (alone: its epochs' seconds)",
                              alone.get("epochs_seconds") if alone.get("complete") else None,
                              lambda v: v <= 12, on_h200),
        "fp16_killed_and_resumed": ("fp16 with the grad scaler end to end, the notebook killed and continued",
                                    fp16.get("resumed_after_epoch"), bool, True),
        "test_every_seed": ("every test seed at 90.0% or more", test.get("min"), lambda v: v >= 90.0, True),
        "test_mean": ("the test mean at 90.5% or more", test.get("mean"), lambda v: v >= 90.5, True),
        "test_aim": ("aim: the test mean at 91.5%", test.get("mean"), lambda v: v >= 91.5, True),
    }
    return {key: {"target": text, "value": value,
                  "met": None if value is None or smoke or not counts else bool(met(value))}
            for key, (text, value, met, counts) in rows.items()}


def figure_text(figures):
    """The figures as key=value, nested dicts as key.sub=value."""
    def flat(prefix, value):
        if isinstance(value, dict) and value:
            return [item for key, sub in value.items() for item in flat(f"{prefix}{key}.", sub)]
        return [f"{prefix.rstrip('.')}={value}"]
    return ", ".join(flat("", figures))


def format_summary(summary):
    lines = [f"GPU checks ({summary['mode']}, {summary['device']}): {summary['seconds']:.0f} s "
             f"of a {summary['time_limit_s']:.0f} s limit"]
    for name, phase in summary["phases"].items():
        lines.append(f"{name:9s} {phase['status']} ({phase['seconds']:.0f} s)")
        if phase["figures"]:
            lines += textwrap.wrap(figure_text(phase["figures"]), 100, initial_indent=" " * 10,
                                   subsequent_indent=" " * 10, break_on_hyphens=False)
    lines.append("targets:")
    for target in summary["targets"].values():
        met = {True: "met", False: "missed", None: "not judged"}[target["met"]]
        lines.append(f"  {met:10s} {target['target']}: {target['value']}")
    return "\n".join(lines)


def write_summary(checks, phases, started, device, time_limit):
    summary = {"mode": checks.mode.name, "device": device, "time_limit_s": time_limit,
               "seconds": round(time.monotonic() - started, 1), "phases": phases,
               "targets": targets(phases, checks.mode.smoke)}
    (checks.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the folder that holds cifar-10-batches-py/")
    parser.add_argument("--out", type=Path, required=True, help="where every record goes; the same --out continues")
    parser.add_argument("--time-limit", type=float, required=True,
                        help="seconds: every phase and child ends before it")
    parser.add_argument("--parallel", type=int, help="train.py runs and sweeps at once (default: 6 on a GPU, "
                                                     "as the regularisation grid ran on the H200; 2 in --smoke)")
    parser.add_argument("--airbench", type=Path, help="a copy of the public airbench94.py, outside the repository")
    parser.add_argument("--before-rev", default=BEFORE_REV,
                        help="the commit whose bench.py gives the loop before its rare read-backs; 'none' skips it")
    parser.add_argument("--skip", default="", help=f"phases not to run, comma-separated: {', '.join(PHASES)}")
    parser.add_argument("--smoke", action="store_true", help="every phase on a few images on this machine")
    args = parser.parse_args(argv)
    args.skip = tuple(name for name in args.skip.split(",") if name)
    unknown = set(args.skip) - set(PHASES)
    if unknown:
        parser.error(f"--skip: no phase {', '.join(sorted(unknown))}; the phases are {', '.join(PHASES)}")
    if args.time_limit <= END_MARGIN_S:
        parser.error(f"--time-limit must be more than {END_MARGIN_S} s")
    return args


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    started = time.monotonic()
    args = parse_args(argv)
    import torch
    mode = SMOKE if args.smoke else GPU
    if not mode.smoke and not torch.cuda.is_available():
        print("error: no CUDA GPU here; --smoke tries every phase on a few images on this machine", file=sys.stderr)
        return 2
    checks = Checks(out=args.out.resolve(), data_dir=str(Path(args.data_dir).resolve()), mode=mode,
                    parallel=args.parallel or (2 if mode.smoke else 6),
                    deadline=started + args.time_limit - END_MARGIN_S,
                    airbench=args.airbench.resolve() if args.airbench else None,
                    before_rev=None if args.before_rev == "none" else args.before_rev, skip=args.skip)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    try:
        pin(checks.out / "checks.json", {"mode": mode.name})
    except Stopped as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, interrupted)  # a `timeout` around this script: stop the children too
    phases, name = {}, PHASES[0]
    try:
        for name in PHASES:
            phases[name] = run_phase(checks, name)
            write_summary(checks, phases, started, device, args.time_limit)
    except KeyboardInterrupt:
        stop_all(checks)
        phases[name] = {"status": "stopped: interrupted", "seconds": 0, "figures": {}}
    summary = write_summary(checks, phases, started, device, args.time_limit)
    print("\n" + format_summary(summary) + f"\nsummary in {checks.out / 'summary.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
