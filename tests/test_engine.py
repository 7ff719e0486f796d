"""The training and evaluation loops: the ResNet learns the tiny data, flip TTA averages logits, the
numbers read back from the device now and then are those of every batch, a NaN still stops the run."""
import re

import pytest
import torch
from torch import nn

from models.resnet import ResNet
from s10 import engine
from s10.cifar import load_cifar10
from s10.config import Config, DivergedError
from s10.data import make_loaders
from s10.device import seed_everything
from s10.engine import evaluate, format_eval_line, train_one_epoch
from s10.lr import make_scheduler
from s10.recipe import make_optimizer
from tests.conftest import CPU, TinyNet


def test_a_few_training_steps_reduce_the_loss(tiny_data):
    cfg = Config(batch_size=50, lr_max=5e-3, lr_min=5e-5, workers=0)
    seed_everything(0)
    train_loader, _, _, _ = make_loaders(load_cifar10(tiny_data, download=False), cfg, CPU)
    model, criterion = ResNet(), nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.lr_max, cfg.lr_min, 3, len(train_loader), cfg.pct_start)
    results = [train_one_epoch(model, train_loader, optimizer, scheduler, criterion, CPU, epoch)
               for epoch in range(3)]
    assert [len(r["lrs"]) for r in results] == [len(train_loader)] * 3 == [4] * 3
    assert results[-1]["train_loss"] < 0.5 * results[0]["train_loss"]
    assert results[-1]["train_acc"] > 50  # 10 colour classes: chance is 10%


class Linear(nn.Module):
    """A model that is not flip-invariant, so TTA changes its logits."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_tta_averages_the_logits_of_the_image_and_its_flip():
    torch.manual_seed(0)
    model, images, targets = Linear(), torch.randn(20, 3, 4, 4), torch.randint(0, 3, (20,))
    loader = [(images[:12], targets[:12]), (images[12:], targets[12:])]
    result = evaluate(model, loader, nn.CrossEntropyLoss(), CPU, tta=True)
    with torch.no_grad():
        plain = model(images)
        averaged = (plain + model(images.flip(3))) / 2
    assert result["correct"] == int((plain.argmax(1) == targets).sum())
    assert result["acc_tta"] == pytest.approx(100 * float((averaged.argmax(1) == targets).float().mean()))
    assert result["loss_tta"] == pytest.approx(float(nn.functional.cross_entropy(averaged, targets)), rel=1e-5)
    assert "acc_tta" not in evaluate(model, loader, nn.CrossEntropyLoss(), CPU)


def test_the_evaluation_line_names_the_set_it_measured():
    result = {"loss": 0.5, "acc": 75.0, "correct": 3, "total": 4}
    assert format_eval_line(result, "test") == "Test set: Average loss: 0.5000, Accuracy: 3/4 (75.00%)"
    line = format_eval_line({**result, "acc_tta": 100.0}, "validation")
    assert line == "Validation set: Average loss: 0.5000, Accuracy: 3/4 (75.00%), with flip TTA: 100.00%"


@pytest.mark.parametrize("decay_norm_and_bias", [True, False])
def test_weight_decay_can_skip_batchnorm_weights_and_biases(decay_norm_and_bias):
    model = TinyNet()
    cfg = Config(weight_decay=1e-2, decay_norm_and_bias=decay_norm_and_bias, lr_max=0.1, lr_min=0.1)
    optimizer = make_optimizer(model, cfg)
    with torch.no_grad():  # no parameter at zero, where decay would not move it
        for p in model.parameters():
            p.add_(0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    (0 * model(torch.rand(4, 3, 32, 32)).sum()).backward()  # zero gradients: only the decay moves a weight
    optimizer.step()
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    flat = {name for name, p in model.named_parameters() if p.ndim == 1}  # BatchNorm and Linear biases
    assert flat == {"layers.1.weight", "layers.1.bias", "layers.6.bias"}
    assert moved == set(before) if decay_norm_and_bias else moved == set(before) - flat


class Recorded(nn.CrossEntropyLoss):
    """Cross-entropy that notes each batch's loss, correct count and size as it computes them,
    and from step `nan_at` on returns NaN."""

    def __init__(self, nan_at=None):
        super().__init__()
        self.batches, self.nan_at = [], nan_at

    def forward(self, logits, targets):
        loss = super().forward(logits, targets)
        if self.nan_at is not None and len(self.batches) + 1 >= self.nan_at:
            loss = loss * float("nan")
        self.batches.append((loss.item(), int((logits.argmax(1) == targets).sum()), len(targets)))
        return loss


def tiny_epoch(tiny_data, criterion, batch_size=50):
    """train_one_epoch of a TinyNet on the tiny data with `criterion`, seeded."""
    cfg = Config(batch_size=batch_size, lr_max=5e-3, lr_min=5e-5, workers=0)
    seed_everything(0)
    train_loader, _, _, _ = make_loaders(load_cifar10(tiny_data, download=False), cfg, CPU)
    model = TinyNet()
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.lr_max, cfg.lr_min, 1, len(train_loader), cfg.pct_start)
    return train_one_epoch(model, train_loader, optimizer, scheduler, criterion, CPU)


@pytest.mark.parametrize("read_every", [1, 3, 20])
def test_the_epochs_numbers_are_every_batchs_summed_by_hand_however_often_they_are_read(
        tiny_data, monkeypatch, capsys, read_every):
    monkeypatch.setattr(engine, "READ_EVERY", read_every)
    criterion = Recorded()
    result = tiny_epoch(tiny_data, criterion, batch_size=30)  # 7 batches, the last of 20 images
    loss_sum, correct, count = 0.0, 0, 0
    for loss, right, n in criterion.batches:  # in batch order, in float64, as train.py always did
        loss_sum, correct, count = loss_sum + loss * n, correct + right, count + n
    assert count == 200 and len(criterion.batches) == 7
    assert result["train_loss"] == loss_sum / count  # to the last bit
    assert result["train_acc"] == 100.0 * correct / count
    # the bar ends as it always did: the last batch's loss and the epoch's accuracy
    shown = re.findall(r"Train: Loss=([\d.]+) Batch_id=(\d+) Accuracy=([\d.]+)", capsys.readouterr().out)
    assert shown[-1] == (f"{criterion.batches[-1][0]:.4f}", "6", f"{result['train_acc']:.2f}")
    assert sorted({int(batch) for _, batch, _ in shown}) == sorted({0, 6, *range(0, 7, read_every)})


def test_a_nan_loss_between_two_reads_stops_the_epoch_naming_its_step(tiny_data, monkeypatch):
    monkeypatch.setattr(engine, "READ_EVERY", 20)  # read at step 1 and at the last, step 4
    with pytest.raises(DivergedError, match=r"the training loss became nan at epoch 1, step 2: lower --lr-max"):
        tiny_epoch(tiny_data, Recorded(nan_at=2))
