"""``auto`` settings that depend on the machine: the training precision and the convolutions' memory format.

``trainer.precision=auto`` and ``module.channels_last=auto`` are resolved here by ``imgbench.run`` before the
Trainer and the LightningModule are built; the resolved values are logged and written to ``metrics.json``.

- precision: ``bf16-mixed`` (autocast) on CUDA GPUs that support bf16 (Ampere and later) and on CPUs with
  native bf16 arithmetic (AVX512-BF16 or AMX); ``16-mixed`` on older CUDA GPUs; ``32-true`` elsewhere. On a CPU
  without native bf16 autocast emulates bf16 and is several times slower than fp32 (5-7x measured on an AVX2
  EPYC, see benchmarks/results.md).
- channels_last: on for models with 2-D convolutions (NHWC convolutions are faster with cuDNN, above all in
  mixed precision, and measured faster on CPUs too: benchmarks/results.md), off for models without.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import torch
from torch import nn

log = logging.getLogger(__name__)

AUTO = "auto"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX tiles), so that bf16 autocast pays off."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # an old or unusual build: fall back to the kernel's flags
            pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_cuda(accelerator: str | None) -> bool:
    """Whether a Trainer with this ``accelerator`` setting trains on a CUDA GPU."""
    accelerator = str(accelerator or "auto").lower()
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_precision(precision: str | int | None, accelerator: str | None = "auto") -> str | int | None:
    """``auto`` -> the fastest precision that trains as well as fp32 here; any other value is returned as is."""
    if str(precision) != AUTO:
        return precision
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def has_conv2d(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def resolve_channels_last(value: bool | str, net: nn.Module) -> bool:
    """``auto`` -> channels-last for convolutional models (on GPUs and CPUs alike); a bool is returned as is."""
    if isinstance(value, bool):
        return value
    if str(value) != AUTO:
        raise ValueError(f"module.channels_last must be true, false or auto, got {value!r}")
    return has_conv2d(net)
