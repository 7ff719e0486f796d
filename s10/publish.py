"""Make a finished full run the repository's record: copy its metrics.json and figures to assets/,
and with --notebook store the notebook's outputs from the copy papermill executed in RUN_DIR.

    python -m s10.publish RUN_DIR [--to assets] [--notebook]

The notebook and train.py write only to their run folder; this is the one step that writes the
README's record and S10.ipynb's stored outputs. It refuses a run that has not finished, one trained or evaluated on a subset (a
quick run, or the notebook's smoke mode) and one evaluated on a validation split.
"""
import argparse
import shutil
import sys
from pathlib import Path

from s10.config import Config, ConfigError, S10Error, eval_set
from s10.plots import figure_files
from s10.record import RECORD, read_record
from s10.stored_notebook import store_notebook

EXECUTED = "S10.ipynb"  # papermill's executed copy of the notebook, in its run folder


def publish(run_dir, assets="assets", notebook=None):
    """Copy run_dir's metrics.json and figures into `assets`; returns the names copied. With
    `notebook` (the repository's S10.ipynb), store in it the outputs of run_dir/S10.ipynb first.
    Raises ConfigError, copying nothing, for a run that is missing or unfinished, trained or
    evaluated on a subset, or evaluated on a validation split, or a notebook store_notebook refuses."""
    run_dir, assets = Path(run_dir), Path(assets)
    record = read_record(run_dir)
    if record is None:
        raise ConfigError(f"{run_dir} holds no {RECORD}: give the folder of a finished run")
    if not record.complete:
        raise ConfigError(f"{run_dir} has not finished ({len(record.epochs)} of {record.config['epochs']} "
                          "epochs): finish it first (train.py --resume, or run the notebook again)")
    cfg = Config.from_dict(record.config)
    if cfg.subset is not None:
        raise ConfigError(f"{run_dir} trained on {cfg.subset} images, a quick or smoke run: "
                          "only a run on the full training set becomes the record")
    if cfg.val_split:
        raise ConfigError(f"{run_dir} was evaluated on a validation split ({cfg.val_split} held-out training "
                          "images): only a run evaluated on the test set becomes the record")
    if cfg.eval_subset is not None:
        raise ConfigError(f"{run_dir} was evaluated on {cfg.eval_subset} {eval_set(cfg)} images, a quick or "
                          "smoke run: only a run evaluated on every test image becomes the record")
    if notebook is not None:
        if not (run_dir / EXECUTED).exists():
            raise ConfigError(f"{run_dir} holds no {EXECUTED}: run the notebook with papermill into it "
                              f"(papermill S10.ipynb {run_dir / EXECUTED})")
        store_notebook(run_dir / EXECUTED, record, f"{assets.as_posix()}/{RECORD}", notebook)
    names = [RECORD] + [name for name in figure_files() if (run_dir / name).exists()]
    assets.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(run_dir / name, assets / name)
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder (train.py --out, or the notebook's)")
    parser.add_argument("--to", type=Path, default=Path("assets"), help="default: assets")
    parser.add_argument("--notebook", action="store_true",
                        help=f"also store the outputs of RUN_DIR/{EXECUTED} in S10.ipynb")
    args = parser.parse_args(argv)
    try:
        names = publish(args.run_dir, args.to, Path("S10.ipynb") if args.notebook else None)
    except S10Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"copied to {args.to}: {', '.join(names)}" + ("; stored the notebook's outputs in S10.ipynb" if args.notebook else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
