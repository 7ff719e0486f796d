"""The learning rates: the LR range test (torch-lr-finder), the rule that reads LR_max and LR_min
off its curve, the choice between a checkpoint's, the config's and the finder's LRs, and the
One Cycle schedule."""
import contextlib
import functools
import io
import sys
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from s10.config import Config
from s10.device import make_grad_scaler

with warnings.catch_warnings():
    # torch-lr-finder imports tqdm.autonotebook, which warns that it is experimental
    warnings.simplefilter("ignore")
    from torch_lr_finder import LRFinder, lr_finder

FALLBACK_LR_MAX = 1e-3  # Adam's usual default, used only when the sweep gives no usable curve
FALLBACK_RATIO = 100    # LR_max / LR_min when the curve gives no separate LR_min


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


def lr_range_test(model, optimizer, criterion, loader, device, start_lr=Config.finder_start_lr,
                  end_lr=Config.finder_end_lr, steps=Config.finder_steps, amp_dtype=None):
    """Exponential LR sweep with torch-lr-finder on `loader` (training data only), under the
    same mixed precision (`amp_dtype`) as training.

    Returns {"lrs": [...], "losses": [...]} (losses smoothed by the finder). The model and
    optimizer are restored to their state before the sweep.
    """
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
            finder.range_test(batches, start_lr=start_lr, end_lr=end_lr, num_iter=steps,
                              step_mode="exp", diverge_th=5)
    finally:
        finder.reset()
    return {"lrs": list(map(float, finder.history["lr"])), "losses": list(map(float, finder.history["loss"]))}


def suggest_lrs(lrs, losses, drop=0.1, lr_max_factor=1.0):
    """(lr_max, lr_min, notes) read off a range test's smoothed loss curve.

    LR_max: `lr_max_factor` x the LR at the lowest loss. The default, 1, takes the lowest point
            itself; 0.1 is fastai's more cautious rule, where the loss still falls steeply.
    LR_min: the first LR at which the loss has covered `drop` (10%) of its fall from the start
            of the sweep to its lowest point: where training starts to make progress.
    Fallbacks, each named in `notes`: no usable curve (diverged at once, too few finite points)
    gives LR_max = 1e-3; an LR_min not below LR_max gives LR_min = LR_max / 100.
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    finite = np.isfinite(losses)
    end = len(losses) if finite.all() else int(np.argmin(finite))  # stop at the first NaN/inf
    lrs, losses, notes = lrs[:end], losses[:end], []
    best = int(np.argmin(losses)) if end else 0
    if end < 5 or best == 0:
        notes.append(f"the LR sweep gave no usable curve ({end} finite points, lowest loss at "
                     f"step {best}): falling back to LR_max = {FALLBACK_LR_MAX:g}")
        lr_max = FALLBACK_LR_MAX
        return lr_max, lr_max / FALLBACK_RATIO, notes
    lr_max = lrs[best] * lr_max_factor
    target = losses[0] - drop * (losses[0] - losses[best])
    lr_min = lrs[int(np.argmax(losses[:best + 1] <= target))]
    if lr_min >= lr_max:
        notes.append(f"the curve's LR_min ({lr_min:.2e}) is not below LR_max ({lr_max:.2e}): "
                     f"using LR_max / {FALLBACK_RATIO}")
        lr_min = lr_max / FALLBACK_RATIO
    return float(lr_max), float(lr_min), notes


def choose_lrs(cfg, recipe, loader, checkpoint=None, log=print):
    """(lr_max, lr_min, finder record or None): from a checkpoint being resumed, else from the
    config when it gives both, else from an LR range test of the recipe (model, optimizer, loss,
    precision) on `loader` (training data)."""
    if checkpoint is not None:
        record = checkpoint["record"]
        return record.lr_max, record.lr_min, record.lr_finder
    if cfg.lr_max is not None:
        return cfg.lr_max, cfg.lr_min, None
    log(f"LR finder: {cfg.finder_steps} steps from {cfg.finder_start_lr:g} to {cfg.finder_end_lr:g}")
    sweep = lr_range_test(recipe.model, recipe.optimizer, recipe.criterion, loader, recipe.device,
                          cfg.finder_start_lr, cfg.finder_end_lr, cfg.finder_steps, amp_dtype=recipe.amp_dtype)
    lr_max, lr_min, notes = suggest_lrs(sweep["lrs"], sweep["losses"], lr_max_factor=cfg.lr_max_factor)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    log(f"LR_max = {lr_max:.3e}, LR_min = {lr_min:.3e}")
    return lr_max, lr_min, {**sweep, "notes": notes}


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
