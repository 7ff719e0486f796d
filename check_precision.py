"""Does the evaluation precision move a run's accuracy? Its final model evaluated in float32
and under bf16 (and fp16) autocast on the run's own evaluation set.

    python check_precision.py RUN_DIR [--data-dir DIR] [--device auto|cpu|cuda|mps]

Training in bf16 and evaluating in bf16 is what the records report; this shows how many
evaluation images change their predicted class when the same weights run in float32 instead.
The check is s10.checks'.
"""
import sys

from s10.checks import check_main, format_precision_check, precision_check

if __name__ == "__main__":
    sys.exit(check_main(__doc__.split("\n\n")[0], precision_check, format_precision_check))
