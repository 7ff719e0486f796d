"""The loops: one shared loss/accuracy Meter, a training epoch, an evaluation, predictions and the
confusion matrix. What they train (model, loss, optimizer, schedule) comes from s10.recipe."""
import math
import sys
import warnings

import numpy as np
import torch
from tqdm import tqdm

from s10.cifar import CLASSES
from s10.config import DivergedError
from s10.device import autocast, make_grad_scaler


class Meter:
    """Running loss and accuracy over batches: the one bookkeeping that training and evaluation share.

    update() keeps a batch's loss and correct count on the device, so it does not wait for the
    device; read() copies the pending batches back at once and adds them up on the host in batch
    order, in float64 as float(loss) * batch size, so the sums are the same to the last bit
    however often it is called.
    """

    def __init__(self):
        self.loss_sum, self.correct, self.count = 0.0, 0, 0
        self.pending = []  # (loss, correct, batch size) per batch not yet read back

    def update(self, loss, logits, targets):
        self.pending.append((loss.detach().float(), (logits.argmax(1) == targets).sum(), targets.size(0)))

    def read(self):
        """Add the pending batches to the sums (this waits for the device); returns their losses."""
        if not self.pending:
            return []
        losses = torch.stack([loss for loss, _, _ in self.pending]).tolist()
        corrects = torch.stack([correct for _, correct, _ in self.pending]).tolist()
        for loss, correct, (_, _, n) in zip(losses, corrects, self.pending):
            self.loss_sum += loss * n
            self.correct += correct
            self.count += n
        self.pending = []
        return losses

    @property
    def loss(self):
        return self.loss_sum / max(self.count, 1)

    @property
    def acc(self):
        return 100.0 * self.correct / max(self.count, 1)


# the training loop reads its numbers back from the device every READ_EVERY steps (for the
# progress bar and the divergence check) and at the end of the epoch: each read waits for the
# device to finish the queued steps, and reading every step left a GPU idle between steps
READ_EVERY = 20


def read_back(meter, bar, epoch, batch_id):
    """Read the meter's pending batches (the last ending at `batch_id`), raise DivergedError on a
    NaN or infinite loss among them, and show the latest numbers in the progress bar."""
    losses = meter.read()
    for step, loss in enumerate(losses, start=batch_id + 2 - len(losses)):
        if not math.isfinite(loss):
            bar.close()
            raise DivergedError(f"the training loss became {loss} at epoch {epoch + 1}, "
                                f"step {step}: lower --lr-max (or let the LR finder pick it)")
    if losses:
        bar.set_description(f"Train: Loss={losses[-1]:.4f} Batch_id={batch_id} Accuracy={meter.acc:.2f}")


def train_one_epoch(model, loader, optimizer, scheduler, criterion, device, epoch=0,
                    amp_dtype=None, scaler=None):
    """One pass over `loader`; returns {"train_loss", "train_acc", "lrs"} (the LR of every step).

    `amp_dtype` (bf16/fp16) runs the forward pass under autocast; `scaler` scales fp16 losses.
    A NaN or infinite loss raises DivergedError at the next read-back (within READ_EVERY steps,
    at the latest at the end of the epoch), before the epoch is returned or checkpointed.
    """
    scaler = scaler or make_grad_scaler(None, device)
    model.train()
    meter, lrs = Meter(), []
    # a text bar on stdout, not tqdm.auto's widget: it reads like the assignment's log and
    # stays readable in the notebook's stored outputs (a widget is stored at 0%)
    bar = tqdm(loader, file=sys.stdout, ncols=110)
    last = len(loader) - 1
    for batch_id, (images, targets) in enumerate(bar):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            logits = model(images)
            loss = criterion(logits, targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with warnings.catch_warnings():
            # fp16: the scaler skips a step whose gradients overflowed (often the first), and
            # torch then warns that the schedule moved first; it is meant to move every batch
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        meter.update(loss, logits.detach(), targets)
        if batch_id % READ_EVERY == 0 or batch_id == last:  # the last: before tqdm closes the bar
            read_back(meter, bar, epoch, batch_id)
    if meter.pending:  # a loader shorter than its len(): nothing is left unread
        read_back(meter, bar, epoch, batch_id)
    return {"train_loss": meter.loss, "train_acc": meter.acc, "lrs": lrs}


@torch.no_grad()
def evaluate(model, loader, criterion, device, tta=False, amp_dtype=None):
    """Loss and accuracy on `loader`, whatever set it holds: {"loss", "acc", "correct", "total"}.

    With `tta`, also "loss_tta" and "acc_tta": logits averaged over the image and its
    horizontal flip.
    """
    model.eval()
    meter, tta_meter = Meter(), Meter()
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(images).float()
            if tta:
                tta_logits = (logits + model(images.flip(3)).float()) / 2
        meter.update(criterion(logits, targets), logits, targets)
        if tta:
            tta_meter.update(criterion(tta_logits, targets), tta_logits, targets)
    meter.read()  # one wait for the device, after the last batch
    tta_meter.read()
    result = {"loss": meter.loss, "acc": meter.acc, "correct": meter.correct, "total": meter.count}
    if tta:
        result.update(loss_tta=tta_meter.loss, acc_tta=tta_meter.acc)
    return result


def format_eval_line(result, eval_set):
    """The assignment's evaluation line, named for the set (config.eval_set):
    'Test set: Average loss: ..., Accuracy: c/n (p%)'."""
    line = (f"{eval_set.capitalize()} set: Average loss: {result['loss']:.4f}, Accuracy: "
            f"{result['correct']}/{result['total']} ({result['acc']:.2f}%)")
    if "acc_tta" in result:
        line += f", with flip TTA: {result['acc_tta']:.2f}%"
    return line


@torch.no_grad()
def predict(model, loader, device, amp_dtype=None):
    """(predictions, targets) as numpy arrays, in the loader's order. In the training precision
    (`amp_dtype`) they agree with the accuracy `evaluate` reported for the same (uncompiled)
    model on a CPU; GPU kernels and torch.compile may move a borderline image or two."""
    model.eval()
    preds, targets = [], []
    for images, labels in loader:
        with autocast(device, amp_dtype):
            preds.append(model(images.to(device)).argmax(1).cpu())
        targets.append(labels.cpu())
    return torch.cat(preds).numpy(), torch.cat(targets).numpy()


def confusion_matrix(preds, targets, num_classes=len(CLASSES)):
    """Counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (targets, preds), 1)
    return counts


def per_class_accuracy(counts):
    """Accuracy (%) of each true class from a confusion matrix."""
    return 100.0 * np.diag(counts) / np.maximum(counts.sum(1), 1)
