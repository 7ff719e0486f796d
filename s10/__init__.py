"""The S10 library, one module per concern; importing it runs nothing.

    config         the run's settings (Config), their validation, the errors a user can fix
    device         the device, seeds, worker count, mixed precision, torch.compile
    cifar          CIFAR-10 files: the safe reader, the download, channel statistics
    cifar_jpeg     the official layout built offline from a JPEG copy (python -m s10.cifar_jpeg)
    augment        the augmentation's constants and the albumentations pipelines
    device_loader  the loader that keeps the data on the device and augments whole batches
    data           datasets, the train/evaluation split, the loaders and their reseeding
    lr             the LR range test, the rule that reads LR_max and LR_min off it, One Cycle
    engine         the model and optimizer of the recipe, the train/evaluate loops, predictions
    checkpoints    checkpoints and JSON records written atomically, read back safely
    runs           a run: its record, training with a checkpoint every epoch, resuming
    run_lock       one writer per run folder: the lock a process holds on it while it writes
    plots          the figures (matplotlib); they draw data, they train nothing

Each module imports only modules above it in this list. `utils.py` re-exports what the notebook,
train.py, check_fit.py and bench.py call.
"""
