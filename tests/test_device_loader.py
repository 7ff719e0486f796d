"""DeviceLoader against the albumentations pipeline it replaces, on CPU tensors.

Both pipelines augment the same images; every output is matched against the reflect-padded
original (np.pad, outside the code under test) to read back its crop offset, flip and hole,
and both sets of draws must pass the same checks.
"""
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from s10 import augment, recipe
from s10.augment import train_transforms
from s10.config import Config
from s10.engine import evaluate, predict, train_one_epoch
from s10.lr import make_scheduler
from s10.device_loader import DeviceLoader

COUNT, BATCH = 400, 64  # 400 = 6 full batches of 64 and one of 16
CPU = torch.device("cpu")  # the engine's loops take a torch.device, as train.py passes them
# the chi-square statistic a uniform draw exceeds once in 1,000 seeds: 8 and 24 degrees of freedom
CHI2_CRITICAL = {9: 26.12, 25: 51.18}
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
FILL = np.array([round(m * 255) for m in MEAN])  # the hole's pixel, as train_transforms cuts it


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # batches of 64 small images: a second thread saves nothing, and on a machine already busy
    # (a training run) the threads wait on each other: 25x slower, measured on 2 cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_images(seed=0, count=COUNT):
    """uint8 HWC images with structure (a colour, a left-right ramp, noise) and no pixel of the
    fill colour, so that the hole is exactly the pixels that have it."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-60, 60, 32)[None, None, :, None]
    images = rng.integers(0, 256, (count, 1, 1, 3)) + ramp + rng.normal(0, 30, (count, 32, 32, 3))
    images = np.clip(images, 0, 255).astype(np.uint8)
    red = images[..., 0]
    red[red == FILL[0]] += 1  # FILL[0] < 255: nothing wraps
    return images


@pytest.fixture(scope="module")
def images():
    return make_images()


def loader(images, **kwargs):
    """A DeviceLoader whose labels are the image ids 0..N-1, so each output names its source."""
    kwargs = {"batch_size": BATCH, "mean": MEAN, "std": STD, "device": CPU, **kwargs}
    return DeviceLoader(images, np.arange(len(images)), **kwargs)


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, COUNT))


def to_pixels(outputs):
    """Normalised NCHW back to the 0..255 scale; each value must land on a whole number."""
    std, mean = (np.array(STD) * 255)[:, None, None], (np.array(MEAN) * 255)[:, None, None]
    pixels = outputs.double().numpy() * std + mean
    assert np.abs(pixels - np.rint(pixels)).max() < 1e-3, "outputs are not normalised uint8 pixels"
    return np.rint(pixels).astype(np.int64)


def recover_draws(pixels, originals, fill):
    """(crop top, crop left, flipped, hole top, hole left) of each augmented NCHW image."""
    padded = np.pad(originals.transpose(0, 3, 1, 2), ((0, 0), (0, 0), (4, 4), (4, 4)),
                    mode="reflect")  # == cv2.BORDER_REFLECT_101, what train_transforms pads with
    windows = sliding_window_view(padded, (32, 32), axis=(2, 3))  # N, 3, 9, 9, 32, 32
    draws = []
    for image, window in zip(pixels, windows):
        hole = np.all(image == fill[:, None, None], axis=0)
        rows, cols = np.nonzero(hole)
        assert hole.sum() == 64 and np.ptp(rows) == 7 and np.ptp(cols) == 7, "no 8x8 hole"
        matches = []
        for flip in (False, True):  # a flipped output is a crop once flipped back
            crop, ignore = (image[..., ::-1], hole[:, ::-1]) if flip else (image, hole)
            same = np.all((window == crop[:, None, None]) | ignore, axis=(0, 3, 4))  # 9 x 9
            matches += [(dy, dx, flip) for dy, dx in np.argwhere(same)]
        assert len(matches) == 1, f"{len(matches)} crops of the padded image match, not one"
        draws.append((*matches[0], rows.min(), cols.min()))
    return np.array(draws, dtype=np.int64).T


@pytest.fixture(scope="module")
def draws(images):
    """The recovered draws of each pipeline over the same images."""
    transform = train_transforms(MEAN, STD)
    transform.set_random_seed(0)
    reference = torch.stack([transform(image=image)["image"] for image in images])
    outputs, labels = epoch(loader(images, seed=0))
    return {"albumentations": recover_draws(to_pixels(reference), images, FILL),
            # shuffled: each output is matched against the image its label names
            "DeviceLoader": recover_draws(to_pixels(outputs), images[labels.numpy()], FILL)}


def epoch(train):
    """One pass as (all images, all labels)."""
    return [torch.cat(parts) for parts in zip(*train)]


def chi_square_uniform(values, levels):
    counts = np.bincount(values, minlength=levels)
    expected = len(values) / levels
    return ((counts - expected) ** 2 / expected).sum()


PIPELINES = ["albumentations", "DeviceLoader"]  # the reference passing shows the checks are fair


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_crop_offsets_uniform_over_0_to_8(draws, pipeline):
    crop_top, crop_left = draws[pipeline][:2]
    for offsets in (crop_top, crop_left):
        assert set(offsets) == set(range(9))
        assert chi_square_uniform(offsets, 9) < CHI2_CRITICAL[9]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_axes_drawn_independently(draws, pipeline):
    crop_top, crop_left, _, hole_top, hole_left = draws[pipeline]
    # (top, left) on a coarse grid, 3 x 3 for the crop and 5 x 5 for the hole, so that each of
    # its cells expects enough draws: each cell equally likely when the axes are independent
    for top, left, step in ((crop_top, crop_left, 3), (hole_top, hole_left, 5)):
        cells = top // step * step + left // step
        assert chi_square_uniform(cells, step * step) < CHI2_CRITICAL[step * step]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_flip_rate_about_half(draws, pipeline):
    flips = draws[pipeline][2]
    assert 0.4 < flips.mean() < 0.6  # 400 draws: 0.5 +- 4 standard deviations


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_hole_placed_uniformly_inside_the_image(draws, pipeline):
    # recover_draws already checked each hole is one 8x8 square of the rounded mean pixel
    for corner in draws[pipeline][3:]:
        assert set(corner) == set(range(25))
        assert chi_square_uniform(corner, 25) < CHI2_CRITICAL[25]


def test_output_statistics_match_albumentations(images):
    transform = train_transforms(MEAN, STD)
    transform.set_random_seed(1)
    reference = torch.stack([transform(image=image)["image"] for image in images])
    outputs = epoch(loader(images, seed=1))[0]
    # two independent draws of 400 images differ by about 0.01 in both
    for statistic in (torch.mean, torch.std):
        torch.testing.assert_close(statistic(outputs, (0, 2, 3)), statistic(reference, (0, 2, 3)),
                                   atol=0.03, rtol=0)


def test_test_mode_equals_eval_transforms_in_order(images):
    transform = augment.eval_transforms(MEAN, STD)
    expected = torch.stack([transform(image=image)["image"] for image in images])
    outputs, labels = epoch(loader(images, train=False))
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=0)
    assert labels.tolist() == list(range(COUNT))


def test_batches_like_a_dataloader(images):
    train = loader(images)
    batches = list(train)
    assert len(train) == len(batches) == 7 and len(train.dataset) == COUNT
    assert train.batch_size == BATCH
    assert [len(labels) for _, labels in batches] == [64] * 6 + [16]  # last partial batch kept
    first, labels = batches[0]
    assert first.shape == (64, 3, 32, 32) and first.dtype == torch.float32
    assert labels.dtype == torch.int64 and first.device == labels.device == CPU


def test_every_image_once_per_epoch_in_a_new_order(images):
    train = loader(images)
    orders = [torch.cat([labels for _, labels in train]) for _ in range(2)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(COUNT))
    assert orders[0].tolist() != list(range(COUNT)) and not torch.equal(*orders)


def test_same_seed_same_batches_other_seed_other_batches(images):
    first, again, other = (epoch(loader(images, seed=seed)) for seed in (3, 3, 4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_set_seed_makes_the_next_pass_a_function_of_the_seed(images):
    train = loader(images, seed=0)
    epoch(train)  # the generator has moved on...
    train.set_seed(7)  # ...and set_seed puts it where a fresh loader with seed 7 starts
    assert all(torch.equal(a, b) for a, b in zip(epoch(train), epoch(loader(images, seed=7))))


def test_channels_last_changes_layout_not_values(images):
    plain, nhwc = (next(iter(loader(images, channels_last=last)))[0] for last in (False, True))
    assert torch.equal(plain, nhwc) and nhwc.is_contiguous(memory_format=torch.channels_last)


def test_the_engines_loops_use_it_unchanged(images):
    model = tiny_model()
    train, test = loader(images), loader(images, train=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = make_scheduler(optimizer, 1e-2, 1e-3, 1, len(train), Config().pct_start)
    criterion = torch.nn.CrossEntropyLoss()
    result = train_one_epoch(model, train, optimizer, scheduler, criterion, CPU)
    assert len(result["lrs"]) == len(train)
    assert evaluate(model, test, criterion, CPU)["total"] == COUNT
    preds, targets = predict(model, test, CPU)
    assert preds.shape == (COUNT,) and targets.tolist() == list(range(COUNT))


def test_the_recipe_reseeds_it_every_epoch(images, monkeypatch):
    monkeypatch.setattr(recipe, "build_model", lambda cfg, device: tiny_model())

    def run(loader_seed):
        trained = recipe.Recipe(Config(epochs=2, seed=1, precision="fp32"), CPU)
        train = loader(images, seed=loader_seed)
        trained.schedule(1e-2, 1e-3, len(train))
        for epoch in range(2):
            trained.train_epoch(train, epoch)
        return trained.model[1].weight.detach().clone()
    # the run's per-epoch seed, not the loader's own, sets the batches: same weights
    torch.testing.assert_close(run(123), run(456), atol=0, rtol=0)


@pytest.mark.parametrize("bad_images, labels, batch_size, message", [
    (np.zeros((4, 32, 32, 3), np.float32), np.arange(4), 2, "uint8"),
    (np.zeros((4, 3, 32, 32), np.uint8), np.arange(4), 2, "N x H x W x 3"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.arange(3), 2, "one label per image"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.arange(4), 0, "batch_size"),
])
def test_bad_input_is_named(bad_images, labels, batch_size, message):
    with pytest.raises(ValueError, match=message):
        DeviceLoader(bad_images, labels, batch_size, (0.5,) * 3, (0.25,) * 3, "cpu")


@pytest.mark.parametrize("cutout_p", [-0.1, 1.5])
def test_bad_cutout_p_is_named(images, cutout_p):
    with pytest.raises(ValueError, match=r"cutout_p must be in \[0, 1\]"):
        loader(images, cutout_p=cutout_p)
