"""Throughput of the training step on this device, bare and inside the full loop.

    python bench.py                 # the default device (CUDA, else MPS, else CPU)
    python bench.py --device cpu --batches 10
    python bench.py --device cuda --precision fp16 --compile   # a T4's precision; compiled too

Measures, in one run: the bare training step (model + Adam on one synthetic batch already on the
device) with and without channels_last, and in float32 when the chosen precision is lower;
the data pipeline alone for each loader; the full loop (engine.train_one_epoch: loader,
augmentation, transfer, step, scheduler, progress bar) for each loader; FLOP/s against the
device's peak where it is known; with --compile (CUDA only), the bare step and the full loop
again under torch.compile. Images are random uint8 arrays of CIFAR-10's shape, so no dataset is
needed. Ends with `full loop / bare step: R` for the default loader. On a CPU keep --batches
small: one batch of 512 takes seconds.
"""
import argparse
import sys
import time

import numpy as np
import torch

from s10 import engine
from s10.config import PRECISIONS, Config, S10Error
from s10.data import make_loaders, resolve_loader
from s10.device import autocast, device_name, get_device, precision_name
from s10.lr_rules import FALLBACK_LR_MAX, FALLBACK_RATIO
from s10.recipe import Recipe, build_model

# dense bf16/fp16 tensor-core peaks from the vendors' data sheets, in FLOP/s
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12,
              "V100": 125e12, "A10G": 125e12}


class Take:
    """The first `count` batches of a loader, with a length, so tqdm shows a total."""

    def __init__(self, loader, count):
        self.loader, self.count = loader, count

    def __len__(self):
        return min(self.count, len(self.loader))

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if index == self.count:
                return
            yield batch


def timed(fn, repeats=1, warmup=None):
    """Seconds per call of fn(), after one call of warmup (default: fn), synchronising accelerators."""
    (warmup or fn)()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def training_recipe(cfg, device, batches):
    """The config's recipe, scheduled for `batches` steps (the LRs do not change the timing)."""
    recipe = Recipe(cfg, device)
    recipe.schedule(FALLBACK_LR_MAX, FALLBACK_LR_MAX / FALLBACK_RATIO, batches + 2)
    return recipe


def bare_step(cfg, device, batches):
    """Images/s of forward + backward + Adam on one batch that is already on the device."""
    recipe = training_recipe(cfg, device, batches)
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    images = torch.randn(cfg.batch_size, 3, 32, 32, device=device).to(memory_format=memory)
    targets = torch.randint(0, 10, (cfg.batch_size,), device=device)

    def step():
        recipe.optimizer.zero_grad(set_to_none=True)
        with autocast(device, recipe.amp_dtype):
            loss = recipe.criterion(recipe.trained_model(images), targets)
        recipe.scaler.scale(loss).backward()
        recipe.scaler.step(recipe.optimizer)
        recipe.scaler.update()
    return cfg.batch_size / timed(step, batches)


def flops_per_image(cfg):
    """Forward + backward FLOPs of one image, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode
    model = build_model(cfg, torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(2, 3, 32, 32)).sum().backward()
    return counter.get_total_flops() / 2


def loaders_for(kind, cfg, device, batches):
    data = {"train_x": np.random.default_rng(0).integers(0, 256, (cfg.batch_size * (batches + 1), 32, 32, 3),
                                                         dtype=np.uint8),
            "train_y": np.random.default_rng(1).integers(0, 10, cfg.batch_size * (batches + 1)),
            "test_x": np.zeros((1, 32, 32, 3), np.uint8), "test_y": np.zeros(1, np.int64)}
    train_loader, _, _, _ = make_loaders(data, Config(**{**cfg.to_dict(), "loader": kind}), device)
    return train_loader


def pipeline_only(loader, batches, device):
    """Images/s of the loader alone: augmentation and transfer to the device, no model."""
    def one_pass():
        for images, _ in Take(loader, batches):
            images.to(device, non_blocking=True)
    return batches * loader.batch_size / timed(one_pass)


def full_loop(cfg, loader, device, batches):
    """Images/s of engine.train_one_epoch over `batches` batches of `loader`."""
    recipe = training_recipe(cfg, device, batches * 2 + 2)

    def run(count):
        return lambda: engine.train_one_epoch(recipe.trained_model, Take(loader, count), recipe.optimizer, recipe.scheduler,
                                              recipe.criterion, device, amp_dtype=recipe.amp_dtype,
                                              scaler=recipe.scaler)
    return batches * loader.batch_size / timed(run(batches), warmup=run(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, help="batches per measurement (default: 10 on CPU, 50 else)")
    parser.add_argument("--batch-size", type=int, default=Config.batch_size)
    parser.add_argument("--precision", choices=PRECISIONS, default=Config.precision,
                        help="as train.py's --precision (default: auto)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure the bare step and the full loop under torch.compile (CUDA only)")
    args = parser.parse_args(argv)
    cfg = Config(device=args.device, batch_size=args.batch_size, precision=args.precision)
    device = get_device(cfg.device)
    batches = args.batches or (10 if device.type == "cpu" else 50)
    dtype = Recipe(cfg, device).amp_dtype
    print(f"device: {device_name(device)}; torch {torch.__version__}; batch {cfg.batch_size}; "
          f"{batches} batches per measurement; precision {precision_name(dtype)}")

    bare = bare_step(cfg, device, batches)
    bare_nchw = bare_step(Config(**{**cfg.to_dict(), "channels_last": False}), device, batches)
    print(f"bare step, channels_last: {bare:9.1f} img/s")
    print(f"bare step, NCHW:          {bare_nchw:9.1f} img/s   (channels_last / NCHW: {bare / bare_nchw:.2f})")
    if dtype is not None:
        fp32 = bare_step(Config(**{**cfg.to_dict(), "precision": "fp32"}), device, batches)
        print(f"bare step, float32:       {fp32:9.1f} img/s   ({precision_name(dtype)} / float32: "
              f"{bare / fp32:.2f})")
    flops = flops_per_image(cfg)
    peak = next((v for k, v in PEAK_FLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)), None)
    achieved = flops * bare
    print(f"FLOPs per image (fwd + bwd): {flops / 1e9:.2f} G; bare step: {achieved / 1e12:.3f} TFLOP/s"
          + (f" = {achieved / peak:.1%} of the {peak / 1e12:.0f} TFLOP/s peak" if peak else " (device peak not known)"))

    default = resolve_loader(cfg, device)
    ratios = {}
    for kind in ("albumentations", "device"):
        loader = loaders_for(kind, cfg, device, batches)
        pipeline = pipeline_only(loader, batches, device)
        loop = full_loop(cfg, loader, device, batches)
        ratios[kind] = loop / bare
        print(f"{kind:15} loader: pipeline alone {pipeline:10.1f} img/s; full loop {loop:9.1f} img/s"
              f" = {ratios[kind]:.3f} of the bare step" + ("  (default)" if kind == default else ""))
    if args.compile:
        compiled(cfg, device, batches, bare, loaders_for(default, cfg, device, batches))
    print(f"full loop / bare step: {ratios[default]:.3f}")  # the last line, read by scripts


def compiled(cfg, device, batches, eager_bare, loader):
    """The bare step and the full loop under torch.compile, beside the eager bare step."""
    if device.type != "cuda":
        print(f"torch.compile: not measured; it is used on CUDA only, not on {device.type}")
        return
    cfg = Config(**{**cfg.to_dict(), "compile": True})
    bare = bare_step(cfg, device, batches)
    loop = full_loop(cfg, loader, device, batches)
    print(f"bare step, compiled:      {bare:9.1f} img/s   (compiled / eager: {bare / eager_bare:.2f})")
    print(f"full loop, compiled:      {loop:9.1f} img/s = {loop / bare:.3f} of the compiled bare step")


if __name__ == "__main__":
    try:
        main()
    except S10Error as error:  # a precision the device cannot run: one line, not a traceback
        sys.exit(f"error: {error}")
