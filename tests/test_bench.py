"""bench.py: its figures, and the float32 comparison exactly where the default precision is lower."""
import pytest

import bench
from s10 import device


@pytest.mark.parametrize("native_bf16", [True, False])
def test_bench_prints_its_figures_and_the_ratio(capsys, monkeypatch, native_bf16):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native_bf16)
    bench.main(["--device", "cpu", "--batches", "2", "--batch-size", "8"])
    out = capsys.readouterr().out
    assert "bare step, channels_last:" in out and "FLOPs per image" in out
    assert ("bare step, float32:" in out) == native_bf16
    assert out.strip().splitlines()[-1].startswith("full loop / bare step: ")
