"""Every shell command the README gives runs as written: each line of its ```bash blocks and each
inline `python ...`, `pip ...` or `papermill ...` it quotes.

How each is checked (COMMANDS below, by its first words):
- run as written: the converter (in a scratch folder holding a tiny JPEG archive under the name
  the README gives), seeds.py on the committed records, `pip install` (as --dry-run --no-index:
  every requirement must already be installed, nothing is fetched);
- a training run is parsed, not run: train.py's parser reads the flags and the config they make
  is validated (the suite's other tests run train.py itself on small data);
- check_fit.py, check_precision.py, s10.publish and bench.py need a finished run or minutes of timing: they are
  started with --help appended, which parses the flags before it;
- papermill's: the settings it gives the notebook's parameters cell, injected as papermill
  injects them, make a valid Config;
- the test command is this suite: it is not started again here; .ci/run must run exactly it.
"""
import os
import re
import shlex
import subprocess
import tarfile
import sys

import pytest
import yaml
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

import train
from s10.config import Config, validate_config
from tests.conftest import ROOT, write_jpeg_archive

README = (ROOT / "README.md").read_text()


def readme_commands():
    """Each command of the README's ```bash blocks (comments dropped) and inline code spans."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        commands += [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    commands += re.findall(r"`((?:python|pip|papermill) [^`]+)`", README)
    return list(dict.fromkeys(commands))  # each once, in order


def run(command, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def parse_training_run(command, tmp_path):
    try:
        args = train.build_parser().parse_args(command.split()[2:])
    except SystemExit as e:  # argparse's way out, after --help or on a flag it does not know
        assert e.code == 0 and command.endswith("--help"), f"{command!r} does not parse"
        return
    validate_config(Config(**train.given_settings(args)))


def with_help(command, tmp_path):
    done = run(f"{command} --help")
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stderr


def convert(command, tmp_path):
    source = command.split()[3]
    write_jpeg_archive(tmp_path / "copy.tar.gz")
    if source.endswith(".tar.gz"):
        (tmp_path / "copy.tar.gz").rename(tmp_path / source)
    else:  # a clone of the JPEG copy's repository: the same files in folders
        with tarfile.open(tmp_path / "copy.tar.gz") as archive:
            archive.extractall(tmp_path / source, filter="data")
    done = run(command, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / command.split()[4] / "cifar-10-batches-py" / "test_batch").is_file()


def summarise_seeds(command, tmp_path):
    summary = ROOT / command.split()[2] / "summary.json"
    before = summary.read_bytes()
    try:
        done = run(command)
        assert done.returncode == 0, done.stderr
        assert "| mean ± std [min, max] | n=3 |" in done.stdout
        assert summary.read_bytes() == before  # it rewrites the committed summary as it stands
    finally:
        summary.write_bytes(before)


def pip_install(command, tmp_path):
    done = run(command.replace("pip install", f"{sys.executable} -m pip install --dry-run --no-index"))
    assert done.returncode == 0, done.stderr


def papermill_parameters(command, tmp_path):
    """The notebook's parameters cell takes the command's -y values as papermill injects them,
    and the settings make a valid Config; without -y, the defaults, into the run folder's copy."""
    args = shlex.split(command)
    assert args[1] == "S10.ipynb" and args[2] != "S10.ipynb"  # nothing writes over the notebook
    parameters = yaml.safe_load(args[args.index("-y") + 1]) if "-y" in args else {"settings": {}}
    notebook = parameterize_notebook(load_notebook_node(str(ROOT / "S10.ipynb")), parameters)
    namespace = {}
    for cell in notebook.cells:  # the parameters cell, then the one papermill injects after it
        if {"parameters", "injected-parameters"} & set(cell.metadata.tags):
            exec(cell.source, namespace)
    validate_config(Config(**namespace["settings"]))
    assert namespace["settings"] == parameters["settings"]


def the_suite(command, tmp_path):
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci if "pytest" in line and not line.startswith("#")][-1] == command


COMMANDS = {"python train.py": parse_training_run, "python check_fit.py": with_help,
            "python check_precision.py": with_help, "python bench.py": with_help,
            "python -m s10.publish": with_help,
            "python -m s10.cifar_jpeg": convert, "python seeds.py": summarise_seeds,
            "pip install": pip_install, "python -m pytest": the_suite, "papermill S10.ipynb": papermill_parameters}


def test_the_readme_gives_its_commands():
    commands = readme_commands()
    assert len(commands) >= 10 and "python -m pytest" in commands and "python train.py" in commands


@pytest.mark.parametrize("command", readme_commands())
def test_the_readme_command_runs_as_written(command, tmp_path):
    first = " ".join(command.split()[:3 if command.startswith("python -m") else 2])
    assert first in COMMANDS, f"the README's {command!r}: add how to check it to COMMANDS"
    COMMANDS[first](command, tmp_path)

