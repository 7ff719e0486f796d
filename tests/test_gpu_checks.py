"""experiments/gpu_checks.py without training: what it reads from bench.py, finder_rules.py and
airbench94.py, the commands it builds, its time limit, and its summary. The smoke run of the whole
command is a documented check (docs/gpu_checks.md), too slow for the suite."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

import train
import utils
from experiments import finder_plan, gpu_checks, lr_sweeps
from s10.cifar import load_cifar10
from s10.config import Config

ROOT = Path(__file__).resolve().parents[1]


def checks_for(tmp_path, mode=gpu_checks.SMOKE, seconds=60, **kwargs):
    return gpu_checks.Checks(out=tmp_path, data_dir=str(tmp_path / "data"), mode=mode, parallel=2,
                             deadline=time.monotonic() + seconds, **kwargs)


def test_bench_figures_read_the_committed_h200_bench():
    figures = gpu_checks.bench_figures((ROOT / "assets/runs/gpu/bench_h200.txt").read_text())
    assert figures == {"device": "cuda (NVIDIA H200)", "precision": "bfloat16", "bare_img_s": 97663.5,
                       "loop_ratio": 0.769}


def test_bench_figures_read_the_compiled_lines_or_say_why_there_are_none():
    compiled = ("bare step, compiled:       1200.0 img/s   (compiled / eager: 1.20)\n"
                "full loop, compiled:       1140.0 img/s = 0.950 of the compiled bare step\n"
                "full loop / bare step: 0.900\n")
    assert gpu_checks.bench_figures(compiled) == {"compiled_speedup": 1.2, "compiled_loop_ratio": 0.95,
                                                  "loop_ratio": 0.9}
    cpu = "torch.compile: not measured; it is used on CUDA only, not on cpu\nfull loop / bare step: 0.705\n"
    assert gpu_checks.bench_figures(cpu)["compiled"].startswith("not measured")


def test_settings_become_the_flags_train_py_reads_back():
    settings = {"weight_decay": 1e-4, "decay_norm_and_bias": False, "seed": 2, "precision": "fp16",
                "finder_start_lr": 1e-6, "finder_rule": "cliff1.3-b0.4", "val_split": 5000}
    args = train.build_parser().parse_args(gpu_checks.flags(settings))
    assert {name: getattr(args, name) for name in settings} == settings


@pytest.mark.parametrize("mode", [gpu_checks.GPU, gpu_checks.SMOKE], ids=lambda m: m.name)
def test_the_notebook_and_train_py_get_the_same_config(tmp_path, mode):
    # the test phase pools them (seed 1 the notebook, the others train.py): one config
    checks = checks_for(tmp_path, mode)
    settings = {**gpu_checks.candidate_settings("wd1e-4_ls01_nobn", 0.1), **gpu_checks.FP16}
    job = gpu_checks.train_job(checks, "x", tmp_path / "run", settings)
    args = train.build_parser().parse_args(job.argv[2:])
    from_train = Config(**train.given_settings(args))

    notebook = gpu_checks.notebook_job(checks, "x", tmp_path / "nb", settings, tmp_path / "nb" / "S10.ipynb",
                                       tmp_path / "nb.log")
    assert notebook.argv[3:5] == [str(ROOT / "S10.ipynb"), str(tmp_path / "nb" / "S10.ipynb")]  # never over it
    parameters = json.loads(notebook.argv[notebook.argv.index("-y") + 1])
    cells = parameterize_notebook(load_notebook_node(str(ROOT / "S10.ipynb")), parameters).cells
    namespace = {}
    for cell in cells:  # the parameters cell, then the one papermill injects after it
        if {"parameters", "injected-parameters"} & set(cell.metadata.tags):
            exec(cell.source, namespace)
    from_notebook = utils.notebook_config(namespace["smoke"], namespace["settings"])
    assert from_notebook == from_train
    assert (from_train.precision, from_train.decay_norm_and_bias) == ("fp16", False)
    assert from_train.data_dir == checks.data_dir
    assert (from_train.subset is not None) == mode.smoke and namespace["run_dir"] == str(tmp_path / "nb")


def test_a_stopped_run_resumes_and_a_finished_one_is_left_alone(tmp_path, monkeypatch):
    checks = checks_for(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / gpu_checks.CHECKPOINT).write_bytes(b"")
    assert gpu_checks.train_job(checks, "x", run_dir, {}).argv[2:] == ["--resume", str(run_dir)]
    monkeypatch.setattr(gpu_checks, "complete", lambda path: True)
    assert gpu_checks.train_job(checks, "x", run_dir, {}) is None


def test_the_fp16_runs_compared_are_both_the_notebook_with_the_same_parameters(tmp_path, monkeypatch):
    # train.py of the same seed would start from other weights (the notebook's summary cell draws
    # random numbers first), so the straight run beside the killed one is the notebook too
    checks = checks_for(tmp_path)
    folder = tmp_path / "fp16"
    straight = gpu_checks.straight_job(checks, folder)
    killed = gpu_checks.notebook_job(checks, "x", folder / "notebook", gpu_checks.FP16, folder / "notebook" / "S10.ipynb",
                                     tmp_path / "nb.log")
    assert straight.argv[:3] == killed.argv[:3] == [sys.executable, "-m", "papermill"]
    parameters = [json.loads(job.argv[job.argv.index("-y") + 1]) for job in (straight, killed)]
    assert parameters[0]["settings"] == parameters[1]["settings"] and parameters[0]["settings"]["precision"] == "fp16"
    assert parameters[0]["run_dir"] == str(folder / "straight") != parameters[1]["run_dir"]
    monkeypatch.setattr(gpu_checks, "complete", lambda path: True)
    assert gpu_checks.straight_job(checks, folder) is None


def measured(lr_max_in_use, lr_max_rule, passes=True):
    """finder_rules.py's --json record, reduced to what the choice reads."""
    sweep = "gpu-narrow-x4"
    return {"results": {sweep: {"ema-min": {"lr_max_median": lr_max_in_use},
                                "cliff1.3-b0.4": {"lr_max_median": lr_max_rule}}},
            "decision": {"sweep": sweep, "rule": "cliff1.3-b0.4", "passes": passes}}


def test_the_chosen_finder_becomes_flags_and_the_low_factor():
    choice = gpu_checks.finder_choice(measured(1.5e-2, 1.0e-2), "gpu-")
    variant = finder_plan.VARIANTS["narrow-x4"]
    assert choice["settings"] == {"finder_start_lr": variant["start_lr"], "finder_end_lr": variant["end_lr"],
                                  "finder_steps": variant["steps"], "finder_repeats": variant["repeats"],
                                  "finder_rule": "cliff1.3-b0.4"}
    assert choice["low"] == pytest.approx(0.15)  # 0.1 x 1.5e-2 / 1.0e-2: a tenth of the old pick
    assert gpu_checks.finder_choice(measured(1.5e-2, 1.0e-3), "gpu-")["low"] == 1.0  # capped
    in_use = gpu_checks.finder_choice(measured(1.5e-2, 1.0e-2, passes=False), "gpu-")
    assert (in_use["settings"], in_use["low"]) == ({}, 0.1) and "no (sweep, rule) pair passes" in in_use["why"]


def test_the_split_waits_for_the_finder_unless_told_otherwise(tmp_path):
    with pytest.raises(gpu_checks.Skip, match="waits for the finder"):
        gpu_checks.finder_for_split(checks_for(tmp_path, gpu_checks.GPU))
    assert gpu_checks.finder_for_split(checks_for(tmp_path, gpu_checks.GPU, skip=("sweeps",)))["settings"] == {}
    assert gpu_checks.finder_for_split(checks_for(tmp_path, gpu_checks.SMOKE))["name"] == "in use"


def test_split_runs_start_with_seeds_1_and_2_of_every_candidate_and_put_low_in(tmp_path):
    finder = {**gpu_checks.FINDER_IN_USE, "settings": {"finder_rule": "cliff1.3-b0.4"}, "low": 0.25}
    runs = gpu_checks.split_runs(checks_for(tmp_path, gpu_checks.GPU), finder)
    count = len(gpu_checks.CANDIDATES)
    assert [seed for _, seed, _, _ in runs] == [1] * count + [2] * count + [3] * count
    low = next(settings for name, _, _, settings in runs if name == "wd1e-3_low")
    assert (low["lr_max_factor"], low["finder_rule"], low["val_split"]) == (0.25, "cliff1.3-b0.4", 5000)


def test_sweeps_are_the_pending_ones_in_the_modes_own_folders(tmp_path):
    jobs = gpu_checks.sweep_jobs(checks_for(tmp_path, gpu_checks.SMOKE))
    assert [job.name for job in jobs] == [f"sweeps/{name}" for name in finder_plan.VARIANTS]
    argv = jobs[0].argv
    assert lr_sweeps.parse_seeds(argv[argv.index("--seeds") + 1]) == [finder_plan.FIRST_SEEDS[0]]  # one a call
    assert argv[argv.index("--out") + 1].endswith("smoke-" + next(iter(finder_plan.VARIANTS)))
    assert argv[-4:] == gpu_checks.SMOKE.sweep


def test_a_job_past_the_deadline_is_killed_with_what_it_started(tmp_path):
    # the child starts a grandchild in a session of its own, as papermill starts its kernel
    script = ("import subprocess, sys, time\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
              "print(p.pid, flush=True)\n"
              "time.sleep(60)\n")
    checks = checks_for(tmp_path, seconds=3)
    job = gpu_checks.Job("sleeper", [sys.executable, "-c", script], tmp_path / "sleeper.log")
    started = time.monotonic()
    codes = gpu_checks.run_jobs(checks, [job, gpu_checks.Job("never", ["true"], tmp_path / "never.log")], parallel=1)
    assert codes == {"sleeper": None, "never": None} and time.monotonic() - started < 15
    grandchild = int((tmp_path / "sleeper.log").read_text().split()[0])
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    assert checks.running == {}
    with pytest.raises(gpu_checks.Stopped, match="stopped: the time limit"):
        gpu_checks.check_codes(checks, [job], codes)


def test_a_failed_job_names_its_exit_code_and_log(tmp_path):
    checks = checks_for(tmp_path)
    job = gpu_checks.Job("fails", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "logs" / "fails.log")
    with pytest.raises(gpu_checks.Stopped, match=r"failed \(exit 3, log logs/fails.log\)"):
        gpu_checks.check_codes(checks, [job], gpu_checks.run_jobs(checks, [job]))


def test_a_phase_runs_only_if_its_estimate_fits_and_no_error_stops_the_next(tmp_path, monkeypatch):
    ran = []

    def broken(checks):
        raise OSError("disk full")
    monkeypatch.setattr(gpu_checks, "PHASE_STEPS", {
        "fits": (lambda checks: 5, ran.append, lambda checks: {"x": 1}),
        "too_long": (lambda checks: 500, ran.append, lambda checks: {}),
        "blocked": (lambda checks: (_ for _ in ()).throw(gpu_checks.Skip("needs the split's decision")), ran.append,
                    lambda checks: {}),
        "broken": (lambda checks: 0, broken, lambda checks: {}),
        "skipped": (lambda checks: 0, ran.append, lambda checks: {})})
    checks = checks_for(tmp_path, seconds=60, skip=("skipped",))
    results = {name: gpu_checks.run_phase(checks, name)
               for name in ("fits", "too_long", "blocked", "broken", "skipped")}
    assert ran == [checks] and results["skipped"]["status"] == "skipped: --skip"
    assert results["fits"]["status"] == "done" and results["fits"]["figures"] == {"x": 1}
    assert results["too_long"]["status"].startswith("skipped: no time (needs ~500 s, ")
    assert results["blocked"]["status"] == "skipped: needs the split's decision"
    assert results["broken"]["status"] == "failed (OSError: disk full)"


def test_targets_are_judged_only_on_real_figures():
    phases = {"bench": {"figures": {"auto": {"loop_ratio": 0.96}}},
              "alone": {"figures": {"device": "cuda (NVIDIA H200)", "epochs": 24, "complete": True,
                                    "epochs_seconds": 13.1}},
              "fp16": {"figures": {"resumed_after_epoch": [3]}},
              "test": {"figures": {"final_acc": {"min": 89.98, "mean": 90.6}}}}
    met = {key: target["met"] for key, target in gpu_checks.targets(phases, smoke=False).items()}
    assert met == {"loop_ratio": True, "alone_24_epochs_s": False, "fp16_killed_and_resumed": True,
                   "test_every_seed": False, "test_mean": True, "test_aim": False}
    assert all(t["met"] is None for t in gpu_checks.targets(phases, smoke=True).values())
    phases["alone"]["figures"]["device"] = "cuda (Tesla T4)"
    assert gpu_checks.targets(phases, smoke=False)["alone_24_epochs_s"]["met"] is None
    assert gpu_checks.targets({}, smoke=False)["test_mean"] == {"target": "the test mean at 90.5% or more",
                                                               "value": None, "met": None}


def test_a_folder_never_mixes_settings(tmp_path):
    gpu_checks.pin(tmp_path / "plan.json", {"setting": "default"})
    gpu_checks.pin(tmp_path / "plan.json", {"setting": "default"})
    with pytest.raises(gpu_checks.Stopped, match="use another --out"):
        gpu_checks.pin(tmp_path / "plan.json", {"setting": "wd1e-4_ls01"})


def test_airbench_gets_our_data_in_its_cache_files(tiny_data, tmp_path):
    gpu_checks.write_airbench_data(str(tiny_data), tmp_path / "cifar10")
    data = load_cifar10(str(tiny_data), download=False)
    for split in ("train", "test"):
        cached = torch.load(tmp_path / "cifar10" / f"{split}.pt", map_location="cpu")  # as airbench94 loads it
        assert np.array_equal(cached["images"].numpy(), data[f"{split}_x"])
        assert cached["labels"].dtype == torch.int64 and np.array_equal(cached["labels"].numpy(), data[f"{split}_y"])
        assert cached["classes"][0] == "airplane"


def test_airbench_figures_read_each_finished_runs_last_row():
    rows = ["| run | epoch | train_loss | val_loss | train_acc | val_acc | tta_val_acc | total_time_seconds |",
            "|    0  |      1  |   1.2000  |  1.1000  |  0.6000  |  0.6200  |          |  1.0000  |",
            "|       |   eval  |   0.8000  |  0.7000  |  0.9000  |  0.9350  |  0.9400  |  3.5000  |",
            "|       |   eval  |   0.8000  |  0.7000  |  0.9000  |  0.9350  |  0.9420  |  3.7000  |"]
    figures = gpu_checks.airbench_figures("\n".join(rows))
    assert figures == {"runs": 2, "tta_acc_mean": 94.1, "tta_acc_std": pytest.approx(0.14, abs=0.005),
                       "tta_acc_min": 94.0, "seconds_mean": 3.6}


def test_with_every_phase_skipped_the_summary_says_why(tiny_data, tmp_path, capsys):
    out = tmp_path / "checks"
    code = gpu_checks.main(["--smoke", "--data-dir", str(tiny_data), "--out", str(out), "--time-limit", "60",
                            "--skip", "bench,alone,fp16,sweeps,split,test,compiled"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and list(summary["phases"]) == list(gpu_checks.PHASES)
    assert summary["phases"]["bench"]["status"] == "skipped: --skip"
    assert summary["phases"]["airbench"]["status"] == ("skipped: no --airbench (its data files were written "
                                                       "from DATA and read back)")
    assert "targets:" in capsys.readouterr().out
    # the same folder is never continued in the other mode
    if not torch.cuda.is_available():
        assert gpu_checks.main(["--data-dir", str(tmp_path), "--out", str(out), "--time-limit", "60"]) == 2


def test_the_old_bench_is_taken_from_git_into_a_folder_of_its_own(tmp_path):
    known = subprocess.run(["git", "cat-file", "-e", f"{gpu_checks.BEFORE_REV}^{{commit}}"], cwd=ROOT).returncode == 0
    if not known:
        pytest.skip(f"this checkout lacks commit {gpu_checks.BEFORE_REV} (a shallow clone)")
    gpu_checks.export(gpu_checks.BEFORE_REV, tmp_path)
    assert "def full_loop" in (tmp_path / "bench.py").read_text() and (tmp_path / "s10").is_dir()
    with pytest.raises(gpu_checks.Stopped, match="git archive"):
        gpu_checks.export("no-such-commit", tmp_path / "none")
