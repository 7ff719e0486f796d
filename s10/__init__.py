"""The S10 library, one module per concern; importing it runs nothing.

    lr_rules       the rules that read LR_max and LR_min off a sweep, and their fallbacks
    config         the run's settings (Config), their validation, the errors a user can fix, and
                   eval_set: the evaluation set's one name ("test" or "validation")
    device         the device, seeds, worker count, mixed precision, torch.compile
    cifar          CIFAR-10 files: the safe reader, the download, channel statistics
    cifar_jpeg     the official layout built offline from a JPEG copy (python -m s10.cifar_jpeg)
    augment        the augmentation's constants and the albumentations pipelines
    device_loader  the loader that keeps the data on the device and augments whole batches
    data           datasets, the train/evaluation split, the loaders and their reseeding
    lr             the LR range test, the choice of the run's LRs, One Cycle
    engine         the loops: a training epoch, an evaluation, predictions, the confusion matrix
    recipe         Recipe: the model, loss, optimizer, precision, grad scaler and One Cycle a
                   Config describes, built once; its epoch's two steps, train and evaluate
    record         what a run folder holds: RunRecord (metrics.json) and the checkpoint, declared
                   once, written atomically, read back safely (old records by one named reader)
    runs           a run: a new one or its checkpoint's, the epochs left, saving each epoch
    run_lock       one writer per run folder: the lock a process holds on it while it writes
    plots          the figures (matplotlib); they draw data, they train nothing
    seeds          several seeds of one recipe: their folders and summary
    checks         a finished run's model: the fit check and the precision check
    stored_notebook  S10.ipynb with one run's outputs, its first cell written from the run's record
    publish        the one step that copies a finished full run to assets/ (and its outputs to S10.ipynb)

Each module imports only modules above it in this list. `utils.py` re-exports what the notebook
calls, and only the notebook imports it.
"""
