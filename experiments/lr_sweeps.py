"""The LR finder's sweep alone (no training), once per seed, to measure how far its pick moves
from seed to seed.

    python experiments/lr_sweeps.py --data-dir DATA --seeds 1-10 --out DIR [--variant NAME |
        --start-lr 1e-7 --end-lr 10 --steps 100 --repeats 1]

--variant takes a sweep of experiments/finder_plan.py's VARIANTS; without it, the flags (by
default the finder as it is). Each seed builds the run's recipe exactly as train.py does (its own
initial weights, its own batches) and sweeps the full training set. With --repeats k, the seed
sweeps k times from its same initial weights (the model and optimizer restored after each), each
sweep on the next batches of its loader (a fresh shuffle), and the record holds the k sweeps' raw
losses averaged step by step (cut to the shortest sweep) and the finder's smoothing of that mean.
DIR/seed<k>.json holds the sweep's LRs, its smoothed and raw losses and the picks of the rule in
use; a seed whose file exists is skipped, so the same command again continues an interrupted
series. DIR/summary.json holds every seed's picks and their spread (max/min over the seeds).
"""
import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.finder_plan import VARIANTS  # noqa: E402
from s10 import cifar, data, device as devices, lr  # noqa: E402
from s10.config import Config  # noqa: E402
from s10.lr_rules import RULES  # noqa: E402
from s10.recipe import Recipe  # noqa: E402
from s10.record import write_json  # noqa: E402
from s10.runs import git_commit  # noqa: E402


def parse_seeds(text):
    """"1-5" -> [1, 2, 3, 4, 5]; "2,4,6-7" -> [2, 4, 6, 7]."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


SWEEP_FLAGS = {"start_lr": Config.finder_start_lr, "end_lr": Config.finder_end_lr,
               "steps": Config.finder_steps, "repeats": Config.finder_repeats}


def sweep_settings(parser, args):
    """{start_lr, end_lr, steps, repeats}: the variant's, or the flags' (the finder as it is by
    default); a variant with any of those flags is refused, so a record says one thing."""
    given = {key: getattr(args, key) for key in SWEEP_FLAGS if getattr(args, key) is not None}
    if args.variant is None:
        return {**SWEEP_FLAGS, **given}
    if given:
        flags = ", ".join("--" + key.replace("_", "-") for key in given)
        parser.error(f"--variant {args.variant} sets the sweep: drop {flags}, or --variant")
    return dict(VARIANTS[args.variant])


def sweep_seed(cfg, images, device):
    """One seed's sweep (cfg.finder_repeats of them, averaged), built as train.run builds the run
    before its finder, and the picks of cfg.finder_rule."""
    devices.seed_everything(cfg.seed)
    train_loader, _, _, _ = data.make_loaders(images, cfg, device)
    recipe = Recipe(cfg, device)
    started = time.perf_counter()
    sweep = lr.lr_range_test(recipe.model, recipe.optimizer, recipe.criterion, train_loader, device,
                             lr.SweepPlan.of(cfg), recipe.amp_dtype)
    seconds = time.perf_counter() - started
    lr_max, lr_min, notes, _ = RULES[cfg.finder_rule](sweep, lr_max_factor=cfg.lr_max_factor)
    return {"seed": cfg.seed, "precision": devices.precision_name(recipe.amp_dtype),
            "lr_max": lr_max, "lr_min": lr_min, "rule": cfg.finder_rule, "notes": notes,
            **sweep, "seconds": round(seconds, 1)}


def spread(values):
    return max(values) / min(values)


def summarise(folder):
    """Every seed's picks in the folder, in seed order (seed 10 after seed 9), and their spread."""
    records = sorted((json.loads(p.read_text()) for p in Path(folder).glob("seed*.json")), key=lambda r: r["seed"])
    return {"seeds": [r["seed"] for r in records],
            "lr_max": [r["lr_max"] for r in records], "lr_min": [r["lr_min"] for r in records],
            "lr_max_spread": spread([r["lr_max"] for r in records]),
            "lr_min_spread": spread([r["lr_min"] for r in records])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--seeds", default="1-10", help="first-last or a,b,c, e.g. 1-5 or 1,3,6-10")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", choices=list(VARIANTS), help="a sweep of experiments/finder_plan.py")
    parser.add_argument("--start-lr", type=float, help=f"default {Config.finder_start_lr:g}")
    parser.add_argument("--end-lr", type=float, help=f"default {Config.finder_end_lr:g}")
    parser.add_argument("--steps", type=int, help=f"default {Config.finder_steps}")
    parser.add_argument("--repeats", type=int, help=f"sweeps per seed, their raw losses averaged (default "
                                                     f"{Config.finder_repeats})")
    parser.add_argument("--subset", type=int, help="sweep the first N training images (a quick check)")
    parser.add_argument("--batch-size", type=int, default=Config.batch_size)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-label", help="how the records name the data (default: where it was read)")
    args = parser.parse_args(argv)
    sweep = sweep_settings(parser, args)
    args.out.mkdir(parents=True, exist_ok=True)
    device = devices.get_device(args.device)
    images = cifar.load_cifar10(args.data_dir)
    commit = git_commit()
    for seed in parse_seeds(args.seeds):
        path = args.out / f"seed{seed}.json"
        if path.exists():
            continue
        cfg = Config(seed=seed, data_dir=args.data_dir, finder_start_lr=sweep["start_lr"],
                     finder_end_lr=sweep["end_lr"], finder_steps=sweep["steps"], finder_repeats=sweep["repeats"],
                     subset=args.subset, batch_size=args.batch_size)
        record = sweep_seed(cfg, images, device)
        record.update(variant=args.variant, device=devices.device_name(device),
                      data=args.data_label or images["source"], commit=commit,
                      sweep={**asdict(lr.SweepPlan.of(cfg)), "subset": args.subset, "batch_size": args.batch_size})
        write_json(path, record)
        print(f"seed {seed}: LR_max {record['lr_max']:.3e}, LR_min {record['lr_min']:.3e}, "
              f"{len(record['lrs'])} steps, {record['seconds']:.0f} s", flush=True)
    summary = summarise(args.out)
    write_json(args.out / "summary.json", summary)
    print(f"LR_max max/min {summary['lr_max_spread']:.2f}, LR_min max/min {summary['lr_min_spread']:.2f} "
          f"over {len(summary['seeds'])} seeds")


if __name__ == "__main__":
    main()
