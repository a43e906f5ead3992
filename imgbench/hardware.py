"""``auto`` settings that depend on the machine: the training precision and the convolutions' memory format.

``trainer.precision=auto`` and ``module.channels_last=auto`` are resolved here by ``imgbench.run`` before the
Trainer and the LightningModule are built; the resolved values are logged and written to ``metrics.json``.

- precision: ``bf16-mixed`` (autocast) on CUDA GPUs that support bf16 (Ampere and later) and on CPUs with
  native bf16 arithmetic (AVX512-BF16 or AMX); ``16-mixed`` on older CUDA GPUs; ``32-true`` elsewhere. On a CPU
  without native bf16 autocast emulates bf16 and is several times slower than fp32 (benchmarks/results.md).
- channels_last: off for models without 2-D convolutions; on for convolutional models on CUDA GPUs (cuDNN's NHWC
  kernels, above all in mixed precision); on a CPU, whichever layout trains faster in a few timed steps of a copy
  of the model, decided once per machine, model and input and kept in ``<paths.cache_dir>/channels_last.json``,
  so that later runs compute in the same layout and a seed gives the same result every time; DDP processes on
  CPUs always take NCHW (they must agree). Measured figures: benchmarks/results.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import time
from functools import lru_cache

import torch
from torch import nn

from .io import write_json

log = logging.getLogger(__name__)

AUTO = "auto"


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows (results name the machine they ran on)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("model name")), "")
    except OSError:
        line = ""
    return line.split(":", 1)[1].strip() if line else platform.processor() or platform.machine() or "cpu"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX tiles), so that bf16 autocast pays off.

    Returns:
        True when torch's probes or the kernel's CPU flags report native bf16.
    """
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
    """Whether a Trainer with this ``accelerator`` setting trains on a CUDA GPU.

    Args:
        accelerator: the Trainer's ``accelerator`` (None: ``auto``).

    Returns:
        True for ``gpu`` or ``cuda``, and for ``auto`` when CUDA is available.
    """
    accelerator = str(accelerator or "auto").lower()
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_precision(precision: str | int | None, accelerator: str | None = "auto") -> str | int | None:
    """Resolve ``auto`` to the fastest precision that trains as well as fp32 here.

    Args:
        precision: the Trainer's ``precision``; any value other than ``auto`` is returned as is.
        accelerator: the Trainer's ``accelerator``.

    Returns:
        ``bf16-mixed``, ``16-mixed`` or ``32-true`` for ``auto`` (see the module docstring), else ``precision``.
    """
    if str(precision) != AUTO:
        return precision
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def has_conv2d(net: nn.Module) -> bool:
    """Whether ``net`` has a 2-D convolution (channels-last matters only then).

    Args:
        net: the model.

    Returns:
        True if any of its modules is an ``nn.Conv2d``.
    """
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def resolve_channels_last(
    value: bool | str,
    net: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 32,
    accelerator: str | None = "auto",
    processes: int = 1,
    min_gain: float = 0.1,
    cache_file: str | os.PathLike | None = None,
) -> bool:
    """Resolve ``auto`` to channels-last where it is faster; a bool is returned as is.

    Models without 2-D convolutions: off. On CUDA GPUs: on (cuDNN's NHWC kernels, above all in mixed precision).
    On a CPU, given the input shape: channels-last if it trains at least ``min_gain`` faster in a few timed steps
    of a copy of ``net`` (:func:`probe_channels_last`; pooling-heavy small CNNs gain a lot, conv-heavy ResNets may
    lose). The decision is kept in ``cache_file`` (JSON, keyed by machine, torch, threads, model and input) and
    reused, so every later run of the same model computes alike. Runs of several CPU processes (DDP) take NCHW
    without timing: every process must take the same layout, whatever launched it and however many threads it
    has. Without the shape: on.

    Args:
        value: True, False or ``auto``.
        net: the model.
        input_shape: one input's shape ``(C, H, W)``; None: not timed (on for convolutional models).
        batch_size: the training batch size (the timed batch is at most 32).
        accelerator: the Trainer's ``accelerator``.
        processes: how many training processes there are.
        min_gain: the fraction by which channels-last must be faster to be chosen on a CPU.
        cache_file: the JSON file that keeps the decisions; None: decide every time.

    Returns:
        Whether to run the model in channels-last memory format.

    Raises:
        ValueError: ``value`` is neither a bool nor ``auto``.
    """
    if isinstance(value, bool):
        return value
    if str(value) != AUTO:
        raise ValueError(f"module.channels_last must be true, false or auto, got {value!r}")
    if not has_conv2d(net):
        return False
    if uses_cuda(accelerator) or input_shape is None:
        return True
    if processes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        log.info("channels_last=auto: False (%d CPU processes take one layout without timing)", processes)
        return False
    key = layout_key(net, input_shape, batch_size)
    cache = _read_layouts(cache_file)
    if key in cache:
        log.info("channels_last=auto: %s (decided earlier on this machine, %s)", cache[key], cache_file)
        return cache[key]
    _, seconds = probe_channels_last(net, input_shape, batch_size)
    nchw, nhwc = min(seconds[False]), min(seconds[True])
    faster = nhwc < (1.0 - min_gain) * nchw
    log.info("channels_last=auto: %s (one training step: NCHW %.4f s, channels_last %.4f s)", faster, nchw, nhwc)
    if cache_file is not None:
        try:
            write_json(cache_file, {**_read_layouts(cache_file), key: faster})
        except OSError as e:  # a read-only cache folder costs a timing per run, nothing else
            log.warning("channels_last=auto: cannot keep the decision in %s (%s)", cache_file, e)
    return faster


def layout_key(net: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> str:
    """What the layout decision depends on: the machine, torch, threads, the model and its input.

    Args:
        net: the model (its ``repr`` is hashed).
        input_shape: one input's shape.
        batch_size: the training batch size.

    Returns:
        The key of the decision in the cache file.
    """
    model = hashlib.sha1(repr(net).encode()).hexdigest()[:12]
    shape = "x".join(str(int(d)) for d in input_shape)
    cpu = platform.processor() or platform.machine()
    return f"{cpu}|torch {torch.__version__}|{torch.get_num_threads()} threads|{model}|{shape}|batch {batch_size}"


def _read_layouts(cache_file: str | os.PathLike | None) -> dict[str, bool]:
    if cache_file is None:
        return {}

    try:
        with open(cache_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, bool)} if isinstance(data, dict) else {}


def probe_channels_last(
    net: nn.Module, input_shape: tuple[int, ...], batch_size: int = 32, steps: int = 2
) -> tuple[bool, dict[bool, list[float]]]:
    """Time training steps (forward, backward, SGD step) of copies of ``net`` in both layouts on random input.

    The layouts alternate after one warm-up step each. The batch is ``min(batch_size, 32)``; for slow models (a
    warm-up step over 1 s) one timed step each. The global random state is restored, so the run that follows
    draws exactly what it would have drawn.

    Args:
        net: the model (it is copied, not changed).
        input_shape: one input's shape.
        batch_size: the training batch size.
        steps: timed steps per layout.

    Returns:
        Whether channels-last was faster, and the step times in seconds per layout (True: channels-last).
    """
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(0)
        n = max(2, min(int(batch_size), 32))
        x = torch.randn(n, *input_shape)
        parts = {}
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model = copy.deepcopy(net).train().to(memory_format=fmt)
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
            parts[channels_last] = (model, opt, x.contiguous(memory_format=fmt))

        def step(channels_last: bool) -> float:
            model, opt, inp = parts[channels_last]
            start = time.perf_counter()
            out = model(inp)
            loss = out.float().logsumexp(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return time.perf_counter() - start

        warm = max(step(False), step(True))
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for i in range(1 if warm > 1.0 else steps):
            for channels_last in (False, True) if i % 2 == 0 else (True, False):
                seconds[channels_last].append(step(channels_last))
        return min(seconds[True]) < min(seconds[False]), seconds
    finally:
        torch.set_rng_state(rng)
