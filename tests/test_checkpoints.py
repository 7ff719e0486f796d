"""Checkpoints and records: a full disk, a run folder that cannot be one, files that are not our
checkpoints; each ends in one `error:` line and exit status 2, or a message in our words."""
import errno
import json
import pathlib
import pickle
import zipfile

from types import SimpleNamespace

import pytest
import torch

import train
from s10 import cifar
from s10.record import load_checkpoint, save_checkpoint, write_json
from s10.config import ConfigError, SaveError

# what torch.save raised when a 2 MiB tmpfs filled up under it (torch 2.14)
TORCH_FULL_DISK = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def fills_the_disk_on_call(number, error, monkeypatch):
    """torch.save as on a disk that fills up during its `number`th call: part of the file, then `error`."""
    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == number:
            pathlib.Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise error
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save)


def test_a_disk_that_fills_up_during_a_checkpoint_ends_in_one_error_line(tiny_data, tmp_path, monkeypatch,
                                                                           capsys, small_model):
    fills_the_disk_on_call(2, TORCH_FULL_DISK, monkeypatch)  # epoch 2's checkpoint
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny_data), "--epochs", "2", "--batch-size", "50", "--precision", "fp32",
                       "--lr-max", "5e-3", "--lr-min", "5e-5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write {out / 'checkpoint.pt'} ([enforce fail") and err.count("\n") == 1
    assert "Is the disk full? The checkpoint.pt written before is kept" in err and f"--resume {out}" in err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json"]  # no .tmp left
    monkeypatch.undo()
    assert len(load_checkpoint(out / "checkpoint.pt")["record"].epochs) == 1  # epoch 1's, intact
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 1


def test_no_space_left_for_a_record_or_a_first_checkpoint(tmp_path, monkeypatch):
    no_space = OSError(errno.ENOSPC, "No space left on device")
    write_json(tmp_path / "metrics.json", {"epochs": [1]})

    def write_part(path, text):
        pathlib.Path.write_bytes(path, text[:10].encode())
        raise no_space
    monkeypatch.setattr(pathlib.Path, "write_text", write_part)
    with pytest.raises(SaveError, match=r"No space left on device.*The metrics.json written before is kept"):
        write_json(tmp_path / "metrics.json", {"epochs": [1, 2]})
    monkeypatch.undo()
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"epochs": [1]}

    fills_the_disk_on_call(1, no_space, monkeypatch)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    recipe = SimpleNamespace(model=model, optimizer=optimizer, scheduler=scheduler,
                             scaler=torch.amp.GradScaler("cpu", enabled=False))
    with pytest.raises(SaveError, match="No checkpoint.pt was written yet"):
        save_checkpoint(tmp_path / "checkpoint.pt", recipe, SimpleNamespace(to_dict=dict))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("out", ["a_file", "a_file/run"])
def test_an_out_that_cannot_be_a_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys, out):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setattr(cifar, "load_cifar10", lambda *args, **kwargs: pytest.fail("the data was loaded"))
    assert train.main(["--out", str(tmp_path / out), "--lr-max", "5e-3", "--lr-min", "5e-5"]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / out} cannot be a run folder: {tmp_path / 'a_file'} "
                                       "is a file. Choose another run folder (--out)\n")


class Unexpected:
    """A class of ours that no checkpoint of this project holds."""


class CreatesAFile:
    """Unpickling this would call open(path, "w") and create the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_checkpoint_the_safe_loader_refuses_is_named_in_our_words(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "extra": Unexpected()}, path)
    with pytest.raises(ConfigError) as error:
        load_checkpoint(path)
    assert str(error.value) == (f"{path} is not a readable checkpoint of this project (it asks to import "
                                f"{__name__}.Unexpected, where a checkpoint of this project holds only tensors "
                                "and plain values); nothing in it was run")

    target = tmp_path / "pwned"
    path.write_bytes(pickle.dumps({"model": CreatesAFile(target)}))  # a bare pickle, not torch.save's zip
    with pytest.raises(ConfigError, match=r"\(it is not a file written by torch.save\); nothing in it was run"):
        load_checkpoint(path)
    assert not target.exists()


def test_a_damaged_or_foreign_file_gets_a_message(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="is not a checkpoint of this project, or one written by an older "
                                          "version of it \\(no model, optimizer, record"):
        load_checkpoint(path)
    with zipfile.ZipFile(path) as archive:  # the same archive cut short
        size = sum(info.compress_size for info in archive.infolist())
    path.write_bytes(path.read_bytes()[:size // 2])
    with pytest.raises(ConfigError, match="not a readable checkpoint of this project \\(truncated or damaged: "):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"\(it is not a file written by torch.save\)"):
        load_checkpoint(path)
