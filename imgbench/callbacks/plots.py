"""The pictures of a run, drawn with matplotlib's object API (no pyplot: no global state, no GUI backend).

Each ``draw_*`` function takes plain numbers and returns a :class:`~matplotlib.figure.Figure`;
:func:`figure_to_rgb` renders one once for both the PNG (:func:`save_png`, atomic) and TensorBoard.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..io import atomic_open

TRAIN_COLOR, VAL_COLOR = "tab:blue", "tab:orange"
RIGHT_COLOR, WRONG_COLOR = "#1a7f37", "#cf222e"  # green / red titles in the prediction grid


def figure_to_rgb(fig: Figure, dpi: int = 100) -> np.ndarray:
    """Render a figure for a PNG and ``SummaryWriter.add_image``.

    Args:
        fig: the figure.
        dpi: its resolution, in dots per inch.

    Returns:
        ``fig`` as an ``(H, W, 3)`` uint8 array.
    """
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(image: Figure | np.ndarray, path: str | os.PathLike) -> None:
    """Write a figure or an ``(H, W, 3)`` uint8 array as a PNG, atomically.

    Args:
        image: a figure (rendered at 100 dpi) or an ``(H, W, 3)`` uint8 array.
        path: the PNG file to write.
    """
    from PIL import Image

    rgb = figure_to_rgb(image) if isinstance(image, Figure) else image
    with atomic_open(path, "wb") as f:
        Image.fromarray(rgb).save(f, format="PNG")


# ---------------------------------------------------------------------------- training curves


def draw_curves(history: Mapping[str, Sequence[float | None]], epochs: Sequence[int], title: str = "") -> Figure:
    """Loss and accuracy per epoch: two panels, train and validation lines.

    Args:
        history: ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc`` -> one value per epoch (None: not
            measured that epoch, e.g. validation every n epochs).
        epochs: the x values (1-based epoch numbers).
        title: a line above both panels (the model and data).

    Returns:
        The figure.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = np.asarray(epochs, dtype=float)
    for ax, metric, name in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
            y = np.array([np.nan if v is None else v for v in history.get(f"{split}_{metric}", [])], dtype=float)
            if y.size and not np.all(np.isnan(y)):
                keep = ~np.isnan(y)
                label = "train" if split == "train" else "validation"
                marker = "o" if len(x) <= 50 else None  # dots for short runs, plain lines for 1000 epochs
                ax.plot(x[: y.size][keep], y[keep], marker=marker, markersize=3, color=color, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if 0 < len(x) <= 12:
            ax.set_xticks(x)  # every epoch
            if len(x) == 1:
                ax.set_xlim(x[0] - 1, x[0] + 1)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    ax_loss.set_title("loss")
    val_acc = [(v, e) for v, e in zip(history.get("val_acc", []), epochs) if v is not None]
    if val_acc:
        best, at = max(val_acc)
        ax_acc.set_title(f"accuracy (best validation {best:.4f}, epoch {at})")
    else:
        ax_acc.set_title("accuracy")
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------- confusion matrix


def draw_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], title: str = "") -> Figure:
    """Counts (rows: true class, columns: predicted class), coloured by the share of each true class.

    Counts are written in the cells up to 30 classes; beyond that only the colours remain readable.

    Args:
        matrix: ``(C, C)`` counts, rows: true class, columns: predicted class.
        classes: the ``C`` class names.
        title: a line above the matrix.

    Returns:
        The figure.
    """
    matrix = np.asarray(matrix)
    n = len(classes)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = min(max(6.0, 0.5 * n + 2.5), 20.0)
    font = 10 if n <= 10 else 8 if n <= 30 else 6
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    cbar.set_label("share of the true class")
    slanted = max(len(c) for c in classes) > 3  # long names at 45 degrees, digits upright
    ax.set_xticks(
        range(n),
        labels=list(classes),
        rotation=45 if slanted else 0,
        ha="right" if slanted else "center",
        rotation_mode="anchor",
    )
    ax.set_yticks(range(n), labels=list(classes))
    ax.tick_params(labelsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", color=color, fontsize=font)
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------- prediction grid


def grid_shape(count: int) -> tuple[int, int]:
    """The shape of a near-square grid for ``count`` panels, e.g. 12 -> 3 x 4, 25 -> 5 x 5.

    Args:
        count: how many panels the grid holds.

    Returns:
        ``(rows, columns)``.
    """
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def draw_prediction_grid(
    images: np.ndarray,
    labels: Sequence[int],
    predictions: Sequence[int],
    classes: Sequence[str],
    title: str = "",
) -> Figure:
    """One panel per image, titled ``label=<class>, predict=<class>`` (green when right, red when wrong).

    Args:
        images: uint8 ``(N, H, W)``, ``(N, 1, H, W)`` or ``(N, 3, H, W)`` (what the DataModules keep), or
            ``(N, H, W, 3)``.
        labels: the true class index of each image.
        predictions: the predicted class index of each image.
        classes: class names.
        title: a line above the grid.

    Returns:
        The figure.

    Raises:
        ValueError: there are no images.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    count = len(images)
    if count == 0:
        raise ValueError("draw_prediction_grid needs at least one image")
    titles = [f"label={classes[t]}, predict={classes[p]}" for t, p in zip(labels, predictions)]
    rows, cols = grid_shape(count)
    font = 9
    panel = max(1.7, max(len(t) for t in titles) * font * 0.6 / 72 + 0.2)  # wide enough for the longest title
    fig = Figure(figsize=(cols * panel, rows * (panel + 0.1) + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for k, ax in enumerate(axes):
        if k >= count:
            fig.delaxes(ax)
            continue
        gray = images[k].ndim == 2
        ax.imshow(images[k], cmap="gray" if gray else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        right = labels[k] == predictions[k]
        ax.set_title(titles[k], fontsize=font, color=RIGHT_COLOR if right else WRONG_COLOR)
    if title:
        fig.suptitle(title)
    return fig
