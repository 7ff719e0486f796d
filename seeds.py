"""Summarise the seed runs in each folder (mean, std, min, max; plain and flip TTA).

    python seeds.py DIR [DIR ...]

Writes DIR/summary.json; the summary itself is s10.seeds'.
"""
import argparse
import sys
from pathlib import Path

from s10.seeds import SUMMARY, format_summary, run_folders, write_summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path,
                        help="a folder of seed run folders (each with a metrics.json)")
    args = parser.parse_args(argv)
    for out in args.dirs:
        run_dirs = run_folders(out)
        if not run_dirs:
            print(f"error: {out} holds no run folders (no */metrics.json)", file=sys.stderr)
            return 2
        print(f"{out}:\n{format_summary(write_summary(out, run_dirs))}\nsummary in {out / SUMMARY}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
