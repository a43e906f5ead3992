"""The task of ``export.py``: a trained run as one deployable file, ONNX or TorchScript, and ``model.json`` beside it.

The exported model carries the run's normalisation: it takes float32 images in [0, 1], ``(N, C, H, W)`` with ``N``
free, and returns the logits (:class:`~imgbench.models.NormalizedClassifier` around the run's network; for hash
models the class logits, not the codes). The parity check runs the written file (onnxruntime, ``torch.jit.load``)
and the run's own evaluation pipeline (uint8 -> the batch transform's single view -> the network) on the same test
images, one at a time and all together; the largest logit difference goes into ``model.json`` and ``metrics.json``,
and a file that differs by more than ``check_tolerance`` is removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from . import __version__
from .config import TASK_OPTIONS, instantiate_part, to_plain
from .data.augment import eval_views
from .errors import CheckpointError, ConfigError, DataError, UserError
from .io import atomic_open, write_json
from .models import NormalizedClassifier
from .record import environment, model_name, run_record, source_commit
from .trained import TrainedRun, checkpoint_file, load_trained

try:  # the export extra (pip install -e '.[export]'); TorchScript needs torch alone
    import onnx
    import onnxruntime
except ImportError:
    onnx = onnxruntime = None

log = logging.getLogger(__name__)

# format -> the file written into the run directory
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
# the opset torch's ONNX exporter writes natively; older ones need a conversion that fails for common ops (Pad)
MIN_OPSET = 18
INPUT, OUTPUT = "images", "logits"
# the options of conf/export.yaml besides those train.yaml has
EXPORT_KEYS = {"format", "opset", "check", "check_images", "check_tolerance"}
# the ONNX exporter's passes, which log every step at INFO
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


class ParityError(UserError):
    """The exported model's logits differ from the run's by more than ``check_tolerance`` (the file is removed)."""


# ---------------------------------------------------------------------------- the config check


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_config(cfg: DictConfig) -> None:
    """The values of ``conf/export.yaml``, checked before anything is loaded or a run directory exists.

    Raises:
        ConfigError: the first problem, naming the key and the fix.
    """
    fmt = cfg.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got '{fmt}'; set format=onnx or torchscript")
    if fmt == "onnx" and onnxruntime is None:
        raise ConfigError(
            "format=onnx needs onnx, onnxruntime and onnxscript: pip install -e '.[export]' (or set format=torchscript)"
        )
    newest = onnx.defs.onnx_opset_version() if onnx is not None else MIN_OPSET
    opset = cfg.get("opset")
    if fmt == "onnx" and not (_whole(opset, MIN_OPSET) and opset <= newest):
        raise ConfigError(
            f"opset must be a whole number in {MIN_OPSET}..{newest}, got {opset!r}; set opset={MIN_OPSET}"
        )
    if not isinstance(cfg.get("check"), bool):
        raise ConfigError(f"check must be true or false, got {cfg.get('check')!r}")
    if not _whole(cfg.get("check_images"), 1):
        raise ConfigError(f"check_images must be a whole number >= 1, got {cfg.get('check_images')!r}")
    tolerance = cfg.get("check_tolerance")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance > 0:
        raise ConfigError(f"check_tolerance must be a number > 0, got {tolerance!r}; e.g. check_tolerance=1e-4")
    ckpt = checkpoint_file(str(cfg.ckpt_path))
    if not ckpt.is_file():
        raise ConfigError(f"ckpt_path: {ckpt} does not exist; pass a run directory or its checkpoints/<name>.ckpt file")


TASK_OPTIONS["export"] = (EXPORT_KEYS, check_config)


# ---------------------------------------------------------------------------- the task


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export the run that wrote ``cfg.ckpt_path``; writes the model file, ``model.json`` and ``metrics.json``.

    Args:
        cfg: the composed ``conf/export.yaml`` (checked by :func:`check_config`).

    Returns:
        What ``metrics.json`` holds.

    Raises:
        CheckpointError: the checkpoint does not record what the export needs.
        ParityError: the exported model differs from the run's pipeline by more than ``check_tolerance``.
    """
    out = Path(cfg.paths.output_dir)
    run = load_trained(cfg)
    dm = run.datamodule
    if not dm.mean or not dm.std:
        raise CheckpointError(
            f"{run.ckpt_path} does not record the statistics its images were normalised with (written by an older "
            f"imgbench); export a checkpoint of a newer run"
        )
    if dm.eval_views != "one":
        log.info("the run evaluated with data.eval_views=%s; the exported model takes one view", dm.eval_views)
    model = NormalizedClassifier(run.module.net, dm.mean, dm.std).eval()
    path = out / FORMATS[cfg.format]
    example = torch.rand((2, *dm.image_shape), generator=torch.Generator().manual_seed(0))  # N=2: N stays free
    with torch.no_grad():
        if cfg.format == "onnx":
            exporter = write_onnx(model, example, path, cfg.opset)
        else:
            exporter = write_torchscript(model, example, path)
    log.info("wrote %s (%s)", path, exporter)
    parity = None
    if cfg.check:
        try:
            parity = check_parity(run, path, cfg.check_images, float(cfg.check_tolerance))
        except BaseException:
            path.unlink(missing_ok=True)  # an unchecked file is not left behind
            raise
        if not parity["passed"]:
            path.unlink()
            raise ParityError(
                f"the exported {cfg.format} model's logits differ from the run's by up to {parity['max_abs_diff']:.3g} "
                f"(check_tolerance={cfg.check_tolerance:g}; top-1 agreement {parity['top1_agreement']:.1%}); "
                f"{path.name} was removed. Try the other format, or set check_tolerance to accept it"
            )
    write_json(out / "model.json", describe(run, cfg, path, exporter, parity))
    checked = {} if parity is None else {k: parity[k] for k in ("max_abs_diff", "top1_agreement")}
    result = {
        **run_record(cfg),
        "status": "finished",
        "checkpoint": str(run.ckpt_path),
        "data": dm.name,
        "format": cfg.format,
        "file": str(path),
        "metrics": {f"export/{k}": v for k, v in checked.items()},
        "parity": parity,
        "environment": environment(),
    }
    write_json(out / "metrics.json", result)
    log.info("run directory: %s", out)
    return result


# ---------------------------------------------------------------------------- writing the file


def write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> str:
    """Write ``model`` to ``path`` as ONNX with a free batch axis ``N``, atomically; returns the exporter used.

    Args:
        model: the model (float images -> logits), in eval mode.
        example: an input batch (its size is not fixed in the file).
        path: the ``.onnx`` file.
        opset: the ONNX opset.
    """
    names = {"input_names": [INPUT], "output_names": [OUTPUT], "opset_version": opset}
    with _quiet_loggers(EXPORTER_LOGGERS):
        data, exporter = _onnx_bytes(model, example, names)
    with atomic_open(path, "wb") as f:
        f.write(data)
    return exporter


def _onnx_bytes(model: torch.nn.Module, example: torch.Tensor, names: dict[str, Any]) -> tuple[bytes, str]:
    """The ONNX file's bytes and the exporter that made them."""
    try:
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("N", min=1)},), verbose=False, **names
        )
        data, exporter = program.model_proto.SerializeToString(), "torch.onnx (torch.export)"
    except Exception as e:
        # torch.export cannot capture every model (data-dependent Python control flow, an op it cannot translate,
        # onnxscript missing); the deprecated TorchScript-based exporter traces those
        log.warning("torch.export-based ONNX export failed (%s: %s); tracing instead", type(e).__name__, _first_line(e))
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dynamic = {INPUT: {0: "N"}, OUTPUT: {0: "N"}}
            torch.onnx.export(model, (example,), buffer, dynamo=False, dynamic_axes=dynamic, **names)
        data, exporter = buffer.getvalue(), "torch.onnx (TorchScript tracing)"
    return data, exporter


@contextlib.contextmanager
def _quiet_loggers(names: tuple[str, ...]) -> Iterator[None]:
    """Raise these loggers to WARNING for a while (the run's log keeps what matters)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch.jit is deprecated in favour of torch.export, but TorchScript is what LibTorch loads: silence that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        yield


def write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> str:
    """Write ``model`` to ``path`` as TorchScript, atomically; returns the exporter used.

    Traced, not scripted: several of our models are not scriptable Python (layer lists, input adapters), and a trace
    of these feed-forward networks keeps the batch size free.

    Args:
        model: the model (float images -> logits), in eval mode.
        example: an input batch.
        path: the ``.pt`` file.
    """
    with _quiet_jit():
        traced = torch.jit.trace(model, example)
        with atomic_open(path, "wb") as f:
            torch.jit.save(traced, f)
    return "torch.jit.trace"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


# ---------------------------------------------------------------------------- the parity check


def parity_images(run: TrainedRun, count: int) -> tuple[torch.Tensor, str]:
    """uint8 images at the model's input size: the first ``count`` test images of the run's data, else random ones.

    Args:
        run: the trained run.
        count: how many images.

    Returns:
        The images ``(n, C, H, W)`` (the evaluation's centre crop) and where they come from.
    """
    dm = run.datamodule
    try:
        # a DataModule of its own: setup() on the run's would replace the checkpoint's statistics with the data's
        data = instantiate_part(run.cfg.data, _convert_="all")
        data.setup()
        n = min(count, data.split_sizes.get("test", 0))
        if n == 0:
            raise DataError(f"{data.name} has no test images")
        images = eval_views(data.split_images("test", torch.arange(n)), "one", dm.crop_size)
        return images.contiguous(), f"the first {n} test images of {dm.name}"
    except (UserError, OSError) as e:
        log.warning("parity check on %d random images: the test images cannot be read (%s)", count, e)
        generator = torch.Generator().manual_seed(int(run.cfg.get("seed") or 0))
        images = torch.randint(0, 256, (count, *dm.image_shape), dtype=torch.uint8, generator=generator)
        return images, "random images (the test images could not be read)"


def exported_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The file at ``path`` as a function of float images -> logits: onnxruntime on the CPU, or ``torch.jit.load``."""
    if path.suffix == ".onnx":
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the thread budget torch was given
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])
    with _quiet_jit():
        return torch.jit.load(str(path), map_location="cpu").eval()


def check_parity(run: TrainedRun, path: Path, count: int, tolerance: float) -> dict[str, Any]:
    """Compare the exported file with the run's pipeline on the same images, one at a time and as one batch.

    The run's pipeline: uint8 images -> the batch transform's normalisation of the single evaluation view -> the
    network. The exported file: the same images as float32 in [0, 1] (``x / 255``).

    Args:
        run: the trained run.
        path: the exported file.
        count: images to compare.
        tolerance: the largest absolute logit difference that passes.

    Returns:
        The images' source, the batch sizes run, the largest absolute logit difference, the share of images whose
        top-1 class agrees, the tolerance, and whether it passed.
    """
    images, source = parity_images(run, count)
    with torch.no_grad():
        expected = run.module.net(run.datamodule.transform.normalize(images)).float()
        x = images.to(torch.float32) / 255
        run_file = exported_runner(path)
        sizes = sorted({1, len(x)})
        outputs = {n: run_file(x[:n]).float() for n in sizes}
    max_diff = max(float((outputs[n] - expected[:n]).abs().max()) for n in sizes)
    agreement = float((outputs[len(x)].argmax(1) == expected.argmax(1)).float().mean())
    parity = {
        "images": len(x),
        "source": source,
        "runtime": "onnxruntime (CPU)" if path.suffix == ".onnx" else "torch.jit.load",
        "batch_sizes": sizes,
        "max_abs_diff": max_diff,
        "top1_agreement": agreement,
        "tolerance": tolerance,
        "passed": bool(np.isfinite(max_diff) and max_diff <= tolerance),
    }
    log.info(
        "parity (%s, %s, batches of %s): largest |logit difference| %.3g (tolerance %g), top-1 agreement %.1f%%",
        parity["runtime"], source, " and ".join(map(str, sizes)), max_diff, tolerance, 100 * agreement,
    )  # fmt: skip
    return parity


# ---------------------------------------------------------------------------- model.json


def describe(
    run: TrainedRun, cfg: DictConfig, path: Path, exporter: str, parity: dict[str, Any] | None
) -> dict[str, Any]:
    """What ``model.json`` says: the file, its input and output, classes, normalisation, source run and versions."""
    dm = run.datamodule
    c, h, w = dm.image_shape
    data = to_plain(run.cfg.data)
    views_note = (
        f"the run evaluated with data.eval_views={dm.eval_views} (the softmax averaged over those views); this model "
        f"takes one view: average its softmax over your own views to match"
        if dm.eval_views != "one"
        else None
    )
    return {
        "format": cfg.format,
        "file": path.name,
        "exporter": exporter,
        **({"opset": _opset(path)} if cfg.format == "onnx" else {}),
        "input": {
            "name": INPUT,
            "dtype": "float32",
            "range": [0.0, 1.0],
            "shape": ["N", c, h, w],
            "dynamic_axes": ["N"],
            "layout": "NCHW",
            "channels": {1: "gray", 3: "RGB"}.get(c, f"{c} channels"),
        },
        "output": {
            "name": OUTPUT,
            "dtype": "float32",
            "shape": ["N", len(dm.classes)],
            "classes": len(dm.classes),
            "meaning": "logits: softmax over the last axis gives the class probabilities, argmax the class",
        },
        "classes": [
            {"index": i, "id": str(k), "name": name} for i, (k, name) in enumerate(zip(dm.classes, run.classes))
        ],
        "normalization": {
            "mean": dm.mean,
            "std": dm.std,
            "units": "[0, 1] pixel values",
            "applied": "inside the model: (x - mean) / std per channel; give it x = pixels / 255",
            "data.normalize": dm.normalize,
        },
        "preprocessing": {
            "stored_size": list(dm.stored_size),
            "center_crop": list(dm.crop_size) if dm.crop_size else None,
            "data": {k: data[k] for k in ("image_size", "resize", "crop_size", "eval_resize") if k in data},
            "steps": "bring an image to stored_size as the run's data was, then take its centre crop of the input "
            "size (none when they are equal)",
            "eval_views": dm.eval_views,
            **({"note": views_note} if views_note else {}),
        },
        "source": {
            "checkpoint": str(run.ckpt_path.resolve()),
            "run_dir": str(run.run_dir.resolve()) if run.run_dir else None,
            "model": model_name(run.cfg.model),
            "module": str(run.cfg.module["_target_"]).rsplit(".", 1)[-1],
            "data": dm.name,
            "seed": run.cfg.get("seed"),
            "test_metrics": _run_metrics(run.run_dir),
        },
        "parity": parity,
        "versions": {
            "imgbench": __version__,
            "commit": source_commit(),
            "torch": torch.__version__,
            **({"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__} if onnx is not None else {}),
        },
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _opset(path: Path) -> int:
    """The default-domain opset the written file declares (torch keeps 18 when it cannot convert)."""
    model = onnx.load(str(path), load_external_data=False)
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _run_metrics(run_dir: Path | None) -> dict[str, Any] | None:
    """The test metrics of the run's ``metrics.json`` (None without one)."""
    if run_dir is None:
        return None
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("metrics")
    except (OSError, ValueError):
        return None
