"""bench.py: its figures, the float32 comparison exactly where the chosen precision is lower, the
precision as asked, torch.compile measured on CUDA only."""
import pytest

import bench
from s10 import device
from s10.config import ConfigError


@pytest.mark.parametrize("native_bf16", [True, False])
def test_bench_prints_its_figures_and_the_ratio(capsys, monkeypatch, native_bf16):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native_bf16)
    bench.main(["--device", "cpu", "--batches", "2", "--batch-size", "8"])
    out = capsys.readouterr().out
    assert "bare step, channels_last:" in out and "FLOPs per image" in out
    assert ("bare step, float32:" in out) == native_bf16
    assert out.strip().splitlines()[-1].startswith("full loop / bare step: ")


def test_bench_measures_the_precision_asked_for_and_compiles_on_cuda_only(capsys, monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    bench.main(["--device", "cpu", "--batches", "1", "--batch-size", "4", "--precision", "fp32", "--compile"])
    out = capsys.readouterr().out
    assert "precision float32" in out.splitlines()[0] and "bare step, float32:" not in out
    assert "torch.compile: not measured; it is used on CUDA only, not on cpu" in out
    assert out.strip().splitlines()[-1].startswith("full loop / bare step: ")
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="--precision bf16 needs a CPU with bf16 instructions"):
        bench.main(["--device", "cpu", "--precision", "bf16"])
