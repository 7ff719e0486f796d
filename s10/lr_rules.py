"""The rules that read LR_max and LR_min off an LR range test's loss curve (docs/lr_finder.md):
the finder's own smoothed minimum, and rules that read the raw losses without its lag (a Gaussian
kernel over log10(LR), the point where the loss is halfway down its fall, the start of the cliff
where it blows up). RULES names each, for Config.finder_rule; a name ending in "-i" reads its
smoothed curve between the sweep's steps (docs/lr_finder.md), for sweeps whose steps are coarse."""
import numpy as np

FALLBACK_LR_MAX = 1e-3  # Adam's usual default, used only when the sweep gives no usable curve
FALLBACK_RATIO = 100    # LR_max / LR_min when the curve gives no separate LR_min

FINDER_SMOOTHING = 0.05  # torch-lr-finder's smooth_f, which lr.lr_range_test keeps
START_STEPS = 10         # the loss before training moves it: the median of the first steps...
START_DECADES = 1.0      # ...or, read between steps, of those within the sweep's first decade of LR
READ_EVERY = 0.01        # decades between the LRs at which a curve read between steps is read


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


def average_sweeps(sweeps):
    """(lrs, mean raw losses) of several sweeps over the same LRs, cut to the shortest: each
    sweep is {"lrs": [...], "raw_losses": [...]}."""
    steps = min(len(s["raw_losses"]) for s in sweeps)
    return (np.asarray(sweeps[0]["lrs"][:steps], dtype=float),
            np.mean([np.asarray(s["raw_losses"][:steps], dtype=float) for s in sweeps], axis=0))


def smooth_at(lrs, losses, bandwidth, at):
    """The losses' Gaussian-weighted mean around each LR of `at`, `bandwidth` decades of LR wide:
    symmetric, so a feature stays at its LR (an exponential moving average drags it later)."""
    x, at = np.log10(np.asarray(lrs, dtype=float)), np.log10(np.asarray(at, dtype=float))
    weights = np.exp(-0.5 * ((at[:, None] - x[None, :]) / bandwidth) ** 2)
    return weights @ np.asarray(losses, dtype=float) / weights.sum(axis=1)


def smooth_over_log_lr(lrs, losses, bandwidth):
    """Each loss replaced by the Gaussian-weighted mean of its neighbours (smooth_at its own LR)."""
    return smooth_at(lrs, losses, bandwidth, lrs)


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


def start_steps(lrs, between_steps):
    """How many first steps give the sweep's starting loss: START_STEPS, or (read between steps)
    those within START_DECADES of its first LR, so that a coarse sweep's start stays before its fall."""
    if not between_steps:
        return START_STEPS
    x = np.log10(np.asarray(lrs, dtype=float))
    return int(np.sum(x <= x[0] + START_DECADES + 1e-9)) if len(x) else 0


def reading_lrs(lrs, between_steps):
    """Where the smoothed curve is read: at the sweep's own LRs, or (between steps) every
    READ_EVERY decades from its first LR to its last, so that no pick is snapped to a step."""
    if not between_steps:
        return lrs
    first, last = np.log10(lrs[0]), np.log10(lrs[-1])
    return np.logspace(first, last, int(round((last - first) / READ_EVERY)) + 1)


def read_curve(lrs, raw_losses, bandwidth=0.4, rise=1.3, lr_max_at="cliff", min_divisor=3.0,
               lr_max_factor=1.0, between_steps=False):
    """(lr_max, lr_min, notes, reading) from a sweep's raw losses.

    The curve is smoothed over `bandwidth` decades and read at the sweep's LRs, or with
    `between_steps` every READ_EVERY decades (see reading_lrs). Its start is the median raw loss
    of the first steps (start_steps), its bottom the smoothed minimum.
    LR_max: "cliff", the first LR past the bottom where the smoothed loss is `rise` x the bottom
            (where it starts to blow up); or "min", the bottom itself.
    LR_min: the LR where the smoothed loss is halfway from its start to its bottom (where it falls
            fastest), divided by `min_divisor`.
    Crossings are interpolated linearly in log10(LR) between the two LRs read around them.
    `lr_max_factor` scales LR_max, as in suggest_lrs.
    Fallbacks, each named in `notes`: no fall to read gives LR_max = FALLBACK_LR_MAX; a sweep
    that ends before the cliff gives the bottom as LR_max; an LR_min not below LR_max gives
    LR_max / FALLBACK_RATIO.
    `reading` holds what the rule read, for the plot: the smoothed curve at the sweep's LRs and
    the LRs it marked.
    """
    lrs, raw = _finite_prefix(lrs, raw_losses)
    first = start_steps(lrs, between_steps)
    if first < 3 or len(raw) < 2 * first:
        return _no_curve(f"the LR sweep gave {len(raw)} finite losses, too few to read")
    at = reading_lrs(lrs, between_steps)
    smoothed = smooth_at(lrs, raw, bandwidth, at)
    start, bottom_at = float(np.median(raw[:first])), int(np.argmin(smoothed))
    bottom, bottom_lr = float(smoothed[bottom_at]), float(at[bottom_at])
    if bottom_lr < lrs[first] or bottom >= start:
        return _no_curve(f"the LR sweep's loss does not fall past its start (lowest at {bottom_lr:.2e})")
    notes = []
    halfway = crossing(at[:bottom_at + 1], smoothed[:bottom_at + 1], (start + bottom) / 2, falling=True)
    if halfway is None:  # already halfway down at the first step: the sweep started too high
        return _no_curve("the LR sweep's loss is halfway down at its first step")
    cliff = crossing(at[bottom_at:], smoothed[bottom_at:], rise * bottom, falling=False)
    lr_max = cliff if lr_max_at == "cliff" else bottom_lr
    if lr_max is None:
        notes.append(f"the LR sweep ended before its loss rose {rise:g}x above its lowest: "
                     f"LR_max is the lowest point, {bottom_lr:.2e}")
        lr_max = bottom_lr
    lr_max *= lr_max_factor
    lr_min = halfway / min_divisor
    if lr_min >= lr_max:
        notes.append(f"the curve's LR_min ({lr_min:.2e}) is not below LR_max ({lr_max:.2e}): "
                     f"using LR_max / {FALLBACK_RATIO}")
        lr_min = lr_max / FALLBACK_RATIO
    reading = {"smoothed": smooth_over_log_lr(lrs, raw, bandwidth).tolist(), "start": start, "bottom": bottom,
               "bottom_lr": bottom_lr, "halfway_lr": halfway, "cliff_lr": cliff}
    return lr_max, lr_min, notes, reading


def _no_curve(why):
    note = f"{why}: falling back to LR_max = {FALLBACK_LR_MAX:g}"
    return FALLBACK_LR_MAX, FALLBACK_LR_MAX / FALLBACK_RATIO, [note], None


def finder_minimum(sweep, lr_max_factor=1.0):
    """The rule of torch-lr-finder's own curve: its smoothed losses read by suggest_lrs."""
    lr_max, lr_min, notes = suggest_lrs(sweep["lrs"], sweep["losses"], lr_max_factor=lr_max_factor)
    return lr_max, lr_min, notes, None


def lag_free(**settings):
    """A rule that reads the sweep's raw losses with read_curve and these settings."""
    def rule(sweep, lr_max_factor=1.0):
        return read_curve(sweep["lrs"], sweep["raw_losses"], lr_max_factor=lr_max_factor, **settings)
    return rule


# the lag-free candidates docs/lr_finder.md measures: name -> read_curve's settings (fixed there
# before the 10-seed sweeps were read)
LAG_FREE = {
    "cliff1.3-b0.4": {"bandwidth": 0.4, "rise": 1.3},
    "cliff1.2-b0.4": {"bandwidth": 0.4, "rise": 1.2},
    "min-b0.4": {"bandwidth": 0.4, "lr_max_at": "min"},
    "cliff1.3-b0.25": {"bandwidth": 0.25, "rise": 1.3},
    "cliff1.2-b0.25": {"bandwidth": 0.25, "rise": 1.2},
    "min-b0.25": {"bandwidth": 0.25, "lr_max_at": "min"},
}
# name -> rule(sweep, lr_max_factor) -> (lr_max, lr_min, notes, reading); a sweep is lr_range_test's
# {"lrs", "losses" (the finder's smoothing), "raw_losses"}. Config.finder_rule's choices. Each
# lag-free rule comes twice: read at the sweep's steps, and read between them ("-i", fixed in
# docs/lr_finder.md before any averaged sweep was read)
RULES = {
    "ema-min": finder_minimum,
    **{name: lag_free(**settings) for name, settings in LAG_FREE.items()},
    **{f"{name}-i": lag_free(between_steps=True, **settings) for name, settings in LAG_FREE.items()},
}
