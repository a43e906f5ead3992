"""End to end: training through real configs, metrics.json, checkpoints, eval, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imgbench.run import evaluate, train

from .conftest import SHARED_DATA, compose_cfg, needs_shared, run_cli, write_image_folder

SMALL = ["data.train_size=1000", "data.val_size=500", "trainer.max_epochs=1"]


@pytest.mark.parametrize("data", ["mnist", "fashion_mnist"])
@needs_shared
def test_fast_dev_run_shared_data(train_cfg, data):
    result = train(train_cfg(f"data={data}", "debug=fast_dev_run"))
    assert result["status"] == "finished" and 0 <= result["metrics"]["test/acc"] <= 1


@pytest.mark.parametrize("data", ["cifar10", "cifar100"])
def test_fast_dev_run_cifar_official_format(train_cfg, cifar_dir, data):
    cfg = train_cfg(f"data={data}", "data.val_size=20", "debug=fast_dev_run", "data.batch_size=16", data_dir=cifar_dir)
    result = train(cfg)
    assert result["splits"] == {"train": 80, "val": 20, "test": 40}
    assert "test/acc_top5" in result["metrics"]


def test_fast_dev_run_imagefolder(train_cfg, tmp_path):
    root = write_image_folder(tmp_path / "pets", per_class=4, size=(32, 32))
    cfg = train_cfg(
        "data=imagefolder",
        f"data.root={root}",
        "data.val_size=3",
        "debug=fast_dev_run",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "model=keras_fcn",
    )
    result = train(cfg)
    assert result["data"] == "imagefolder" and result["splits"]["test"] == 12


@needs_shared
def test_fast_dev_run_cifar10_jpeg(train_cfg):
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip("no cifar10-jpeg archive")
    result = train(train_cfg("data=cifar10_jpeg", "debug=fast_dev_run", f"paths.data_dir={SHARED_DATA}"))
    assert result["data"] == "cifar10-jpeg"
    assert result["splits"] == {"train": 45000, "val": 5000, "test": 10000}


@needs_shared
def test_run_directory_eval_matches_train(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*SMALL, "logger=tensorboard"], output_dir=run_dir)
    result = train(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metrics"] == result["metrics"]
    assert metrics["params"] == 98_442 and metrics["splits"] == {"train": 1000, "val": 500, "test": 10000}
    assert metrics["train_seconds"] > 0 and metrics["train_images_per_sec"] > 0
    assert "val/acc_best" in metrics["metrics"]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["epoch_000.ckpt", "last.ckpt"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    # a checkpoint holds only plain data: it loads with weights_only=True
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["imgbench"]["config"]["model"]["_target_"] == "imgbench.models.keras_cnn"

    eval_dir = tmp_path / "eval"
    eval_cfg = compose_cfg(
        [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"], output_dir=eval_dir, config_name="eval"
    )
    evaluated = evaluate(eval_cfg)
    tested = {k: v for k, v in result["metrics"].items() if k.startswith("test/")}
    macro = {"test/precision_macro", "test/recall_macro", "test/f1_macro"}
    assert set(tested) == {"test/acc", "test/acc_top5", "test/loss", *macro}
    assert evaluated["metrics"] == tested  # exactly, not approximately
    assert evaluated["per_class"] == result["per_class"]
    assert evaluated["matches_run"] is True
    assert json.loads((eval_dir / "metrics.json").read_text())["metrics"] == tested


@needs_shared
def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    runs = [
        train(compose_cfg([*SMALL, f"seed={s}", "logger=csv"], output_dir=tmp_path / f"r{i}"))
        for i, s in enumerate((7, 7, 8))
    ]
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert runs[0]["metrics"] != runs[2]["metrics"]


@needs_shared
def test_default_model_one_epoch_of_mnist_reaches_97_percent(tmp_path):
    """The one real accuracy check: the default run (Keras CNN, Adam 1e-3, batch 128) after one epoch."""
    result = train(compose_cfg(["trainer.max_epochs=1", "logger=csv"], output_dir=tmp_path))
    assert result["metrics"]["test/acc"] >= 0.97


@needs_shared
def test_scheduler_and_sgd_train(train_cfg):
    result = train(train_cfg(*SMALL, "optimizer=sgd", "scheduler=plateau", "trainer.max_epochs=2"))
    assert result["epochs"] == 2


@needs_shared
def test_cli_multirun_one_directory_per_job(tmp_path):
    """The README's sweep, on a subset: 2 datasets x 2 optimizers -> 4 job directories with metrics."""
    result = run_cli(
        "train.py",
        "-m",
        "data=mnist,fashion_mnist",
        "optimizer=adam,sgd",
        "trainer.max_epochs=1",
        "data.train_size=500",
        "data.val_size=100",
        "logger=csv",
        f"paths.log_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = sorted(Path(tmp_path).glob("train/multirun/*/*/metrics.json"))
    assert len(metrics) == 4
    data = {json.loads(p.read_text())["data"] for p in metrics}
    assert data == {"mnist", "fashion_mnist"}


@needs_shared
def test_cli_train_then_eval(tmp_path):
    result = run_cli("train.py", *SMALL, "data.train_size=300", f"paths.log_dir={tmp_path}", "logger=csv")
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = Path(tmp_path).glob("train/*/metrics.json")
    trained = json.loads(run_dir.read_text())
    result = run_cli("eval.py", f"ckpt_path={run_dir.parent}", f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    (eval_metrics,) = Path(tmp_path).glob("eval/*/metrics.json")
    evaluated = json.loads(eval_metrics.read_text())
    assert evaluated["matches_run"] is True
    assert evaluated["metrics"]["test/acc"] == trained["metrics"]["test/acc"]


def test_run_directories_are_never_reused(tmp_path):
    from imgbench.resolvers import unique_dir

    first = unique_dir(str(tmp_path / "2026-01-01_00-00-00"))
    second = unique_dir(str(tmp_path / "2026-01-01_00-00-00"))
    assert first != second and Path(second).name == "2026-01-01_00-00-00_1"
