"""The recipe a Config describes, built in one place: the model, the training loss, Adam, the
precision (autocast dtype) with its grad scaler, and One Cycle over the run's steps; and the
epoch's two steps, training and evaluating, as the recipe runs them."""
import torch

from models.resnet import ResNet
from s10.data import epoch_seed, reseed_loader
from s10.device import autocast_dtype, make_grad_scaler, maybe_compile
from s10.engine import evaluate, predict, train_one_epoch
from s10.lr import make_scheduler
from s10.lr_rules import FALLBACK_LR_MAX


def build_model(cfg, device):
    """The assignment's ResNet on `device`, in channels_last layout if the config asks."""
    model = ResNet(dropout=cfg.dropout).to(device)
    if cfg.channels_last:  # convolutions then keep their activations in NHWC as well
        model = model.to(memory_format=torch.channels_last)
    return model


def make_criterion(cfg):
    """The training loss: cross-entropy, with the config's label smoothing."""
    return torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


# evaluation always reports plain cross-entropy, so held-out losses compare across settings
# whatever the training loss smooths
EVAL_CRITERION = torch.nn.CrossEntropyLoss()


def make_optimizer(model, cfg):
    """Adam. Its LR here is a placeholder: the LR finder and then One Cycle set every step's. With
    cfg.decay_norm_and_bias off, its weight decay skips the BatchNorm weights and the biases
    (every parameter of one dimension)."""
    params = model.parameters()
    if not cfg.decay_norm_and_bias:
        flat = [p for p in model.parameters() if p.ndim <= 1]
        params = [{"params": [p for p in model.parameters() if p.ndim > 1]},
                  {"params": flat, "weight_decay": 0.0}]
    return torch.optim.Adam(params, lr=cfg.lr_min or FALLBACK_LR_MAX, weight_decay=cfg.weight_decay)


class Recipe:
    """Everything a Config says about how to train, built once: `model`, `criterion`,
    `optimizer`, `amp_dtype` (None: float32) and `scaler`; `schedule()` adds One Cycle once
    the LRs are known (the LR finder needs the rest first)."""

    def __init__(self, cfg, device, log=print):
        self.cfg, self.device = cfg, device
        self.model = build_model(cfg, device)
        self.criterion = make_criterion(cfg)
        self.optimizer = make_optimizer(self.model, cfg)
        self.amp_dtype = autocast_dtype(cfg, device)
        self.scaler = make_grad_scaler(self.amp_dtype, device)
        # the compiled model shares its parameters with `model`, which the checkpoints save
        self.trained_model = maybe_compile(self.model, cfg, device, log)
        self.scheduler = self.lr_max = self.lr_min = None

    def schedule(self, lr_max, lr_min, steps_per_epoch):
        """One Cycle from lr_min up to lr_max and back, over the config's epochs."""
        self.lr_max, self.lr_min = lr_max, lr_min
        self.scheduler = make_scheduler(self.optimizer, lr_max, lr_min, self.cfg.epochs, steps_per_epoch,
                                        self.cfg.pct_start)

    def train_epoch(self, loader, epoch):
        """One epoch (0-based) of training: {"train_loss", "train_acc", "lrs"}. The batches and
        their augmentation depend on (seed, epoch) alone, so a resumed run sees the same ones."""
        reseed_loader(loader, epoch_seed(self.cfg.seed, epoch))
        return train_one_epoch(self.trained_model, loader, self.optimizer, self.scheduler, self.criterion,
                               self.device, epoch, self.amp_dtype, self.scaler)

    def evaluate(self, loader):
        """engine.evaluate in the training precision, with flip TTA if the config asks."""
        return evaluate(self.trained_model, loader, EVAL_CRITERION, self.device, self.cfg.tta, self.amp_dtype)

    def predict(self, loader):
        """(predictions, targets) of the final model in the training precision."""
        return predict(self.model, loader, self.device, self.amp_dtype)
