"""experiments/regularisation.py: its decision rule, and the setting it hands the notebook through
papermill's parameters."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

import utils

spec = importlib.util.spec_from_file_location("regularisation", Path(__file__).parents[1] / "experiments" / "regularisation.py")
regularisation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regularisation)
DEFAULT = regularisation.DEFAULT


def test_the_winner_replaces_the_default_only_beyond_two_standard_errors():
    # within-setting deviations of +-0.1 everywhere: s = sqrt(0.02 / 1) = 0.1414
    results = {DEFAULT: [90.0, 90.2], "wd5e-4_do0_ls0": [90.3, 90.5], "wd1e-4_do0_ls0": [89.9, 90.1]}
    decision = regularisation.choose(results)
    s = math.sqrt(0.02)
    assert decision["s"] == pytest.approx(s, abs=1e-3)
    assert decision["threshold"] == pytest.approx(2 * s, abs=1e-3)  # sqrt(1/2 + 1/2) = 1
    # the winner is 0.3 ahead, past 2 s = 0.283: it is chosen
    assert decision["winner"] == decision["chosen"] == "wd5e-4_do0_ls0"
    assert decision["margin"] == pytest.approx(0.3)

    results["wd5e-4_do0_ls0"] = [90.25, 90.45]  # 0.25 ahead: within the noise, the default stays
    decision = regularisation.choose(results)
    assert decision["winner"] == "wd5e-4_do0_ls0" and decision["chosen"] == DEFAULT


def test_a_setting_with_one_seed_is_no_candidate_and_the_default_needs_two():
    decision = regularisation.choose({DEFAULT: [90.0, 90.2], "wd5e-4_do0_ls0": [95.0]})
    assert decision["chosen"] == DEFAULT and "wd5e-4_do0_ls0" not in decision["means"]
    with pytest.raises(ValueError, match="at least 2 finished seeds"):
        regularisation.choose({DEFAULT: [90.0], "wd5e-4_do0_ls0": [90.0, 90.1]})


def test_the_chosen_setting_reaches_the_notebooks_config_through_papermill():
    command = regularisation.notebook_command("wd5e-4_do0_ls01", "runs/x/test/seed1")
    # the executed copy goes to the run folder: nothing writes over the repository's notebook
    assert command[1:5] == ["-m", "papermill", "S10.ipynb", str(regularisation.ROOT / "runs/x/test/seed1/S10.ipynb")]
    parameters = json.loads(command[command.index("-y") + 1])  # YAML, written as JSON
    notebook = parameterize_notebook(load_notebook_node(str(Path(__file__).parents[1] / "S10.ipynb")), parameters)
    namespace = {}
    for cell in notebook.cells:  # the parameters cell, then the one papermill injects after it
        if {"parameters", "injected-parameters"} & set(cell.metadata.tags):
            exec(cell.source, namespace)
    cfg = utils.notebook_config(namespace["smoke"], namespace["settings"])
    assert (cfg.weight_decay, cfg.dropout, cfg.label_smoothing) == (5e-4, 0.0, 0.1)
    assert (namespace["run_dir"], namespace["smoke"], cfg.subset) == ("runs/x/test/seed1", False, None)
