"""The CIFAR-10 reader on small folders in the official layout, and its errors."""
import pickle
import urllib.error

import numpy as np
import pytest
import torchvision.datasets.utils as tv_utils

from s10.cifar import CIFAR_URL, channel_stats, load_cifar10, read_batch, resolve_data_dir
from s10.config import DataError
from tests.conftest import write_batch, write_cifar_folder


def test_reads_the_official_layout(tiny_data):
    data = load_cifar10(tiny_data, download=False)
    assert data["train_x"].shape == (200, 32, 32, 3) and data["train_x"].dtype == np.uint8
    assert data["test_x"].shape == (100, 32, 32, 3)
    assert data["train_y"].shape == (200,) and set(data["train_y"]) == set(range(10))
    assert "local copy" in data["source"]


def test_rows_are_channel_major(tmp_path):
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 1, 2] = (10, 20, 30)  # one pixel at row 1, column 2
    write_batch(tmp_path / "b", image, [3])
    x, y = read_batch(tmp_path / "b")
    assert x.shape == (1, 32, 32, 3) and tuple(x[0, 1, 2]) == (10, 20, 30) and y.tolist() == [3]
    assert x.sum() == 60


def test_data_dir_from_argument_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.delenv("S10_DATA", raising=False)
    assert str(resolve_data_dir("")) == "data"
    monkeypatch.setenv("S10_DATA", str(tmp_path))
    assert resolve_data_dir("") == tmp_path
    assert str(resolve_data_dir("elsewhere")) == "elsewhere"


def test_channel_stats_match_numpy(tiny_data):
    x = load_cifar10(tiny_data, download=False)["train_x"]
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, (x / 255.0).mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(std, (x / 255.0).std(axis=(0, 1, 2)))


def test_missing_folder_offline_says_where_and_what_to_do(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "--data-dir" in message and "S10_DATA" in message


def test_only_downloads_are_checked_against_the_official_md5(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(tv_utils, "download_and_extract_archive",
                        lambda url, root, md5: calls.append((url, md5)) or
                        write_cifar_folder(root))
    data = load_cifar10(tmp_path)
    assert calls == [(CIFAR_URL, "c58f30108f718f92721af3b95e74349a")]
    assert "md5 verified" in data["source"]
    load_cifar10(tmp_path)  # now local: read without downloading or checking
    assert len(calls) == 1


# the official batches were pickled by Python 2: a str key and a numpy array, as its pickler wrote them
PY2_BATCH = (b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\n"
             b"q\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x01M\x00\x0c\x86cnumpy\ndtype\nq\x05U\x02u1K\x00"
             b"K\x01\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T\x00\x0c\x00\x00"
             + bytes([7]) * 3072 + b"tbU\x06labelsq\x07]q\x08K\x05au.")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_batches_of_every_pickle_protocol(tmp_path, protocol):
    rows = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (tmp_path / "b").write_bytes(pickle.dumps({"data": rows, "labels": [4, 9]}, protocol=protocol))
    x, y = read_batch(tmp_path / "b")
    assert x.transpose(0, 3, 1, 2).reshape(2, -1).tolist() == rows.tolist() and y.tolist() == [4, 9]


def test_reads_a_python_2_batch(tmp_path):
    (tmp_path / "b").write_bytes(PY2_BATCH)
    x, y = read_batch(tmp_path / "b")
    assert x.shape == (1, 32, 32, 3) and (x == 7).all() and y.tolist() == [5]


class CreatesAFile:
    """Unpickling this would call open(path, "w") and create the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_malicious_batch_is_rejected_and_nothing_runs(tiny_copy, tmp_path):
    target = tmp_path / "pwned"
    batch = tiny_copy / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({"data": CreatesAFile(target), "labels": []}))
    with pytest.raises(DataError, match="data_batch_2.*not a CIFAR-10 batch"):
        load_cifar10(tiny_copy, download=False)
    assert not target.exists()


def test_a_truncated_batch_is_named(tiny_copy):
    batch = tiny_copy / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DataError, match="data_batch_3 is truncated or corrupt"):
        load_cifar10(tiny_copy, download=False)


@pytest.mark.parametrize("data, labels, message", [
    (np.zeros((2, 3000), np.uint8), [0, 1], "shape"),
    (np.zeros((2, 3072), np.float32), [0, 1], "uint8"),
    (np.zeros((2, 3072), np.uint8), [0], "2 integers"),
    (np.zeros((2, 3072), np.uint8), [0, 10], "labels must be in 0..9"),
])
def test_wrong_shapes_and_labels(tiny_copy, data, labels, message):
    path = tiny_copy / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=2))
    with pytest.raises(DataError, match=message):
        load_cifar10(tiny_copy, download=False)


def test_an_incomplete_folder_lists_what_is_missing(tiny_copy):
    (tiny_copy / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match="missing data_batch_5"):
        load_cifar10(tiny_copy)
