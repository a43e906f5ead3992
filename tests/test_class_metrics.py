"""Evaluation beyond accuracy: per-class precision, recall and F1 with their macro means, and class weights for
imbalanced data (``module.class_weights``)."""

from __future__ import annotations

import csv
import json

import lightning as L
import numpy as np
import pytest

from imgbench.build import build_datamodule, build_module, build_net
from imgbench.errors import ConfigError
from imgbench.modules.classifier import check_class_weights
from imgbench.report import build_report
from imgbench.run import train

from .conftest import compose_cfg, needs_shared, run_cli, write_image_folder

SMALL = ["model=keras_fcn", "trainer.max_epochs=1", "data.train_size=300", "data.val_size=100", "data.batch_size=50"]


@needs_shared
def test_per_class_metrics_agree_with_the_confusion_matrix(tmp_path):
    result = train(compose_cfg(SMALL, output_dir=tmp_path))
    with (tmp_path / "confusion_matrix.csv").open() as f:
        rows = list(csv.reader(f))
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=float)  # rows: true, columns: predicted
    hits, true, predicted = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, true, out=np.zeros_like(hits), where=true > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits), where=precision + recall > 0)
    per_class = result["per_class"]
    assert list(per_class) == [str(i) for i in range(10)]
    for i, name in enumerate(per_class):
        got = per_class[name]
        assert got["support"] == true[i]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((precision[i], recall[i], f1[i]), abs=1e-5)
    seen = (true + predicted) > 0
    metrics = result["metrics"]
    assert metrics["test/f1_macro"] == pytest.approx(f1[seen].mean(), abs=1e-5)
    assert metrics["test/recall_macro"] == pytest.approx(recall[seen].mean(), abs=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text())["per_class"] == per_class
    with (tmp_path / "per_class.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["class"] for r in table] == list(per_class) and float(table[3]["f1"]) == per_class["3"]["f1"]


@needs_shared
def test_report_shows_macro_f1_and_the_weakest_classes(tmp_path):
    train(compose_cfg(SMALL, output_dir=tmp_path / "run"))
    text = build_report(tmp_path).markdown()
    assert "macro F1" in text and "## Per class, test split" in text


def test_balanced_class_weights_follow_the_training_counts(tmp_path):
    root = tmp_path / "pets"
    write_image_folder(root, classes=("cat",), per_class=12, size=(16, 16))
    write_image_folder(root, classes=("dog", "fox"), per_class=4, size=(16, 16), seed=1)
    cfg = compose_cfg(
        ["data=imagefolder", f"data.root={root}", "data.val_size=0", "model=keras_fcn", "module.class_weights=balanced",
         f"paths.cache_dir={tmp_path / 'cache'}", "data.batch_size=4"],
        output_dir=tmp_path / "run",
    )  # fmt: skip
    dm = build_datamodule(cfg)
    module = build_module(cfg, build_net(cfg, dm), dm.num_classes)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    assert dm.class_counts().tolist() == [12, 4, 4]
    assert module.loss_weights.tolist() == pytest.approx([20 / (3 * 12), 20 / (3 * 4), 20 / (3 * 4)])
    assert "loss_weights" not in module.state_dict()  # checkpoints stay loadable by eval.py, which has no counts


@pytest.mark.parametrize(
    ("value", "message"),
    [("inverse", "must be balanced, null or"), ([1.0, "a"], "must be balanced, null or"), ([1.0, 2.0], "2 weights")],
)
def test_bad_class_weights_are_one_line(value, message):
    with pytest.raises(ConfigError, match=message):
        check_class_weights(value, 10)


def test_bad_class_weights_stop_before_data_loads(tmp_path):
    missing = tmp_path / "nowhere"
    done = run_cli("train.py", "data=imagefolder", f"data.root={missing}", "module.class_weights=inverse",
                   f"paths.log_dir={tmp_path}")  # fmt: skip
    assert done.returncode == 2
    assert "module.class_weights must be balanced" in done.stderr and str(missing) not in done.stderr
