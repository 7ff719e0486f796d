"""The README, docs/*.md, S10.ipynb (its sources and stored outputs) and every committed record under
assets/ make sense to a reader who has only the repository: they cite no issue ("#25",
"issue 25") and name no path outside it (a home folder, a machine's folders, any absolute path,
the workspace's shared/ folder)."""
import json
import re

import pytest

from tests.conftest import ROOT

# Each pattern, by what it finds. The look-behinds keep URLs ("https://host/a/b"), relative links
# ("../assets/x.json"), rates ("img/s", "98/98") and HTML entities ("&#39;") out.
OUTSIDE = {
    "an issue reference": re.compile(r"\bissues? #?\d+|(?<![\w&/])#\d{1,5}\b", re.I),
    "a home folder": re.compile(r"~/"),
    "an absolute path": re.compile(r"(?<![\w.~:/\\-])/(?:[\w.-]+/)+[\w.-]*"
                                   r"|(?<![\w.~:/\\-])/(?:root|home|work|tmp|mnt|content|Users)\b"),
    "the workspace's shared/ folder": re.compile(r"(?<![\w.-])shared/"),
}
RECORD_SUFFIXES = (".json", ".txt", ".log")
TEXT_OUTPUT = re.compile(r"text/.*|application/json")


def checked_files():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "S10.ipynb"]
    records = sorted(p for p in (ROOT / "assets").rglob("*") if p.suffix in RECORD_SUFFIXES)
    return [p.relative_to(ROOT).as_posix() for p in docs + records]


def notebook_texts(path):
    """(where, text) for each cell's source and each stored output's text; images are skipped,
    their base64 is not text a reader sees."""
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        yield f"cell {index} source", "".join(cell["source"])
        for output in cell.get("outputs", []):
            texts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
            texts += [value for mime, value in output.get("data", {}).items() if TEXT_OUTPUT.fullmatch(mime)]
            for text in texts:
                yield f"cell {index} outputs", text if isinstance(text, str) else "".join(text)


def texts(relative):
    path = ROOT / relative
    return notebook_texts(path) if path.suffix == ".ipynb" else [("", path.read_text())]


def findings(where, text):
    """'where, line N: what 'match' in "context"' for each match of OUTSIDE in `text`."""
    found = []
    for what, pattern in OUTSIDE.items():
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            context = text[max(0, match.start() - 40):match.end() + 40].replace("\n", " ")
            found.append(f"{where} line {line}: {what} {match.group()!r} in ...{context}...")
    return found


@pytest.mark.parametrize("relative", checked_files())
def test_names_nothing_outside_the_repository(relative):
    found = [f"{relative} {finding}" for where, text in texts(relative) for finding in findings(where, text)]
    assert not found, "write it so a reader of the repository can follow it:\n" + "\n".join(found)


@pytest.mark.parametrize("text", [
    "see #25", "as issue 25 asked", "Issues 3 and 4", "in /root/venv/lib", "under /work/main", "/tmp/out",
    "a /home/user/x path", "`/proc/cpuinfo`", "~/data", "(../shared/reference/assignment.md)", "/root"])
def test_the_patterns_catch_what_they_are_for(text):
    assert findings("", text), text


@pytest.mark.parametrize("text", [
    "https://colab.research.google.com/assets/badge.svg", "(../assets/runs/full24.json)", "218.9 img/s",
    "98/98 [00:25<00:00", "&#39;", "runs/gpu/test/seed1", "## 2. The model", "49,593 / 50,000", "and/or"])
def test_the_patterns_pass_what_a_reader_can_follow(text):
    assert not findings("", text), text
