"""How and where the maths runs: the device (chosen once, then passed), seeds, DataLoader
workers, mixed precision (autocast dtype, grad scaler) and torch.compile."""
import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from s10.config import ConfigError


def get_device(name="auto"):
    """The torch.device for `name`: auto picks CUDA, else MPS, else CPU. Raises ConfigError for
    an unknown device or one this machine lacks."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    available = {"cpu": True, "mps": has_mps,
                 "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()}
    if not available.get(device.type, False):
        raise ConfigError(f"device {name!r} is not available on this machine: use auto or cpu")
    if device.type == "cuda":
        # every batch has the same shapes, so cuDNN's one-off search for the fastest
        # convolution algorithms pays back within the first epoch
        torch.backends.cudnn.benchmark = True
    return device


def device_name(device):
    """'cpu (N threads)' or the GPU's name, for the record."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def seed_everything(seed):
    """Seed Python, numpy and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_workers(device):
    """DataLoader workers: none on CPU, where both cores already run the training maths and
    augmentation costs about 2% of a bf16 step (bench.py); on an accelerator up to 4, never
    more than the CPUs."""
    if device.type == "cpu":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cpus or 1))


def cpu_has_native_bf16(cpuinfo="/proc/cpuinfo"):
    """True if the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16), read from Linux's
    cpuinfo; False where that cannot be read (macOS, Windows), so those stay in fp32."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def cpu_autocast_dtype():
    """The CPU's mixed-precision dtype: bf16 where the CPU has bf16 instructions (bench.py's bare
    step ran 1.75x faster than fp32 on a 2-core AVX512-BF16 machine), else None (fp32): without
    them bf16 is emulated, which is not expected to pay (not measured here)."""
    return torch.bfloat16 if cpu_has_native_bf16() else None


def autocast_dtype(cfg, device):
    """The autocast dtype of `cfg.precision` on this device, or None for fp32.

    auto: on CUDA bf16 where the GPU supports it (no loss scaling needed), else fp16 with a grad
    scaler; on a CPU see cpu_autocast_dtype; MPS: fp32. bf16, fp16 and fp32 are used as asked,
    except bf16 where the device lacks it: ConfigError (see check_native_bf16).
    """
    if cfg.precision == "auto":
        return auto_dtype(device)
    if cfg.precision == "bf16":
        check_native_bf16(device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)


def auto_dtype(device):
    """--precision auto's dtype for this device (None: fp32)."""
    if device.type == "cpu":
        return cpu_autocast_dtype()
    if device.type != "cuda":
        return None
    return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16


def cuda_has_native_bf16(device):
    # is_bf16_supported() also says yes to emulated bf16 (T4, V100): ask for Ampere or newer
    return torch.cuda.get_device_capability(device) >= (8, 0)


def check_native_bf16(device):
    """Raise ConfigError where bf16 is not native: a CUDA GPU before Ampere or a CPU without bf16
    instructions would emulate it, expected to be slower than what auto picks there (not measured
    here), so a clear refusal at the start beats a slow run. fp16 is never refused: it runs on
    every GPU and, with a CPU grad scaler, on CPUs. MPS is left to torch's autocast."""
    if device.type == "cuda" and not cuda_has_native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise ConfigError(f"--precision bf16 needs a GPU from Ampere on (compute capability 8.0); "
                          f"{torch.cuda.get_device_name(device)} has {major}.{minor}: use --precision "
                          "fp16 (what auto picks there) or fp32")
    if device.type == "cpu" and not cpu_has_native_bf16():
        raise ConfigError("--precision bf16 needs a CPU with bf16 instructions (AVX512-BF16 or "
                          "AMX-BF16), which this one lacks: use --precision fp32 (what auto picks "
                          "here) or fp16")


def precision_name(dtype):
    """'bfloat16', 'float16' or 'float32' (for None: no autocast), for logs and records."""
    return str(dtype or torch.float32).replace("torch.", "")


def precision_dtype(name):
    """The autocast dtype a record's precision name stands for (None: float32, no autocast)."""
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name)


def autocast(device, dtype):
    """Autocast to `dtype` on `device`, or no context at all for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def make_grad_scaler(dtype, device):
    """A GradScaler for `device`, active only for fp16 (bf16 and fp32 need no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def maybe_compile(model, cfg, device, log=print):
    """torch.compile(model) if the config asks and the device is CUDA, else the model itself."""
    if not cfg.compile:
        return model
    if device.type != "cuda":
        log(f"note: --compile is used on CUDA only; training uncompiled on {device.type}")
        return model
    return torch.compile(model)
