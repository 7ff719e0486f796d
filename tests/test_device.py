"""The device's choices: precision per device (bf16 on CPUs only with bf16 instructions, on GPUs
from Ampere; an explicit choice as asked, bf16 refused where it is not native), the grad scaler,
cuDNN autotuning, torch.compile on CUDA only."""
import pytest
import torch
from torch import nn

from s10 import device
from s10.config import Config, ConfigError
from s10.device import (autocast_dtype, cpu_has_native_bf16, get_device, make_grad_scaler, maybe_compile,
                        precision_dtype, precision_name)
from tests.conftest import CPU


@pytest.mark.parametrize("flags, native", [("fpu avx2 avx512f avx512_bf16 avx_vnni", True),
                                           ("fpu avx2 amx_bf16 amx_tile", True),
                                           ("fpu avx2 avx512f avx512bw", False), ("neon asimd", False)])
def test_cpu_bf16_is_native_only_with_bf16_instructions(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, None)])
def test_cpu_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch, native, dtype):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(Config(), CPU) == dtype
    assert autocast_dtype(Config(precision="fp32"), CPU) is None
    assert autocast_dtype(Config(), torch.device("mps")) is None


@pytest.mark.parametrize("capability, dtype", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                               ((7, 5), torch.float16), ((7, 0), torch.float16)])
def test_cuda_precision_is_bf16_from_ampere_else_fp16(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda")
    assert autocast_dtype(Config(), cuda) == dtype
    assert autocast_dtype(Config(precision="fp32"), cuda) is None


@pytest.mark.parametrize("precision, dtype", [("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)])
@pytest.mark.parametrize("where", ["cpu with bf16", "cuda sm80", "cuda sm75", "cpu without bf16"])
def test_an_explicit_precision_is_used_as_asked_and_bf16_only_where_it_is_native(monkeypatch, precision, dtype,
                                                                                 where):
    kind, native = where.split()[0], where in ("cpu with bf16", "cuda sm80")
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0) if native else (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    if precision == "bf16" and not native:
        with pytest.raises(ConfigError, match="--precision bf16 needs a (GPU from Ampere on|CPU with bf16)"):
            autocast_dtype(Config(precision="bf16"), torch.device(kind))
    else:
        assert autocast_dtype(Config(precision=precision), torch.device(kind)) is dtype


def test_the_grad_scaler_is_active_for_fp16_only_on_the_devices_own_type():
    assert make_grad_scaler(torch.float16, CPU).is_enabled()  # a CPU scaler: fp16 runs on the CPU too
    assert not make_grad_scaler(torch.bfloat16, CPU).is_enabled()
    assert not make_grad_scaler(None, CPU).is_enabled()
    assert make_grad_scaler(None, torch.device("cuda"))._device == "cuda"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, None])
def test_precision_names_map_back_to_their_dtype(dtype):
    assert precision_dtype(precision_name(dtype)) is dtype


def test_cuda_turns_on_cudnn_autotuning_and_cpu_leaves_it(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert get_device("cpu").type == "cpu" and not torch.backends.cudnn.benchmark
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_device("cuda").type == "cuda" and torch.backends.cudnn.benchmark


def test_compile_is_skipped_off_cuda_with_a_note():
    notes = []
    assert maybe_compile(model := nn.Linear(2, 2), Config(compile=True), CPU, log=notes.append) is model
    assert notes == ["note: --compile is used on CUDA only; training uncompiled on cpu"]
