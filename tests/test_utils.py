"""The notebook's helpers in utils.py: the results table; no library name pytest would collect."""
import utils
from s10.record import RunRecord


def test_the_results_table_names_what_was_evaluated_and_shows_tta_only_when_measured():
    epochs = [{"epoch": 1, "train_acc": 70.0, "seconds": 10.0, "eval": {"acc": 80.0, "acc_tta": 81.5}},
              {"epoch": 2, "train_acc": 75.0, "seconds": 12.0, "eval": {"acc": 79.5, "acc_tta": 80.25}}]
    values = {"epochs": epochs, "config": {"epochs": 2}, "eval_set": "test", "lr_max": 1e-3, "lr_min": 1e-5,
              "device": "cpu (2 threads)", "precision": "bfloat16", "data": "generated", "loader": "albumentations",
              "commit": None, "torch": "2", "lr_finder": None, "mean": [0.5] * 3, "std": [0.25] * 3}
    table = utils.format_results(RunRecord(**values))
    assert "| test accuracy, last epoch | 79.50% |" in table
    assert "| best test accuracy | 80.00% (epoch 1) |" in table
    assert "| with flip TTA, last epoch | 80.25% |" in table
    assert "| seconds per epoch (mean) | 11.0 |" in table and "bfloat16" in table
    held_out = utils.format_results(RunRecord(**{**values, "eval_set": "validation"}))
    assert "| validation accuracy, last epoch | 79.50% |" in held_out and "test" not in held_out
    for epoch in epochs:
        del epoch["eval"]["acc_tta"]
    assert "TTA" not in utils.format_results(RunRecord(**values))


def test_the_lr_finder_cell_shows_a_line_when_no_sweep_ran(tmp_path, capsys):
    assert utils.show_lr_finder(None, 1e-2, 1e-4, tmp_path / "lr_finder.png") is None
    assert "no LR sweep: the config gives LR_max = 1.000e-02 and LR_min = 1.000e-04" in capsys.readouterr().out
    assert not (tmp_path / "lr_finder.png").exists()
    sweep = {"lrs": [1e-5, 1e-4, 1e-3, 1e-2], "losses": [2.3, 2.2, 1.9, 2.5]}
    assert utils.show_lr_finder(sweep, 1e-3, 1e-5, tmp_path / "lr_finder.png") is not None
    assert (tmp_path / "lr_finder.png").exists()


def test_no_library_function_is_named_like_a_test():
    # pytest collects a function named test_* wherever a test module imports it by name
    import importlib
    import pkgutil

    import s10
    modules = [utils] + [importlib.import_module(f"s10.{m.name}") for m in pkgutil.iter_modules(s10.__path__)]
    named = [f"{m.__name__}.{name}" for m in modules for name, value in vars(m).items()
             if name.startswith("test") and callable(value)]
    assert named == []
