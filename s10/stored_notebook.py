"""The repository's S10.ipynb with one real run's outputs: the copy papermill executed into a run
folder, stored cell for cell, its progress bars as a terminal shows them, and the first cell's
paragraph on where the outputs come from written from the run's record.

Only `python -m s10.publish RUN_DIR --notebook` calls this: nothing else writes S10.ipynb.
"""
import re
from pathlib import Path

import nbformat

from s10.config import Config, ConfigError
from s10.runs import config_conflicts

# the first cell's paragraph on the stored run lies between these (HTML comments: a reader of the
# rendered notebook does not see them)
BEGIN, END = "<!-- stored run: written by python -m s10.publish --notebook -->", "<!-- end of stored run -->"
INJECTED = "injected-parameters"  # the tag of the cell papermill adds for its parameters


def terminal_text(text):
    """`text` as a terminal leaves it: each line keeps what its last carriage return wrote (tqdm
    redraws its bar with \\r a hundred times an epoch; the stored output keeps the final bar)."""
    def last_drawn(line):
        drawn = [part for part in line.split("\r") if part]
        return drawn[-1] if drawn else ""
    return "\n".join(last_drawn(line) for line in text.split("\n"))


def coalesced(outputs):
    """A cell's outputs with consecutive stream outputs of one stream joined, as terminal_text."""
    merged = []
    for output in outputs:
        if output.output_type == "stream" and merged and merged[-1].output_type == "stream" \
                and merged[-1].name == output.name:
            merged[-1].text += output.text
        else:
            merged.append(output)
    for output in merged:
        if output.output_type == "stream":
            output.text = terminal_text(output.text)
    return merged


def _hours(seconds):
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def stored_run_paragraph(record, record_path):
    """What the first cell says of the stored run, every figure read from its RunRecord."""
    last = record.epochs[-1]
    tta = f", {last['eval']['acc_tta']:.2f}% with flip TTA" if "acc_tta" in last["eval"] else ""
    stops = "".join(f" It was stopped after epoch {r['after_epoch']} and continued by the same command "
                    f"({r['device']}, {r['precision']}): the training cell shows the epochs before the stop as "
                    "its checkpoint logged them." for r in record.resumed)
    return (f"**Where the stored outputs come from.** One real run of this notebook, executed top to "
            f"bottom by papermill (`papermill S10.ipynb runs/notebook/S10.ipynb`) with the default recipe "
            f"and seed {record.config['seed']}, on the stand-in data (a public JPEG copy of CIFAR-10 in the "
            f"official layout; see the README), on {record.device} in {record.precision} with torch "
            f"{record.torch}. Its {len(record.epochs)} epochs took {_hours(record.seconds)} of training and "
            f"evaluation ({record.seconds / len(record.epochs):.0f} s an epoch).{stops} Test accuracy after "
            f"epoch {last['epoch']}: **{last['eval']['acc']:.2f}%**{tta}. Its record is "
            f"[`{record_path}`]({record_path}); the README's figures are this run's.")


def with_stored_run(source, paragraph):
    """The first cell's markdown with its stored-run paragraph replaced by `paragraph`."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(source):
        raise ConfigError(f"S10.ipynb's first cell has no stored-run paragraph ({BEGIN} ... {END})")
    return pattern.sub(lambda _: f"{BEGIN}\n{paragraph}\n{END}", source)


def code_cells(notebook):
    """The code cells the notebook's author wrote (papermill's parameters cell left out)."""
    return [cell for cell in notebook.cells
            if cell.cell_type == "code" and INJECTED not in cell.metadata.get("tags", [])]


def store_notebook(executed, record, record_path, notebook="S10.ipynb"):
    """Write `notebook` with the outputs of `executed` (papermill's copy in a run folder) and the
    stored-run paragraph of `record`. ConfigError, writing nothing, if the run is not the default
    recipe, or if the executed copy ran other code cells than `notebook` holds: its outputs would
    not be those of the cells shown."""
    changed = config_conflicts(record.config, Config())
    if changed:
        raise ConfigError(f"{executed} is not the default recipe ({', '.join(changed)} changed): the stored "
                          "notebook shows the default run")
    ours, ran = nbformat.read(notebook, as_version=4), nbformat.read(executed, as_version=4)
    if [c.source for c in code_cells(ours)] != [c.source for c in code_cells(ran)]:
        raise ConfigError(f"{executed} was executed from other code cells than {notebook} holds now: "
                          "run the notebook again with papermill, then store it")
    for cell, done in zip(code_cells(ours), code_cells(ran)):
        cell.outputs, cell.execution_count = coalesced(done.outputs), done.execution_count
        cell.metadata = {**done.metadata, **cell.metadata}  # papermill's timings beside our tags
    ours.cells[0].source = with_stored_run(ours.cells[0].source, stored_run_paragraph(record, record_path))
    ours.metadata["papermill"] = ran.metadata.get("papermill")  # when and how the run was executed
    nbformat.write(ours, notebook)
    return Path(notebook)
