"""tune=lr_find|batch_size: Lightning's finders on the run's own parts, their plot and suggestion in the run
directory, nothing trained."""

from __future__ import annotations

import json

import pytest

from imgbench.config import validate
from imgbench.errors import ConfigError
from imgbench.run import train

from .conftest import compose_cfg, needs_shared

SMALL = [
    "data.train_size=512",
    "data.val_size=128",
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
]


@needs_shared
def test_lr_find_writes_its_plot_and_suggestion(tmp_path):
    result = train(compose_cfg([*SMALL, "tune=lr_find"], output_dir=tmp_path))
    assert result["status"] == "tuned" and result["tune"]["suggested_lr"] > 0
    found = json.loads((tmp_path / "lr_find.json").read_text())
    assert found["suggested_lr"] == result["tune"]["suggested_lr"] and len(found["lr"]) == len(found["loss"]) > 10
    assert found["lr"] == sorted(found["lr"])  # the range test sweeps the learning rate upwards
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "tuned"
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # nothing trained


@needs_shared
def test_batch_size_finder_doubles_from_the_configured_batch(tmp_path):
    result = train(compose_cfg([*SMALL, "tune=batch_size", "data.batch_size=32"], output_dir=tmp_path))
    found = json.loads((tmp_path / "batch_size.json").read_text())
    assert found["start"] == 32 and found["suggested_batch_size"] >= 32
    assert result["tune"]["suggested_batch_size"] == found["suggested_batch_size"]


def test_an_unknown_tuner_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"tune must be one of lr_find, batch_size"):
        validate(compose_cfg(["tune=lr_search"], output_dir=tmp_path))
