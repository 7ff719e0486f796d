"""The learning rates: the LR range test (torch-lr-finder), the choice between a checkpoint's, the
config's and the finder's LRs (read off the sweep by a rule of s10.lr_rules), and the One Cycle
schedule."""
import contextlib
import functools
import io
import sys
import warnings
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from s10.config import Config
from s10.device import make_grad_scaler
from s10.lr_rules import RULES, average_sweeps, finder_smoothing, unsmooth

with warnings.catch_warnings():
    # torch-lr-finder imports tqdm.autonotebook, which warns that it is experimental
    warnings.simplefilter("ignore")
    from torch_lr_finder import LRFinder, lr_finder

@contextlib.contextmanager
def attribute_set(owner, name, value):
    """`owner.name` is `value` inside the block and what it was before after it, however the
    block ends."""
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


@dataclass(frozen=True)
class SweepPlan:
    """What an LR range test sweeps: `steps` LRs spaced exponentially from `start_lr` to
    `end_lr`, `repeats` times from the same weights."""
    start_lr: float = Config.finder_start_lr
    end_lr: float = Config.finder_end_lr
    steps: int = Config.finder_steps
    repeats: int = Config.finder_repeats

    @classmethod
    def of(cls, cfg):
        return cls(cfg.finder_start_lr, cfg.finder_end_lr, cfg.finder_steps, cfg.finder_repeats)


def lr_range_test(model, optimizer, criterion, loader, device, plan=SweepPlan(), amp_dtype=None):
    """Exponential LR sweep with torch-lr-finder on `loader` (training data only), under the
    same mixed precision (`amp_dtype`) as training; with `plan.repeats` > 1, sweeps from the same
    weights, each on its own batches, their raw losses averaged (cut to the shortest).

    Returns {"lrs", "losses" (smoothed as the finder smooths), "raw_losses"}, and with repeats
    "each_sweep", every sweep's own {"lrs", "raw_losses"} (whole, before the cut): how far the
    sweeps of one set of weights differ. The model and optimizer are restored to their state before the
    sweep.
    """
    sweeps = []
    for _ in range(plan.repeats):
        losses_lrs = _one_sweep(model, optimizer, criterion, loader, device, plan, amp_dtype)
        sweeps.append({"lrs": losses_lrs[1], "losses": losses_lrs[0],
                       "raw_losses": unsmooth(losses_lrs[0]).tolist()})
    if plan.repeats == 1:
        return sweeps[0]
    lrs, raw = average_sweeps(sweeps)
    return {"lrs": lrs.tolist(), "losses": finder_smoothing(raw), "raw_losses": raw.tolist(),
            "each_sweep": [{"lrs": s["lrs"], "raw_losses": s["raw_losses"]} for s in sweeps]}


def _one_sweep(model, optimizer, criterion, loader, device, plan, amp_dtype):
    """(smoothed losses, lrs) of one torch-lr-finder range test; the model and optimizer restored."""
    amp = {} if amp_dtype is None else {
        "amp_backend": "torch", "amp_config": {"device_type": device.type, "dtype": amp_dtype},
        "grad_scaler": make_grad_scaler(amp_dtype, device)}
    finder = LRFinder(model, optimizer, criterion, device=device, **amp)
    # the finder takes no progress bar: its module's tqdm becomes a text bar like ours (see
    # engine.train_one_epoch) for the sweep
    text_bar = functools.partial(tqdm, file=sys.stdout, ncols=110, desc="LR sweep")
    try:
        # its hint about its own plot() is silenced: we draw our own
        with attribute_set(lr_finder, "tqdm", text_bar), contextlib.redirect_stdout(io.StringIO()), \
                warnings.catch_warnings():
            # fp16: as in train_one_epoch, a skipped overflowing step makes torch warn that the
            # finder's schedule moved first
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            # range_test takes a DataLoader, or any loader wrapped in its iterator class
            batches = loader if isinstance(loader, DataLoader) else lr_finder.TrainDataLoaderIter(loader)
            finder.range_test(batches, start_lr=plan.start_lr, end_lr=plan.end_lr, num_iter=plan.steps,
                              step_mode="exp", diverge_th=5)
    finally:
        finder.reset()
    return list(map(float, finder.history["loss"])), list(map(float, finder.history["lr"]))


def choose_lrs(cfg, recipe, loader, checkpoint=None, log=print):
    """(lr_max, lr_min, finder record or None): from a checkpoint being resumed, else from the
    config when it gives both, else from an LR range test of the recipe (model, optimizer, loss,
    precision) on `loader` (training data)."""
    if checkpoint is not None:
        record = checkpoint["record"]
        return record.lr_max, record.lr_min, record.lr_finder
    if cfg.lr_max is not None:
        return cfg.lr_max, cfg.lr_min, None
    times = f", {cfg.finder_repeats} sweeps averaged" if cfg.finder_repeats > 1 else ""
    log(f"LR finder: {cfg.finder_steps} steps from {cfg.finder_start_lr:g} to {cfg.finder_end_lr:g}{times}; "
        f"rule {cfg.finder_rule}")
    sweep = lr_range_test(recipe.model, recipe.optimizer, recipe.criterion, loader, recipe.device,
                          SweepPlan.of(cfg), recipe.amp_dtype)
    lr_max, lr_min, notes, reading = RULES[cfg.finder_rule](sweep, lr_max_factor=cfg.lr_max_factor)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    log(f"LR_max = {lr_max:.3e}, LR_min = {lr_min:.3e}")
    return lr_max, lr_min, {**sweep, "rule": cfg.finder_rule, "notes": notes, "reading": reading}


def make_scheduler(optimizer, lr_max, lr_min, epochs, steps_per_epoch, pct_start):
    """One Cycle without annihilation, stepped every batch.

    Rises linearly from lr_min to lr_max over the first pct_start of the steps (Config's default:
    epoch 5 of 24),
    then falls linearly back to lr_min at the last step: final_div_factor=1 keeps it from
    ever going below lr_min.
    """
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr_max, total_steps=epochs * steps_per_epoch, pct_start=pct_start,
        anneal_strategy="linear", div_factor=lr_max / lr_min, final_div_factor=1.0,
        three_phase=False)
