"""Checkpoints that survive being killed: atomic writes, plain-data contents, checks before loading."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .errors import CheckpointError
from .io import atomic_open

CONFIG_KEY = "imgbench"  # the checkpoint entry with the run's config (eval.py rebuilds the run from it)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but the file appears only when complete.

    The checkpoint is written to a temporary file next to it, flushed to disk, then renamed over the old one. A
    kill during a save leaves the previous checkpoint.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        fs = get_filesystem(path)
        if fs.protocol not in ("file", ("file", "local")) and "file" not in fs.protocol:
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote storage: as Lightning does
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by imgbench with ``weights_only=True`` (no code is unpickled).

    Args:
        path: the ``.ckpt`` file.

    Returns:
        The checkpoint dictionary (with ``state_dict`` and the run config under :data:`CONFIG_KEY`).

    Raises:
        CheckpointError: the file is missing, unreadable, or not an imgbench checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__}); pass a .ckpt file written by train.py"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or CONFIG_KEY not in ckpt:
        raise CheckpointError(
            f"{path} is not an imgbench checkpoint (no state_dict or run config); pass one written by train.py"
        )
    return ckpt


def check_fits(ckpt: dict[str, Any], module: torch.nn.Module, path: str | os.PathLike) -> None:
    """Check that a checkpoint's weights fit ``module`` (not another model, not other classes).

    Args:
        ckpt: the checkpoint, as :func:`read_checkpoint` returns it.
        module: the LightningModule the weights are for.
        path: the checkpoint file (named in the error).

    Raises:
        CheckpointError: a one-line error when tensors are missing, unexpected or mis-shaped.
    """
    ours = module.state_dict()
    theirs = ckpt["state_dict"]
    saved = (ckpt.get(CONFIG_KEY) or {}).get("config") or {}
    model = (saved.get("model") or {}).get("_target_", "?").rsplit(".", 1)[-1]
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    wrong = [k for k in set(ours) & set(theirs) if tuple(ours[k].shape) != tuple(theirs[k].shape)]
    if missing or extra or wrong:
        detail = f"{len(missing)} missing, {len(extra)} unexpected and {len(wrong)} mis-shaped tensors" + (
            f" (e.g. {wrong[0]}: {tuple(theirs[wrong[0]].shape)} vs {tuple(ours[wrong[0]].shape)})" if wrong else ""
        )
        raise CheckpointError(
            f"{path} holds a '{model}' model that does not fit this run's model ({detail}); use a checkpoint of the "
            f"same model and number of classes, or drop ckpt_path/resume"
        )


def saved_channels_last(ckpt: dict[str, Any] | None) -> bool | None:
    """The memory layout the checkpoint's run trained in (``None``: not recorded)."""
    value = (((ckpt or {}).get(CONFIG_KEY) or {}).get("config") or {}).get("module", {}).get("channels_last")
    return value if isinstance(value, bool) else None


def rng_state() -> dict[str, Any]:
    """The global torch random states (dropout and other layers draw from them).

    Returns:
        The CPU generator's state under ``torch`` and, when CUDA is in use, every GPU's under ``cuda``.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global torch random states that :func:`rng_state` returned.

    Args:
        state: the saved states; a ``cuda`` entry is skipped on a machine without CUDA.
    """
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
