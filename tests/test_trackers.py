"""MLflow and W&B as a user runs them: real runs read back with the trackers' own clients and files, sweep jobs named
by their swept overrides, W&B offline without an API key, a bad tracking URI refused before anything runs."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger

from imgbench.callbacks.plots import save_png
from imgbench.callbacks.trackers import WandbLogger, finish_trackers, log_figure, report_files, run_params
from imgbench.resolvers import wandb_offline

from .conftest import needs_shared, run_cli

# 2 epochs of 3 steps; the test split's first 2 batches
TINY = [
    "data=mnist",
    "model=keras_fcn",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
]


@pytest.fixture
def no_wandb_account(tmp_path, monkeypatch):
    """No W&B API key anywhere: no WANDB_API_KEY, and a HOME without ~/.netrc (W&B's caches land there too)."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def mlflow_client(monkeypatch):
    """``mlflow_client(uri)``: MLflow's own client on a store (its folder store is opt-in in MLflow 3)."""
    tracking = pytest.importorskip("mlflow.tracking")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # runs use the default store, not a server
    return tracking.MlflowClient


def _wandb_names(run_dir: Path) -> bytes:
    """The bytes of the run's offline W&B file (``<run dir>/wandb/offline-run-*/run-*.wandb``), which must exist."""
    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    return wandb_file.read_bytes()


def _wandb_name_record(name: str) -> bytes:
    """W&B's run record holding ``name`` as the display name, as serialised in its .wandb file."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    return pb.RunRecord(display_name=name).SerializeToString()


@needs_shared
def test_mlflow_run_is_read_back_with_mlflows_client(tmp_path, mlflow_client):
    uri = f"file:{tmp_path / 'store'}"
    args = [*TINY, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", f"paths.log_dir={tmp_path}"]
    result = run_cli("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics_file,) = tmp_path.glob("train/*/metrics.json")
    record = json.loads(metrics_file.read_text())

    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name("train")  # task_name
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == metrics_file.parent.name  # a single run: its run directory's name
    params = run.data.params
    assert params["optimizer.lr"] == "0.001" and params["seed"] == "42"
    assert params["choice/model"] == "keras_fcn" and params["choice/data"] == "mnist"
    assert params["trainer.max_epochs"] == "2"

    # every metric at its step: val/acc once per epoch at the step of its last batch, as in TensorBoard
    val = client.get_metric_history(run.info.run_id, "val/acc")
    assert [m.step for m in val] == [2, 5]
    (test_acc,) = client.get_metric_history(run.info.run_id, "test/acc")
    assert test_acc.value == record["metrics"]["test/acc"]
    assert test_acc.step == record["steps"] == 6

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    expected = {"curves.png", "confusion_matrix.png", "predictions.png", "metrics.json", "submission.csv"}
    assert expected <= artifacts
    copy = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == record


@needs_shared
def test_sweep_jobs_are_named_by_their_swept_override_in_every_tracker(tmp_path, mlflow_client, no_wandb_account):
    args = ["-m", "optimizer.lr=0.001,0.01", *TINY, "trainer.max_epochs=1", "logger=[mlflow,wandb]"]
    result = run_cli("train.py", *args, f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]

    client = mlflow_client(f"file:{tmp_path / 'mlruns'}")  # the default store: mlruns beside the runs
    experiment = client.get_experiment_by_name("train")
    runs = client.search_runs([experiment.experiment_id])
    names = {r.info.run_name: r.data.params["optimizer.lr"] for r in runs}
    assert names == {"optimizer.lr=0.001": "0.001", "optimizer.lr=0.01": "0.01"}
    assert {r.info.status for r in runs} == {"FINISHED"}

    # W&B: one offline run per job (the first one was ended, not continued), named the same way
    (sweep,) = (tmp_path / "train" / "multirun").iterdir()
    for job, name in (("0", "optimizer.lr=0.001"), ("1", "optimizer.lr=0.01")):
        assert _wandb_name_record(name) in _wandb_names(sweep / job)


@needs_shared
def test_wandb_runs_offline_without_an_api_key(tmp_path, no_wandb_account):
    start = time.monotonic()
    result = run_cli("train.py", *TINY, "logger=wandb", f"paths.log_dir={tmp_path}")
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert seconds < 60  # nothing waited on the network (W&B's own timeout is 90 s)
    (metrics_file,) = tmp_path.glob("train/*/metrics.json")
    run_dir = metrics_file.parent
    assert _wandb_name_record(run_dir.name) in _wandb_names(run_dir)  # a single run: its run directory's name
    (offline,) = run_dir.glob("wandb/offline-run-*")
    assert f"wandb sync {offline}" in (run_dir / "train.log").read_text()
    assert not list(run_dir.rglob("wandb/**/metrics.json"))  # reports count one run per metrics.json


def test_bad_tracking_uri_is_one_line_before_anything_runs(tmp_path):
    pytest.importorskip("mlflow")
    args = ["logger=many_loggers", "logger.mlflow.tracking_uri=ftp://nowhere", f"paths.log_dir={tmp_path}"]
    result = run_cli("train.py", *args)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("imgbench: error: logger.mlflow.tracking_uri=ftp://nowhere") and "\n" not in err
    assert not list(tmp_path.iterdir())  # no run directory, no store


def test_wandb_goes_offline_without_a_key_or_a_server(monkeypatch, no_wandb_account):
    assert wandb_offline()  # no key at all
    with socket.socket() as server:  # a W&B server that accepts connections, and `wandb login`'s key for it
        server.bind(("127.0.0.1", 0))
        server.listen()
        host = f"127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("WANDB_BASE_URL", f"http://{host}")
        netrc = no_wandb_account / ".netrc"
        netrc.write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
        netrc.chmod(0o600)  # netrc refuses a file others can read
        assert not wandb_offline()
        monkeypatch.setenv("WANDB_MODE", "offline")
        assert wandb_offline()  # the user's choice
        monkeypatch.delenv("WANDB_MODE")
    start = time.monotonic()
    assert wandb_offline()  # the same key, the server gone: refused at once
    assert time.monotonic() - start < 3


def test_a_failed_run_ends_its_wandb_run(tmp_path, monkeypatch, no_wandb_account):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # Lightning sets it for an offline logger: undone after the test
    logger = WandbLogger(save_dir=str(tmp_path), project="imgbench", name="failing", offline=True)
    assert logger.experiment is wandb.run
    logger.finalize("failed")  # what Lightning calls when fit or test raises
    assert wandb.run is None  # the next job's logger starts a run of its own


def test_pictures_become_mlflow_artifacts(tmp_path, mlflow_client):
    uri = f"file:{tmp_path / 'store'}"
    logger = MLFlowLogger(experiment_name="pictures", tracking_uri=uri)
    rgb = np.zeros((8, 8, 3), np.uint8)
    save_png(rgb, tmp_path / "curves.png")
    trainer = SimpleNamespace(loggers=[logger])
    log_figure(trainer, "curves", rgb, tmp_path / "curves.png", step=3)  # the PNG written, under its name
    log_figure(trainer, "test/predictions", rgb, None, step=3)  # no file (filename: null): <tag>.png
    client = mlflow_client(uri)
    assert {a.path for a in client.list_artifacts(logger.run_id)} == {"curves.png", "test"}
    assert [a.path for a in client.list_artifacts(logger.run_id, "test")] == ["test/predictions.png"]


def test_finish_trackers_leaves_other_loggers_alone(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "curves.png").write_bytes(b"")
    (tmp_path / "checkpoints").mkdir()
    assert [p.name for p in report_files(tmp_path)] == ["curves.png", "metrics.json"]
    trainer = SimpleNamespace(loggers=[CSVLogger(str(tmp_path))], is_global_zero=True)
    finish_trackers(trainer, {"config": {"optimizer.lr": 0.1}, "choices": {}}, tmp_path)  # CSV only: nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "curves.png", "metrics.json"]
    record = {"config": {"optimizer.lr": 0.1, "model.stem": None}, "choices": {"model": "lenet5", "ablation": None}}
    assert run_params(record) == {"optimizer.lr": 0.1, "choice/model": "lenet5"}
