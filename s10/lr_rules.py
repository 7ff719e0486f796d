"""Rules that read LR_max and LR_min off an LR range test's raw loss curve without the lag of
torch-lr-finder's smoothing: a Gaussian kernel over log10(LR), the point where the loss is
halfway down its fall, and the start of the cliff where it blows up (docs/lr_finder.md)."""
import numpy as np

from s10.lr import FALLBACK_LR_MAX, FALLBACK_RATIO

FINDER_SMOOTHING = 0.05  # torch-lr-finder's smooth_f, which lr.lr_range_test keeps
START_STEPS = 10         # the loss before training moves it: the median of the first steps


def unsmooth(losses, smooth_f=FINDER_SMOOTHING):
    """The raw per-batch losses behind torch-lr-finder's smoothed ones: its first loss is raw,
    each later one is smooth_f * raw + (1 - smooth_f) * the previous smoothed loss."""
    smoothed = np.asarray(losses, dtype=float)
    raw = smoothed.copy()
    raw[1:] = (smoothed[1:] - (1 - smooth_f) * smoothed[:-1]) / smooth_f
    return raw


def finder_smoothing(raw, smooth_f=FINDER_SMOOTHING):
    """torch-lr-finder's exponential smoothing of raw losses, as its history holds them."""
    smoothed = [float(raw[0])]
    for loss in raw[1:]:
        smoothed.append(smooth_f * float(loss) + (1 - smooth_f) * smoothed[-1])
    return smoothed


def average_sweeps(sweeps):
    """(lrs, mean raw losses) of several sweeps over the same LRs, cut to the shortest: each
    sweep is {"lrs": [...], "raw_losses": [...]}."""
    steps = min(len(s["raw_losses"]) for s in sweeps)
    return (np.asarray(sweeps[0]["lrs"][:steps], dtype=float),
            np.mean([np.asarray(s["raw_losses"][:steps], dtype=float) for s in sweeps], axis=0))


def smooth_over_log_lr(lrs, losses, bandwidth):
    """Each loss replaced by a Gaussian-weighted mean of its neighbours, `bandwidth` decades of LR
    wide: symmetric, so a feature stays at its LR (an exponential moving average drags it later)."""
    x = np.log10(np.asarray(lrs, dtype=float))
    weights = np.exp(-0.5 * ((x[:, None] - x[None, :]) / bandwidth) ** 2)
    return weights @ np.asarray(losses, dtype=float) / weights.sum(axis=1)


def crossing(lrs, losses, level, falling):
    """The first LR at which `losses` cross `level` (downwards if `falling`), interpolated in
    log10(LR) between the two steps around it; None if they never do."""
    x, y = np.log10(np.asarray(lrs, dtype=float)), np.asarray(losses, dtype=float)
    beyond = y <= level if falling else y >= level
    hits = np.nonzero(beyond[1:] & ~beyond[:-1])[0]
    if len(hits) == 0:
        return None
    i = hits[0]
    t = (level - y[i]) / (y[i + 1] - y[i])
    return float(10 ** (x[i] + t * (x[i + 1] - x[i])))


def _finite_prefix(lrs, losses):
    losses = np.asarray(losses, dtype=float)
    finite = np.isfinite(losses)
    end = len(losses) if finite.all() else int(np.argmin(finite))  # stop at the first NaN/inf
    return np.asarray(lrs, dtype=float)[:end], losses[:end]


def read_curve(lrs, raw_losses, bandwidth=0.4, rise=1.3, lr_max_at="cliff", min_divisor=3.0):
    """(lr_max, lr_min, notes, reading) from a sweep's raw losses.

    The curve is smoothed over `bandwidth` decades. Its start is the median raw loss of the first
    START_STEPS steps, its bottom the smoothed minimum.
    LR_max: "cliff", the first LR past the bottom where the smoothed loss is `rise` x the bottom
            (where it starts to blow up); or "min", the bottom itself.
    LR_min: the LR where the smoothed loss is halfway from its start to its bottom (where it falls
            fastest), divided by `min_divisor`.
    Fallbacks, each named in `notes`: no fall to read gives LR_max = FALLBACK_LR_MAX; a sweep
    that ends before the cliff gives the bottom as LR_max; an LR_min not below LR_max gives
    LR_max / FALLBACK_RATIO.
    `reading` holds what the rule read, for the plot: the smoothed curve and the LRs it marked.
    """
    lrs, raw = _finite_prefix(lrs, raw_losses)
    if len(raw) < 2 * START_STEPS:
        return _no_curve(f"the LR sweep gave {len(raw)} finite losses, too few to read")
    smoothed = smooth_over_log_lr(lrs, raw, bandwidth)
    start, bottom_step = float(np.median(raw[:START_STEPS])), int(np.argmin(smoothed))
    bottom = float(smoothed[bottom_step])
    if bottom_step < START_STEPS or bottom >= start:
        return _no_curve(f"the LR sweep's loss does not fall (lowest at step {bottom_step})")
    notes = []
    halfway = crossing(lrs[:bottom_step + 1], smoothed[:bottom_step + 1], (start + bottom) / 2, falling=True)
    if halfway is None:  # already halfway down at the first step: the sweep started too high
        return _no_curve("the LR sweep's loss is halfway down at its first step")
    cliff = crossing(lrs[bottom_step:], smoothed[bottom_step:], rise * bottom, falling=False)
    lr_max = cliff if lr_max_at == "cliff" else float(lrs[bottom_step])
    if lr_max is None:
        notes.append(f"the LR sweep ended before its loss rose {rise:g}x above its lowest: "
                     f"LR_max is the lowest point, {lrs[bottom_step]:.2e}")
        lr_max = float(lrs[bottom_step])
    lr_min = halfway / min_divisor
    if lr_min >= lr_max:
        notes.append(f"the curve's LR_min ({lr_min:.2e}) is not below LR_max ({lr_max:.2e}): "
                     f"using LR_max / {FALLBACK_RATIO}")
        lr_min = lr_max / FALLBACK_RATIO
    reading = {"smoothed": smoothed.tolist(), "start": start, "bottom": bottom,
               "bottom_lr": float(lrs[bottom_step]), "halfway_lr": halfway, "cliff_lr": cliff}
    return lr_max, lr_min, notes, reading


def _no_curve(why):
    note = f"{why}: falling back to LR_max = {FALLBACK_LR_MAX:g}"
    return FALLBACK_LR_MAX, FALLBACK_LR_MAX / FALLBACK_RATIO, [note], None
