"""The report callbacks: curves, confusion matrix, prediction grid and submission.csv hold what they claim."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgbench.callbacks import (
    MetricCurves,
    PredictionGrid,
    Predictions,
    SubmissionWriter,
    draw_confusion_matrix,
    draw_curves,
    draw_prediction_grid,
    interleave_shares,
)
from imgbench.callbacks.plots import RIGHT_COLOR, WRONG_COLOR, grid_shape
from imgbench.run import evaluate, train

from .conftest import SHARED_DATA, compose_cfg, needs_shared, run_cli

REPORTS = ("metric_curves", "confusion_matrix", "prediction_grid", "submission")
FILES = (
    "curves.png",
    "history.csv",
    "confusion_matrix.png",
    "confusion_matrix.csv",
    "predictions.png",
    "submission.csv",
)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _is_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# ---------------------------------------------------------------------------- drawing functions


@pytest.mark.parametrize(
    ("count", "shape"),
    [(12, (12, 3, 32, 32)), (25, (25, 1, 28, 28)), (7, (7, 28, 28)), (1, (1, 32, 32, 3))],
)
def test_grid_has_one_titled_panel_per_image(count, shape):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    classes = ["airplane", "automobile", "bird"]
    labels = rng.integers(0, 3, count).tolist()
    preds = [labels[0], *rng.integers(0, 3, count - 1).tolist()]
    fig = draw_prediction_grid(images, labels, preds, classes, title="t")
    assert len(fig.axes) == count  # the unused cells of the last row are removed
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [f"label={classes[t]}, predict={classes[p]}" for t, p in zip(labels, preds)]
    colors = [ax.title.get_color() for ax in fig.axes]
    assert colors == [RIGHT_COLOR if t == p else WRONG_COLOR for t, p in zip(labels, preds)]


def test_grid_shape_is_near_square():
    assert grid_shape(12) == (3, 4) and grid_shape(25) == (5, 5) and grid_shape(7) == (3, 3) and grid_shape(1) == (1, 1)


def test_curves_have_loss_and_accuracy_panels():
    history = {"train_loss": [1.0, 0.5], "val_loss": [0.9, None], "train_acc": [0.6, 0.8], "val_acc": [0.7, None]}
    fig = draw_curves(history, [1, 2])
    loss, acc = fig.axes
    assert loss.get_ylabel() == "loss" and acc.get_ylabel() == "accuracy" and loss.get_xlabel() == "epoch"
    assert [line.get_label() for line in acc.lines] == ["train", "validation"]
    assert list(acc.lines[1].get_xdata()) == [1]  # an epoch without validation is left out, not drawn as 0
    assert "best validation 0.7000, epoch 1" in acc.get_title()


def test_confusion_matrix_figure_names_the_classes():
    classes = ["T-shirt/top", "Trouser", "Ankle boot"]
    fig = draw_confusion_matrix(np.array([[5, 1, 0], [0, 6, 0], [2, 0, 4]]), classes)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert {t.get_text() for t in ax.texts} >= {"5", "6", "4"}


# ---------------------------------------------------------------------------- collection and ordering


def test_interleave_shares_restores_the_split_order():
    """Rank r evaluated positions r, r + world, ...; uneven shares are padded for all_gather."""
    size, world = 11, 3
    counts = [len(range(r, size, world)) for r in range(world)]  # 4, 4, 3
    width = max(counts)
    values = torch.full((world, width), -1)
    for r in range(world):
        values[r, : counts[r]] = torch.arange(r, size, world) * 10
    index, out = interleave_shares({"v": values}, counts, size)
    assert index.tolist() == list(range(size))
    assert out["v"].tolist() == [10 * i for i in range(size)]


def test_interleave_shares_drops_sampler_padding():
    """A DistributedSampler pads the last round with repeated images: positions >= size are dropped."""
    values = torch.tensor([[0, 2, 4], [1, 3, 0]])  # rank 1's last item is padding (position 5 of 5)
    index, out = interleave_shares({"v": values}, [3, 3], size=5)
    assert index.tolist() == [0, 1, 2, 3, 4] and out["v"].tolist() == [0, 1, 2, 3, 4]


def _predictions(n: int = 40) -> Predictions:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, 3, (n,), generator=g)
    pred = torch.where(torch.arange(n) % 4 == 0, (label + 1) % 3, label)  # every 4th is wrong
    return Predictions(torch.arange(n), label, pred, torch.full((n,), 0.9), num_classes=3)


def test_grid_choice():
    p = _predictions()
    assert PredictionGrid(count=5, sample="first").choose(p).tolist() == [0, 1, 2, 3, 4]
    rand = PredictionGrid(count=12, sample="random", seed=3).choose(p)
    assert len(set(rand.tolist())) == 12 and rand.tolist() == sorted(rand.tolist())
    assert torch.equal(rand, PredictionGrid(count=12, sample="random", seed=3).choose(p))  # same images every run
    errors = PredictionGrid(count=12, sample="errors").choose(p)
    assert len(errors) == 12 and all(i % 4 == 0 for i in errors[:10].tolist())  # the 10 errors come first
    assert len(PredictionGrid(count=100).choose(p)) == 40  # never more than were tested
    with pytest.raises(ValueError, match="sample must be one of"):
        PredictionGrid(sample="worst")


def test_metric_curves_history_survives_a_checkpoint(tmp_path):
    cb = MetricCurves()
    cb.history = {0: {"train_loss": 1.0, "val_acc": 0.5}, 1: {"train_loss": 0.8}}
    torch.save({"cb": cb.state_dict()}, tmp_path / "c.ckpt")
    restored = MetricCurves()
    restored.load_state_dict(torch.load(tmp_path / "c.ckpt", weights_only=True)["cb"])
    assert restored.history == cb.history
    epochs, values = restored.series()
    assert epochs == [1, 2] and values["val_acc"] == [0.5, None]


# ---------------------------------------------------------------------------- configs


def test_reports_are_in_the_default_callbacks_and_each_removable(tmp_path):
    cfg = compose_cfg([], output_dir=tmp_path)
    assert set(REPORTS) <= set(cfg.callbacks)
    assert "model_checkpoint" in cfg.callbacks
    assert cfg.callbacks.prediction_grid.count == 25
    for name in REPORTS:
        cfg = compose_cfg([f"~callbacks.{name}"], output_dir=tmp_path)
        assert name not in cfg.callbacks and set(REPORTS) - {name} <= set(cfg.callbacks)
    cfg = compose_cfg(["callbacks=reports", "callbacks.prediction_grid.count=12"], output_dir=tmp_path)
    assert set(cfg.callbacks) == set(REPORTS) and cfg.callbacks.prediction_grid.count == 12


# ---------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """Two tiny epochs of the default model on MNIST (500 training images), tested on all 10,000 test images."""
    if not (SHARED_DATA / "mnist-test.npz").is_file():
        pytest.skip("needs ../shared/datasets (IMGBENCH_DATA_DIR)")
    run_dir = tmp_path_factory.mktemp("reports") / "run"
    overrides = [
        "data.train_size=500",
        "data.val_size=1000",
        "trainer.max_epochs=2",
        "logger=tensorboard",
        "callbacks.prediction_grid.count=12",
    ]
    result = train(compose_cfg(overrides, output_dir=run_dir))
    test = np.load(SHARED_DATA / "mnist-test.npz")
    return run_dir, result, test["labels"], [str(c) for c in test["classes"]]


@needs_shared
def test_run_directory_holds_every_report(mnist_run):
    run_dir, *_ = mnist_run
    for name in FILES:
        assert (run_dir / name).is_file(), name
    for name in ("curves.png", "confusion_matrix.png", "predictions.png"):
        width, height = _is_png(run_dir / name)
        assert width >= 400 and height >= 300


@needs_shared
def test_submission_has_every_test_prediction_in_order(mnist_run):
    run_dir, result, labels, classes = mnist_run
    rows = _rows(run_dir / "submission.csv")
    assert list(rows[0]) == list(SubmissionWriter.COLUMNS)
    assert len(rows) == len(labels) == result["splits"]["test"] == 10_000
    assert [int(r["index"]) for r in rows] == list(range(len(labels)))
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert all(r["label_name"] == classes[int(r["label"])] for r in rows)
    assert all(r["predicted_name"] == classes[int(r["predicted"])] for r in rows)
    assert all(1 / len(classes) <= float(r["probability"]) <= 1 for r in rows)  # the top class's probability
    accuracy = sum(r["label"] == r["predicted"] for r in rows) / len(rows)
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)


@needs_shared
def test_confusion_matrix_csv_counts_the_test_split(mnist_run):
    run_dir, _, labels, classes = mnist_run
    with open(run_dir / "confusion_matrix.csv", newline="") as f:
        header, *body = list(csv.reader(f))
    assert header == ["true\\predicted", *classes]
    assert [row[0] for row in body] == classes
    matrix = np.array([[int(v) for v in row[1:]] for row in body])
    assert matrix.sum() == len(labels)
    assert matrix.sum(axis=1).tolist() == np.bincount(labels, minlength=len(classes)).tolist()  # rows: true class
    expected = np.zeros_like(matrix)
    for r in _rows(run_dir / "submission.csv"):
        expected[int(r["label"]), int(r["predicted"])] += 1
    assert np.array_equal(matrix, expected)


@needs_shared
def test_history_matches_the_logged_metrics(mnist_run):
    run_dir, result, *_ = mnist_run
    rows = _rows(run_dir / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(r[k] != "" for r in rows for k in ("train_loss", "train_acc", "val_loss", "val_acc"))
    best = max(float(r["val_acc"]) for r in rows)
    assert best == pytest.approx(result["metrics"]["val/acc_best"], abs=1e-5)
    assert rows[0]["train_acc"] != rows[1]["train_acc"]  # each epoch's own value, not a stale one


@needs_shared
def test_figures_are_in_tensorboard(mnist_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, *_ = mnist_run
    tags = set()
    for events in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["images"])
    assert tags == {"train/curves", "test/confusion_matrix", "test/predictions"}


@needs_shared
def test_eval_with_reports_reproduces_the_submission(mnist_run, tmp_path):
    run_dir, *_ = mnist_run
    cfg = compose_cfg([f"ckpt_path={run_dir}", "+callbacks=reports"], output_dir=tmp_path, config_name="eval")
    evaluate(cfg)
    assert (tmp_path / "submission.csv").read_text() == (run_dir / "submission.csv").read_text()
    assert (tmp_path / "confusion_matrix.csv").read_text() == (run_dir / "confusion_matrix.csv").read_text()
    assert not (tmp_path / "curves.png").exists()  # nothing was trained


@needs_shared
def test_fast_dev_run_writes_reports_for_the_tested_batch(tmp_path):
    """fast_dev_run has no loggers and tests one batch: the files cover that batch, no TensorBoard needed."""
    cfg = compose_cfg(
        ["debug=fast_dev_run", "data.eval_batch_size=64", "~callbacks.prediction_grid", "logger=tensorboard"],
        output_dir=tmp_path,
    )
    train(cfg)
    rows = _rows(tmp_path / "submission.csv")
    assert [int(r["index"]) for r in rows] == list(range(64))
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "confusion_matrix.png").is_file()
    assert not (tmp_path / "predictions.png").exists()
    assert not (tmp_path / "tensorboard").exists()


@pytest.mark.slow
@needs_shared
def test_ddp_two_processes_gather_the_strided_shares(tmp_path):
    """Two CPU processes: rank r tests images r, r + 2, ...; the files hold them in the test split's order."""
    result = run_cli(
        "train.py",
        "debug=fast_dev_run",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "+trainer.strategy=ddp",
        "data.eval_batch_size=14",  # the global evaluation batch: 7 per rank
        "data.train_size=200",
        "data.val_size=100",
        "logger=csv",
        f"paths.log_dir={tmp_path}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "debug").iterdir()  # one run directory for both processes
    rows = _rows(run_dir / "submission.csv")
    labels = np.load(SHARED_DATA / "mnist-test.npz")["labels"]
    assert [int(r["index"]) for r in rows] == list(range(14))  # one batch of 7 on each rank
    assert [int(r["label"]) for r in rows] == labels[:14].tolist()
    accuracy = sum(r["label"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["metrics"]["test/acc"])


@needs_shared
def test_early_stopping_ends_the_run_and_says_so(tmp_path):
    overrides = ["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=0",
                 "callbacks.early_stopping.min_delta=0.5", "trainer.max_epochs=5", "data.train_size=256",
                 "data.val_size=128", "test=false", "logger=csv", "~callbacks.progress_bar"]  # fmt: skip
    result = train(compose_cfg(overrides, output_dir=tmp_path))
    # no epoch improves val/acc by 0.5: the first one sets the mark, the second one stops the run
    assert result["status"] == "finished" and result["epochs"] == 2
    assert result["stopped_early"]["epoch"] == 1 and result["stopped_early"]["monitor"] == "val/acc"
