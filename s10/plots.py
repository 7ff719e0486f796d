"""The figures: image grids, the LR range test, the One Cycle schedule, the history and the
confusion matrix. Each function takes plain data and returns a matplotlib Figure; the caller
shows or saves it. Nothing here trains."""
import dataclasses
import math

import numpy as np
import torch
from matplotlib.figure import Figure

from s10.augment import denormalize, train_transforms
from s10.cifar import CLASSES


@dataclasses.dataclass(frozen=True)
class FigureFiles:
    """The file name of each figure a run draws in its folder: the notebook, train.py and
    s10.publish read them here (`FIGURE.history`, `figure_files()`)."""
    raw_samples: str = "raw_samples.png"
    augmented_samples: str = "augmented_samples.png"
    lr_finder: str = "lr_finder.png"  # only a run whose LRs came from a sweep has it
    history: str = "history.png"
    lr_schedule: str = "lr_schedule.png"
    misclassified: str = "misclassified.png"
    confusion_matrix: str = "confusion_matrix.png"


FIGURE = FigureFiles()


def figure_files():
    """Every figure's file name, in the order the notebook draws them."""
    return tuple(dataclasses.astuple(FIGURE))


def image_grid(images, titles, ncols=8, size=1.6):
    """A figure of HWC images (uint8 or float in [0, 1]) with a title above each."""
    nrows = max(1, math.ceil(len(images) / ncols))
    fig = Figure(figsize=(ncols * size, nrows * (size + 0.3)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
    return fig


def augmented_samples(images, mean, std, count=32, seed=0, cutout_p=1.0):
    """The first `count` uint8 images after the albumentations training augmentation, as
    images in [0, 1] for plotting."""
    transform = train_transforms(mean, std, cutout_p)
    transform.set_random_seed(seed)
    tensors = [transform(image=image)["image"] for image in images[:count]]
    return denormalize(torch.stack(tensors), mean, std)


def plot_samples(images, labels, classes=CLASSES, ncols=8):
    """A grid of images titled with their class names."""
    return image_grid(images, [classes[label] for label in labels], ncols)


def plot_misclassified(images, targets, preds, classes=CLASSES, ncols=8):
    """A grid of misclassified images titled 'true -> predicted'."""
    titles = [f"{classes[t]} -> {classes[p]}" for t, p in zip(targets, preds)]
    return image_grid(images, titles, ncols, size=1.8)


def plot_lr_finder(lrs, losses, lr_max, lr_min):
    """The range test's loss against LR (log scale), with LR_max and LR_min marked."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(lrs, losses)
    ax.axvline(lr_max, color="tab:red", linestyle="--", label=f"LR_max = {lr_max:.2e}")
    ax.axvline(lr_min, color="tab:green", linestyle="--", label=f"LR_min = {lr_min:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)",
           title="LR range test (Adam)")
    finite = [v for v in losses if math.isfinite(v)]
    if finite:  # keep the diverging tail from squashing the useful part of the curve
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.05)
    ax.legend()
    return fig


def plot_history(epochs, eval_set):
    """Training and evaluation loss and accuracy per epoch, from a RunRecord's epochs;
    `eval_set` ("test" or "validation") names the evaluation curve."""
    x = [e["epoch"] for e in epochs]
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "acc", "accuracy (%)")):
        ax.plot(x, [e[f"train_{key}"] for e in epochs], marker="o", label="train")
        ax.plot(x, [e["eval"][key] for e in epochs], marker="o", label=eval_set)
        ax.set(xlabel="epoch", ylabel=label, title=f"{label.split()[0].capitalize()} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_lr_schedule(lrs, steps_per_epoch):
    """The LR of every training step, against epochs."""
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(len(lrs)) / steps_per_epoch, lrs)
    ax.set(xlabel="epoch", ylabel="learning rate", title="One Cycle schedule (per step)")
    ax.grid(alpha=0.3)
    return fig


def plot_confusion_matrix(counts, eval_set, classes=CLASSES):
    """The confusion matrix on the evaluation set (`eval_set`: "test" or "validation") as a heat
    map with counts."""
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted",
           ylabel="true", title=f"Confusion matrix ({eval_set} set)")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    threshold = counts.max() / 2
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > threshold else "black")
    return fig
