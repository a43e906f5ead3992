"""The task of ``predict.py``: a trained run's classes for any images, in ``predictions.csv``.

The run is rebuilt from its checkpoint alone (:func:`imgbench.trained.load_trained`); each image is read and
prepared as the run's evaluation data was (:mod:`imgbench.data.inference`, then the run's own evaluation batch
transform: centre crop, views, normalisation), so that the top-1 class of an image of the run's test split is the
run's own test prediction. A folder of class folders (named after the run's classes) is also scored: accuracy and a
confusion matrix.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from .callbacks.plots import draw_confusion_matrix, save_png
from .config import TASK_OPTIONS
from .data import BatchedDataModule
from .data.augment import EVAL_VIEWS
from .data.inference import InputFiles, check_input, folder_labels, list_inputs, load_images
from .errors import ConfigError, DataError
from .hydra_runtime import job_overrides
from .io import atomic_open, write_json
from .record import environment, run_record
from .run import output_dir
from .trained import load_trained

log = logging.getLogger(__name__)

VIEWS = ("run", *EVAL_VIEWS)
PREDICTIONS_FILE = "predictions.csv"
SHOWN_ROWS = 10  # rows of predictions.csv printed
SHOWN_FAILURES = 20  # unreadable files named in the log (metrics.json lists them all)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict the images ``cfg.input`` names with the run of ``cfg.ckpt_path``; write predictions.csv and metrics.json.

    Args:
        cfg: the composed ``conf/predict.yaml``: ``ckpt_path``, ``input``, ``top_k``, ``views``, ``batch_size``,
            ``device``.

    Returns:
        What metrics.json holds.

    Raises:
        ConfigError: a value that cannot work (checked before any image is read).
        CheckpointError: the checkpoint is missing or unusable.
        DataError: the input holds no readable image.
    """
    check_options(cfg)  # the config check did, before the run directory existed; again for direct calls
    spec, top_k, batch_size, device = str(cfg.input), int(cfg.top_k), int(cfg.batch_size), _device(str(cfg.device))
    trained = load_trained(cfg)
    dm, module, classes = trained.datamodule, trained.module, trained.classes
    if top_k > len(classes):
        if any(o.lstrip("+").startswith("top_k=") for o in job_overrides()):
            raise ConfigError(f"top_k must be between 1 and {len(classes)} (the run's classes), got {top_k}")
        top_k = len(classes)  # the default asks for more classes than a small run has: all of them
    if cfg.views != "run":
        dm.use_eval_views(str(cfg.views))
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    module.to(device)

    with tempfile.TemporaryDirectory(prefix=".input-", dir=out) as scratch:  # an archive is extracted here
        inputs = list_inputs(spec, Path(scratch))
        if not inputs.files:
            raise DataError(
                f"input={spec} holds no image files ({len(inputs.ignored)} other files); pass images Pillow reads "
                f"(.png, .jpg, .webp, .tif, ...)"
            )
        probs, top, kept, failed = _predict_files(inputs, dm, module, top_k, batch_size, device)
    unreadable = [{"file": inputs.names[i], "error": reason} for i, reason in failed]
    _log_unreadable(unreadable)
    if not kept:
        raise DataError(
            f"none of the {len(inputs.files)} image files of input={spec} is readable ({unreadable[0]['error']}); "
            f"check the files"
        )
    names = [inputs.names[i] for i in kept]
    labels = folder_labels(inputs.names, [dm.classes, classes])
    labels = [labels[i] for i in kept] if labels is not None else None
    rows = _rows(names, labels, probs, top, classes)
    _write_csv(out / PREDICTIONS_FILE, top_k, labels is not None, rows)
    _log_table(rows, labels is not None)

    result: dict[str, Any] = {
        **run_record(cfg),
        "status": "finished",
        "checkpoint": str(trained.ckpt_path),
        "data": dm.name,
        "input": spec,
        "views": dm.eval_views,
        "top_k": top_k,
        "predicted": len(kept),
        "unreadable": {"count": len(unreadable), "files": unreadable},
        "ignored": {"count": len(inputs.ignored), "files": inputs.ignored},
        "predictions": PREDICTIONS_FILE,
    }
    if labels is not None:
        result.update(_score(torch.tensor(labels), top, classes, top_k, out, f"{result['model']} on {spec}"))
    result["environment"] = environment()
    write_json(out / "metrics.json", result)
    log.info("predicted %d images (%d unreadable) -> %s", len(kept), len(unreadable), out / PREDICTIONS_FILE)
    return result


def check_options(cfg: DictConfig) -> None:
    """Check predict.py's own options, before the checkpoint or any image is read (one line for the first problem).

    ``top_k`` is checked against the run's classes once the checkpoint is read.

    Args:
        cfg: the composed ``conf/predict.yaml``.

    Raises:
        ConfigError: ``input`` names nothing, or ``top_k``, ``batch_size``, ``views`` or ``device`` cannot work.
    """
    check_input(str(cfg.input))
    for key in ("top_k", "batch_size"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a whole number >= 1, got {value!r}; set {key}=<number>")
    if cfg.views not in VIEWS:
        raise ConfigError(
            f"views must be one of {', '.join(VIEWS)} (run: the run's data.eval_views), got '{cfg.views}'"
        )
    _device(str(cfg.device))


TASK_OPTIONS["predict"] = ({"input", "top_k", "views", "batch_size", "device"}, check_options)


def _device(name: str) -> torch.device:
    """``device``: auto (the GPU when there is one, else the CPU) or a torch device that is there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:<n> or mps, got '{name}'") from None
    there = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(device.type)
    if there is not None and not there():
        raise ConfigError(f"device={name} is not available on this machine; set device=cpu or device=auto")
    return device


@torch.inference_mode()
def _predict_files(
    inputs: InputFiles,
    dm: BatchedDataModule,
    module: L.LightningModule,
    top_k: int,
    batch_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[tuple[int, str]]]:
    """The top-k probabilities and classes of every readable file, in batches of ``batch_size``.

    Returns:
        Probabilities ``(n, top_k)`` (descending), classes ``(n, top_k)``, the positions in ``inputs.files`` they
        belong to, and ``(position, reason)`` for each unreadable file.
    """
    probs, top, kept, failed = [], [], [], []
    for start in range(0, len(inputs.files), batch_size):
        end = start + batch_size
        images, ok, bad = load_images(inputs.files[start:end], inputs.names[start:end], dm)
        kept += [start + i for i in ok]
        failed += [(start + i, reason) for i, reason in bad]
        if images is None:
            continue
        x = dm.transform(images.to(device), train=False)  # the run's evaluation crop, views and normalisation
        p = module.predict_logits(x).float().softmax(-1)
        values, classes = p.topk(top_k, dim=-1)
        probs.append(values.cpu())
        top.append(classes.cpu())
    if not kept:
        return torch.zeros(0, top_k), torch.zeros(0, top_k, dtype=torch.long), kept, failed
    return torch.cat(probs), torch.cat(top), kept, failed


def _rows(
    names: list[str], labels: list[int] | None, probs: torch.Tensor, top: torch.Tensor, classes: Sequence[str]
) -> list[list[str]]:
    rows = []
    for i, (name, p, c) in enumerate(zip(names, probs.tolist(), top.tolist())):
        row = [name] + ([classes[labels[i]]] if labels is not None else [])
        for cls, prob in zip(c, p):
            row += [classes[cls], f"{prob:.6f}"]
        rows.append(row)
    return rows


def _write_csv(path: Path, top_k: int, labelled: bool, rows: list[list[str]]) -> None:
    """predictions.csv: ``file[,label],pred_1,prob_1,...,pred_k,prob_k``, classes by name."""
    header = ["file"] + (["label"] if labelled else [])
    for j in range(1, top_k + 1):
        header += [f"pred_{j}", f"prob_{j}"]
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _log_table(rows: list[list[str]], labelled: bool) -> None:
    """The first rows, aligned: file, label, and the top three as ``class (probability)``."""
    first = 2 if labelled else 1
    shown = [[r[0][-48:], *r[1:first], *(f"{c} ({float(p):.3f})" for c, p in zip(r[first::2], r[first + 1 :: 2]))]
             for r in rows[:SHOWN_ROWS]]  # fmt: skip
    shown = [r[: first + 3] for r in shown]
    header = ["file", *(["label"] if labelled else []), *(f"top-{j}" for j in range(1, len(shown[0]) - first + 1))]
    widths = [max(len(str(r[j])) for r in [header, *shown]) for j in range(len(header))]
    for r in [header, *shown]:
        log.info("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    if len(rows) > SHOWN_ROWS:
        log.info("... %d more rows", len(rows) - SHOWN_ROWS)


def _log_unreadable(unreadable: list[dict[str, str]]) -> None:
    for entry in unreadable[:SHOWN_FAILURES]:
        log.warning("unreadable, skipped: %s", entry["error"])
    if len(unreadable) > SHOWN_FAILURES:
        log.warning("... and %d more unreadable files (all in metrics.json)", len(unreadable) - SHOWN_FAILURES)


def _score(
    labels: torch.Tensor, top: torch.Tensor, classes: Sequence[str], top_k: int, out: Path, title: str
) -> dict[str, Any]:
    """Accuracy (top-1, top-k) and the confusion matrix (PNG) of labelled predictions.

    The matrix covers the classes that occur (as labels or predictions), so that a 1000-class run stays readable.
    """
    pred = top[:, 0]
    acc = int((pred == labels).sum()) / len(labels)
    metrics = {"predict/acc": acc, f"predict/acc_top{top_k}": int((top == labels[:, None]).any(1).sum()) / len(labels)}
    present = torch.unique(torch.cat([labels, pred]))  # sorted class indices
    position = torch.full((len(classes),), -1, dtype=torch.long)
    position[present] = torch.arange(len(present))
    n = len(present)
    matrix = torch.bincount(position[labels] * n + position[pred], minlength=n * n).view(n, n)
    names = [classes[i] for i in present.tolist()]
    fig = draw_confusion_matrix(matrix.numpy(), names, title=f"{title}: {len(labels)} images, accuracy {acc:.4f}")
    save_png(fig, out / "confusion_matrix.png")
    log.info("accuracy over %d labelled images: %s", len(labels), ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return {
        "metrics": metrics,
        "labelled": len(labels),
        "confusion_matrix": {"file": "confusion_matrix.png", "classes": names, "matrix": matrix.tolist()},
    }
