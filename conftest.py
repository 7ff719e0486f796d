"""pytest set-up for the notebook: `pytest --nbval S10.ipynb` runs it in its small mode.

The kernel nbval starts inherits these variables: S10_SMOKE=1, data from $S10_STAND_IN (CI's
CIFAR-10 stand-in) or else a small generated copy in the official layout, and a temporary run
folder (which holds the figures too), so a test run never touches runs/ or the committed assets/.
"""
import os
import tempfile
from pathlib import Path


def pytest_configure(config):
    os.environ["S10_SMOKE"] = "1"
    scratch = Path(tempfile.mkdtemp(prefix="s10-notebook-"))
    os.environ["S10_RUN_DIR"] = str(scratch / "run")
    stand_in = os.environ.get("S10_STAND_IN")
    if stand_in and (Path(stand_in) / "cifar-10-batches-py").is_dir():
        os.environ["S10_DATA"] = stand_in
    else:
        from tests.conftest import write_cifar_folder
        # 1,100 training and 1,000 test images: the small mode uses the first 1,024 and 1,000
        os.environ["S10_DATA"] = str(write_cifar_folder(scratch / "data", per_batch=220, test=1000))
