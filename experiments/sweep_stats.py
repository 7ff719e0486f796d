"""How far the points the lag-free rules read (halfway down, the start of the cliff, the bottom)
move between sweeps of the same recipe: their standard deviation in log10(LR), as
docs/lr_finder.md uses it to size the averaged sweeps. Reads records only.

    python experiments/sweep_stats.py [--gpu assets/runs/gpu] [--cpu assets/runs/lr_finder/cpu-as-is]
                                      [--variants DIR [DIR ...]] [--within DIR]

GPU: the sweep inside each run's metrics.json (lr_finder), raw losses recovered from the finder's
smoothing (s10.lr_rules.unsmooth); the runs of one folder (one setting, seeds 1 to 3) form a group,
and the SD is pooled within groups, so that settings' differences do not count.
CPU: the seed<k>.json records of lr_sweeps.py, one group; and the same seeds averaged in disjoint
pairs (1+2, 3+4, ...), their raw losses averaged step by step as --repeats averages them.
Then the arithmetic that links an SD to a spread over seeds: max - min of n normal draws is on
average d(n) SDs (d(5) = 2.33, d(10) = 3.08), so a spread of max/min over 10 seeds is expected at
10^(3.08 SD), and the SD a target allows is log10(target) / 3.08.
--variants: the SD over the seeds of each folder of averaged sweeps (finder_plan.VARIANTS), and
what averaging did: SD^2 = a + b/k fitted over the folders (k sweeps averaged), a the part that
averaging cannot remove (the seed's initial weights), b/k the part it divides (the batches); from
it, the k that would bring each pick's SD to what its target allows.
--within: the SD between the sweeps of one seed's weights (records of --repeats k, which keep
each sweep), pooled over the folder's seeds: the part of the spread that the batches make.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s10.lr_rules import average_sweeps, read_curve, unsmooth  # noqa: E402

POINTS = ("halfway", "cliff 1.3x", "cliff 1.2x", "bottom")


def points(sweep, bandwidth, between_steps):
    """log10 of each point of POINTS on one sweep ({"lrs", "raw_losses"})."""
    readings = [read_curve(sweep["lrs"], sweep["raw_losses"], bandwidth=bandwidth, rise=rise,
                           between_steps=between_steps)[3] for rise in (1.3, 1.2)]
    lrs = [readings[0]["halfway_lr"], readings[0]["cliff_lr"], readings[1]["cliff_lr"], readings[0]["bottom_lr"]]
    return np.log10(lrs)


def pooled_sd(groups, bandwidth, between_steps):
    """(SD of each point pooled within groups, degrees of freedom); `groups` is a list of lists of sweeps."""
    deviations, dof = [], 0
    for sweeps in groups:
        values = np.array([points(s, bandwidth, between_steps) for s in sweeps])
        deviations.append(((values - values.mean(axis=0)) ** 2).sum(axis=0))
        dof += len(sweeps) - 1
    return np.sqrt(np.sum(deviations, axis=0) / dof), dof


def gpu_groups(root):
    """[[sweep, ...] per run folder] of the GPU runs' sweeps."""
    groups = {}
    for path in sorted(Path(root).glob("*/seed*/metrics.json")):
        losses = json.loads(path.read_text())["lr_finder"]
        sweep = {"lrs": losses["lrs"], "raw_losses": unsmooth(losses["losses"]).tolist()}
        groups.setdefault(path.parents[1].name, []).append(sweep)
    return list(groups.values())


def expected_range(n):
    """Mean of max - min of n standard normal draws: the integral of 1 - Phi^n - (1 - Phi)^n."""
    x = np.linspace(-8, 8, 16001)
    phi = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return float(np.sum(1 - phi ** n - (1 - phi) ** n) * (x[1] - x[0]))


def print_arithmetic(cliff_sds, targets=(("LR_max", 1.25), ("LR_min", 1.5)), repeats=(1, 2, 3, 4, 8)):
    """The SD each target allows over 10 seeds, and the expected 10-seed spread of k sweeps
    averaged if averaging divides a single sweep's SD (`cliff_sds`: {label: SD}) by sqrt(k)."""
    d5, d10 = expected_range(5), expected_range(10)
    print(f"\nmax - min of n normal draws, in SDs: n=5 {d5:.2f}, n=10 {d10:.2f}")
    for name, target in targets:
        print(f"{name} max/min <= {target} over 10 seeds: expected when SD <= {math.log10(target) / d10:.4f}")
    print("expected 10-seed max/min of k sweeps averaged, SD / sqrt(k): "
          + "; ".join(f"SD {sd:.3f} ({label}): " + ", ".join(f"k={k} {10 ** (d10 * sd / math.sqrt(k)):.2f}"
                                                           for k in repeats)
                      for label, sd in cliff_sds.items()))


def cpu_groups(folder):
    """([the folder's sweeps, in seed order]], [[its seeds averaged in disjoint pairs]])."""
    records = sorted((json.loads(p.read_text()) for p in Path(folder).glob("seed*.json")), key=lambda r: r["seed"])
    pairs = []
    for first, second in zip(records[::2], records[1::2]):
        lrs, raw = average_sweeps([first, second])
        pairs.append({"lrs": lrs.tolist(), "raw_losses": raw.tolist()})
    return [records], [pairs]


def folder_sd(folder, bandwidth=0.4, between_steps=True):
    """(sweeps averaged per seed, seeds, SD of each point of POINTS over the folder's seeds)."""
    records = [json.loads(p.read_text()) for p in Path(folder).glob("seed*.json")]
    repeats = {r.get("sweep", {}).get("repeats", 1) for r in records}
    if len(repeats) != 1:
        raise SystemExit(f"{folder}: its records average different numbers of sweeps {sorted(repeats)}")
    sd, dof = pooled_sd([records], bandwidth, between_steps)
    return repeats.pop(), dof + 1, sd


def averaging_fit(repeats, sds, dofs):
    """(a, b) of SD(k)^2 = a + b/k by least squares weighted by each SD's degrees of freedom,
    both kept >= 0 (a below 0 would say averaging removes more than all of the spread)."""
    k, var, w = (np.asarray(v, float) for v in (repeats, np.square(sds), dofs))
    design = np.stack([np.ones_like(k), 1 / k], axis=1) * np.sqrt(w)[:, None]
    a, b = np.linalg.lstsq(design, var * np.sqrt(w), rcond=None)[0]
    if a < 0:
        a, b = 0.0, float(np.sum(w * var * k) / np.sum(w))
    elif b < 0:
        a, b = float(np.sum(w * var) / np.sum(w)), 0.0
    return float(a), float(b)


def repeats_needed(a, b, target_sd):
    """Sweeps to average for an SD of `target_sd` under the fit; None if no number of them does."""
    return None if a >= target_sd ** 2 else b / (target_sd ** 2 - a)


def print_variants(folders, targets=(("LR_max", 1.25, "cliff 1.3x"), ("LR_min", 1.5, "halfway"))):
    """Each folder's SDs, the fit of SD^2 = a + b/k over the folders and the k each target needs."""
    print("\nSD in log10(LR) over each folder's seeds, read between steps, 0.4-decade kernel")
    print(f"{'folder':24s} {'k':>3s} {'seeds':>5s} " + " ".join(f"{p:>10s}" for p in POINTS))
    rows = [(Path(f).name, *folder_sd(f)) for f in folders]
    for name, k, n, sd in rows:
        print(f"{name:24s} {k:3d} {n:5d} " + " ".join(f"{v:10.3f}" for v in sd))
    if len({k for _, k, _, _ in rows}) < 2:
        print("no fit: it needs folders of at least two different numbers of sweeps averaged")
        return
    d10 = expected_range(10)
    for name, target, point in targets:
        column = POINTS.index(point)
        a, b = averaging_fit([k for _, k, _, _ in rows], [sd[column] for *_, sd in rows], [n - 1 for _, _, n, _ in rows])
        allowed = math.log10(target) / d10
        needed = repeats_needed(a, b, allowed)
        print(f"{name} ({point}): SD^2 = {a:.2e} + {b:.2e}/k: the part averaging leaves {math.sqrt(a):.3f}, "
              f"one sweep's {math.sqrt(a + b):.3f}; {target} over 10 seeds allows {allowed:.4f}: "
              + (f"k = {needed:.1f} sweeps averaged" if needed is not None else "no k reaches it"))


def within_sd(folder, bandwidth=0.4, between_steps=True):
    """(SD of each point between the sweeps of one seed, pooled over the seeds; degrees of
    freedom; seeds) of a folder of records that keep each sweep (`each_sweep`)."""
    records = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("seed*.json"))]
    groups = [r["each_sweep"] for r in records if len(r.get("each_sweep", [])) > 1]
    if not groups:
        raise SystemExit(f"{folder}: no record keeps its sweeps one by one (lr_sweeps.py --repeats k > 1)")
    sd, dof = pooled_sd(groups, bandwidth, between_steps)
    return sd, dof, len(groups)


def within_line(folder):
    """The line --within prints, as docs/lr_finder.md quotes it."""
    sd, dof, seeds = within_sd(folder)
    return (f"SD between the sweeps of one seed's weights ({Path(folder).name}, {seeds} seeds, {dof} degrees "
            f"of freedom; between steps, 0.4-decade kernel): " + ", ".join(f"{p} {v:.3f}" for p, v in zip(POINTS, sd)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", type=Path, default=ROOT / "assets" / "runs" / "gpu")
    parser.add_argument("--cpu", type=Path, default=ROOT / "assets" / "runs" / "lr_finder" / "cpu-as-is")
    parser.add_argument("--variants", type=Path, nargs="+",
                        help="folders of lr_sweeps.py records, each one variant (as-is among them for k = 1)")
    parser.add_argument("--within", type=Path, help="a folder of lr_sweeps.py --repeats records that keep each sweep")
    args = parser.parse_args(argv)
    gpu = gpu_groups(args.gpu)
    cpu, cpu_pairs = cpu_groups(args.cpu)
    sources = [(f"GPU, {sum(map(len, gpu))} sweeps in {len(gpu)} folders", gpu),
               (f"CPU, {len(cpu[0])} seeds", cpu), (f"CPU, {len(cpu_pairs[0])} pairs averaged", cpu_pairs)]
    print("SD in log10(LR) of each point; 'steps': read at the sweep's steps, 'between': read between them")
    print(f"{'sweeps':32s} {'read':8s} {'kernel':>6s} {'dof':>4s} " + " ".join(f"{p:>10s}" for p in POINTS))
    for label, groups in sources:
        for between in (False, True):
            for bandwidth in (0.4, 0.25):
                sd, dof = pooled_sd(groups, bandwidth, between)
                print(f"{label:32s} {'between' if between else 'steps':8s} {bandwidth:6.2f} {dof:4d} "
                      + " ".join(f"{v:10.3f}" for v in sd))
    cliff = POINTS.index("cliff 1.3x")
    print_arithmetic({"GPU, cliff 1.3x, 0.4": pooled_sd(gpu, 0.4, False)[0][cliff],
                      "CPU, cliff 1.3x, 0.4": pooled_sd(cpu, 0.4, False)[0][cliff]})
    if args.variants:
        print_variants(args.variants)
    if args.within:
        print("\n" + within_line(args.within))


if __name__ == "__main__":
    main()
