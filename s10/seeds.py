"""Repeated runs of one recipe over several seeds, and their summary.

A result resting on one seed cannot tell a setting's effect from seed noise, so results are
quoted as the mean and spread of the final accuracy over seeds (as airbench reports its runs).
`train.py --seeds N --out DIR` trains DIR/seed1 ... DIR/seedN and writes DIR/summary.json;
`python seeds.py DIR` summarises finished run folders.
"""
import json
import math
import statistics
from pathlib import Path

from s10.record import RECORD, read_record

SUMMARY = "summary.json"


def seed_dirs(out, first_seed, count):
    """The run folder of each seed: out/seed<k> for k = first_seed .. first_seed + count - 1."""
    return [Path(out) / f"seed{seed}" for seed in range(first_seed, first_seed + count)]


def spread(values):
    """Mean, sample standard deviation (0 for one value), min and max, rounded for reading."""
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"n": len(values), "mean": round(statistics.fmean(values), 3), "std": round(sd, 3),
            "min": min(values), "max": max(values)}


def summarize(run_dirs, relative_to=None):
    """The summary of finished runs among `run_dirs`: each run's final accuracy on its evaluation
    set (plain and with flip TTA where measured) and their spread. Runs not finished are listed
    as such."""
    runs, pending = [], []
    for run_dir in map(Path, run_dirs):
        name = str(run_dir.relative_to(relative_to)) if relative_to else str(run_dir)
        record = read_record(run_dir)
        if record is None or not record.complete:
            pending.append(name)
            continue
        last = record.epochs[-1]["eval"]
        runs.append({"run": name, "seed": record.config["seed"], "epochs": record.epochs[-1]["epoch"],
                     "final_acc": last["acc"], "final_acc_tta": last.get("acc_tta"),
                     "best_acc": max(e["eval"]["acc"] for e in record.epochs),
                     "final_loss": last["loss"], "seconds": round(record.seconds, 1),
                     "eval_set": record.eval_set, "device": record.device, "precision": record.precision})
    eval_sets = sorted({r["eval_set"] for r in runs})
    tta = [r["final_acc_tta"] for r in runs if r["final_acc_tta"] is not None]
    return {"eval_set": eval_sets[0] if len(eval_sets) == 1 else eval_sets,
            "runs": runs, "pending": pending,
            "final_acc": spread([r["final_acc"] for r in runs]),
            # only when every run measured it, so the two rows describe the same runs
            "final_acc_tta": spread(tta) if len(tta) == len(runs) else None}


def format_summary(summary):
    """The summary as a small markdown table: one row per run, then mean ± std [min, max]."""
    lines = ["| run | seed | final accuracy | with flip TTA | seconds |", "|---|---|---|---|---|"]
    for r in summary["runs"]:
        tta = "" if r["final_acc_tta"] is None else f"{r['final_acc_tta']:.2f}%"
        lines.append(f"| {r['run']} | {r['seed']} | {r['final_acc']:.2f}% | {tta} | {r['seconds']:.0f} |")

    def cell(s):
        return "" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"
    lines.append(f"| mean ± std [min, max] | n={len(summary['runs'])} | {cell(summary['final_acc'])} "
                 f"| {cell(summary['final_acc_tta'])} | |")
    if summary["pending"]:
        lines.append(f"not finished: {', '.join(summary['pending'])}")
    return "\n".join(lines)


def write_summary(out, run_dirs):
    """Summarise `run_dirs` into out/summary.json (run names relative to `out`); returns it."""
    summary = summarize(run_dirs, relative_to=out)
    path = Path(out) / SUMMARY
    path.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def run_folders(out):
    """The run folders in `out` (each holding a metrics.json), seed2 before seed10."""
    return sorted((p.parent for p in Path(out).glob(f"*/{RECORD}")), key=lambda d: (len(d.name), d.name))


def choose_setting(results, default):
    """Which setting to keep, by the seed-noise rule the experiments write down before their runs.
    `results`: {setting: [final plain validation accuracy of each finished seed]}.

    - Candidates: the settings with at least 2 finished seeds; the default must be one.
    - Seed noise: s, the pooled standard deviation of one run within a setting, over the
      candidates (pooled variance = sum((n - 1) var) / sum(n - 1)).
    - The winner: the candidate with the highest mean. It replaces the default only if its mean
      beats the default's by more than two standard errors of the difference,
      2 s sqrt(1/n_winner + 1/n_default). Otherwise the default stays.
    Returns {"chosen", "winner", "margin", "threshold", "s", "means", "n"}.
    """
    candidates = {k: v for k, v in results.items() if len(v) >= 2}
    if default not in candidates:
        raise ValueError("the default setting needs at least 2 finished seeds")
    dof = sum(len(v) - 1 for v in candidates.values())
    s = math.sqrt(sum((len(v) - 1) * statistics.variance(v) for v in candidates.values()) / dof)
    means = {k: statistics.fmean(v) for k, v in candidates.items()}
    winner = max(means, key=means.get)
    threshold = 2 * s * math.sqrt(1 / len(candidates[winner]) + 1 / len(candidates[default]))
    margin = means[winner] - means[default]
    return {"chosen": winner if margin > threshold else default, "winner": winner,
            "margin": round(margin, 3), "threshold": round(threshold, 3), "s": round(s, 3),
            "means": {k: round(v, 3) for k, v in sorted(means.items(), key=lambda kv: -kv[1])},
            "n": {k: len(v) for k, v in candidates.items()}}
