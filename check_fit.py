"""How well a run's model fits the images it trained on, beside how it does on its evaluation set.

    python check_fit.py RUN_DIR [--data-dir DIR] [--device auto|cpu|cuda|mps]

Loads the model of RUN_DIR's last checkpoint, evaluates it on the run's own training images
without augmentation (normalised with the run's statistics, eval mode, the run's precision), and
prints that beside the run's last evaluation. A model far better on its training images than on
held-out ones generalises poorly: more regularisation or more data is where to look. One that is
poor on both underfits: a larger LR, more epochs or more capacity. The check is s10.checks'.
"""
import sys

from s10.checks import check_main, format_fit, training_fit

if __name__ == "__main__":
    sys.exit(check_main(__doc__.split("\n")[0], training_fit, format_fit))
