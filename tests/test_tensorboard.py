"""TensorBoard as a user opens it after a sweep: each tag once at its real step, grouped, pictures at the step of
their scalars, and an HParams table whose first columns are the swept settings, failed jobs included.

The event files are read with TensorBoard's own reader, and the HParams table with its own backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, metadata

from imgbench.callbacks.learning_rate_monitor import train_tag
from imgbench.callbacks.tensorboard import session_hparams

from .conftest import needs_shared, run_cli

TINY = ["model=keras_fcn", "trainer.max_epochs=2", "data.train_size=256", "data.val_size=128", "data.batch_size=64"]
GROUPS = ("train/", "val/", "test/", "trainer/")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Three jobs: two learning rates that train and one that fails; a boolean set on the command line."""
    log_dir = tmp_path_factory.mktemp("tb")
    args = ["-m", "optimizer.lr=0.001,0.003,-1", *TINY, "data.augment.flip=false", f"paths.log_dir={log_dir}"]
    done = run_cli("train.py", *args)
    assert done.returncode == 1, done.stderr[-3000:]  # the failed job makes the sweep exit non-zero
    (root,) = (log_dir / "train" / "multirun").iterdir()
    return root


def _events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def _job(sweep: Path, lr: str) -> tuple[Path, dict]:
    for metrics in sweep.glob("*/metrics.json"):
        record = json.loads(metrics.read_text())
        if f"optimizer.lr={lr}" in record["overrides"]:
            return metrics.parent / "tensorboard" / f"optimizer.lr={lr}", record
    raise AssertionError(f"no job with optimizer.lr={lr}")


@needs_shared
def test_each_tag_once_at_its_step_in_groups(sweep):
    tb, record = _job(sweep, "0.001")
    events = _events(tb)
    tags = events.Tags()["scalars"]
    assert all(t.startswith(GROUPS) for t in tags), tags  # no epoch, lr-Adam, params or train_seconds at the top
    assert "train/lr" in tags and "trainer/epoch" in tags
    steps_per_epoch = record["steps"] // record["epochs"]
    for tag in tags:
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == sorted(set(steps)), (tag, steps)  # each step once, in order: nothing again at step 0
    epoch_ends = [steps_per_epoch * (e + 1) - 1 for e in range(record["epochs"])]
    for tag in ("val/acc", "val/acc_best", "train/loss_epoch"):
        assert [e.step for e in events.Scalars(tag)] == epoch_ends, tag
    for tag in ("test/acc", "test/f1_macro"):
        (point,) = events.Scalars(tag)
        assert point.step == record["steps"]
        assert point.value == pytest.approx(record["metrics"][tag], abs=1e-6)
    # the pictures sit at the step of the scalars logged with them
    assert [e.step for e in events.Images("train/curves")] == [epoch_ends[-1]]
    assert [e.step for e in events.Images("test/confusion_matrix")] == [record["steps"]]


def _hparams_table(root: Path) -> tuple[api_pb2.Experiment, dict[str, dict]]:
    """What TensorBoard's HParams dashboard shows for ``root``: the experiment and each session's start/end info."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(root))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(root))
    tb = backend_context.Context(base_plugin.TBContext(logdir=str(root), multiplexer=mux, data_provider=provider))
    request = context.RequestContext()
    content = tb.hparams_metadata(request, "")
    experiment = tb.experiment_from_metadata(
        request, "", True, content, tb.hparams_from_data_provider(request, "", limit=None)
    )
    sessions = {}
    for run, tags in content.items():
        start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
        end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
        sessions[run] = {"hparams": dict(start.hparams), "status": api_pb2.Status.Name(end.status)}
    return experiment, sessions


@needs_shared
def test_hparams_opens_on_the_swept_settings_and_shows_the_failed_job(sweep):
    experiment, sessions = _hparams_table(sweep)
    # one session per job, the failed one marked failed
    statuses = sorted((s["hparams"]["optimizer.lr"].number_value, s["status"]) for s in sessions.values())
    assert statuses == [(-1.0, "STATUS_FAILURE"), (0.001, "STATUS_SUCCESS"), (0.003, "STATUS_SUCCESS")]
    names = [h.name for h in experiment.hparam_infos]
    assert names[0] == "optimizer.lr"  # the one setting that differs comes first
    assert experiment.hparam_infos[0].differs and not any(h.differs for h in experiment.hparam_infos[1:])
    for key in ("seed", "trainer.max_epochs", "model", "data", "optimizer", "data.augment.flip", "params"):
        assert key in names, key
    assert not any(n.startswith(("choice/", "hydra", "callbacks", "paths", "logger")) for n in names), names
    # booleans stay booleans (torch's hparams writes them as 0/1)
    flips = {s["hparams"]["data.augment.flip"].WhichOneof("kind") for s in sessions.values()}
    assert flips == {"bool_value"}
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[0].startswith("test/") and "test/acc" in metrics and "params" not in metrics


def test_session_settings_keep_overrides_and_key_settings():
    record = {
        "config": {"seed": 1, "optimizer.lr": 0.1, "optimizer._target_": "torch.optim.SGD", "data.augment.flip": True,
                   "module.label_smoothing": 0.1, "trainer.max_epochs": 5, "data.batch_size": None},
        "choices": {"model": "lenet5", "data": "mnist", "callbacks": "default", "hydra": "default", "logger": "csv"},
        "overrides": ["model=lenet5", "module.label_smoothing=0.1", "+trainer.limit_train_batches=2"],
    }  # fmt: skip
    got = session_hparams(record, swept={"data.augment.flip"})
    assert got == {
        "data": "mnist",
        "data.augment.flip": True,
        "model": "lenet5",
        "module.label_smoothing": 0.1,
        "optimizer.lr": 0.1,
        "seed": 1,
        "trainer.max_epochs": 5,
    }


@pytest.mark.parametrize(
    ("lightning", "ours"),
    [("lr-Adam", "train/lr"), ("lr-SGD/pg2", "train/lr/pg2"), ("lr-SGD-momentum", "train/momentum"),
     ("train/lr", "train/lr")],
)  # fmt: skip
def test_learning_rate_tags_sort_with_training(lightning, ours):
    assert train_tag(lightning) == ours
