"""A short run on the CIFAR-10 stand-in, skipped where it is absent."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s10.cifar import channel_stats, load_cifar10
from s10.config import Config
from s10.data import make_loaders
from s10.device import seed_everything
from s10.recipe import Recipe
from s10.runs import Run, run_record, train_epochs
from tests.conftest import ROOT, SHARED_DATA


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory):
    """$S10_STAND_IN (built by .ci/run), else the stand-in built by s10.cifar_jpeg from the JPEG
    archive CI keeps beside the checkout, else skip."""
    env = os.environ.get("S10_STAND_IN")
    if env and (Path(env) / "cifar-10-batches-py").is_dir():
        return Path(env)
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        pytest.skip("no stand-in data: $S10_STAND_IN is not set and there is no JPEG archive to build it")
    out = tmp_path_factory.mktemp("stand_in")
    subprocess.run([sys.executable, "-m", "s10.cifar_jpeg", str(SHARED_DATA / "cifar10-jpeg.tar.gz"), str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    return out


def test_stand_in_reads_as_the_full_dataset(stand_in):
    data = load_cifar10(stand_in, download=False)
    assert data["train_x"].shape == (50_000, 32, 32, 3) and data["test_x"].shape == (10_000, 32, 32, 3)
    assert sorted(set(data["train_y"].tolist())) == list(range(10))
    mean, _ = channel_stats(data["train_x"])
    assert all(0.4 < m < 0.55 for m in mean)  # CIFAR-10's channel means are about 0.49, 0.48, 0.45


def test_short_real_run_learns_well_above_chance(stand_in, tmp_path):
    # 3 epochs of 16 steps of 64 images in float32: short enough for the suite, long enough to learn
    cfg = Config(subset=1024, eval_subset=1000, batch_size=64, epochs=3, lr_max=2e-3, lr_min=2e-5, workers=0,
                 precision="fp32", tta=False, channels_last=False)
    seed_everything(0)
    data = load_cifar10(stand_in, download=False)
    train_loader, eval_loader, _, _ = make_loaders(data, cfg, torch.device("cpu"))
    recipe = Recipe(cfg, torch.device("cpu"))
    recipe.schedule(cfg.lr_max, cfg.lr_min, len(train_loader))
    run = Run(tmp_path, recipe, run_record(cfg, recipe, data, *channel_stats(data["train_x"][:1024]), None, "test"),
              log=lambda line: None)
    record = train_epochs(run, recipe, (train_loader, eval_loader), log=lambda line: None)
    print(record.epochs)
    assert [e["eval"]["total"] for e in record.epochs] == [1000] * 3
    assert record.epochs[-1]["eval"]["acc"] > 25  # chance is 10%
