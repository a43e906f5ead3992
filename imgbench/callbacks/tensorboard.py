"""TensorBoard as imgbench writes it: each tag once at its real step, grouped; one HParams session per run.

Tags are in the train/, val/ and test/ groups; failed sweep jobs get a (failed) session too, and a session holds
the settings that tell runs apart.

TensorBoard's HParams dashboard builds its table from the runs' session summaries when no run wrote an experiment
summary: the hyperparameters whose values differ between the runs come first, then the rest by name, and the
metric columns are the runs' scalar tags in order (``test/`` first), each at its last value. So a run writes only
its session (no experiment summary, which would fix the columns to that one run's keys and values) and nothing is
logged again at step 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger as _LightningTensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

# the settings every run shows in HParams, besides the group choices and whatever the command line set
KEY_SETTINGS = (
    "seed",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.momentum",
    "data.batch_size",
    "trainer.max_epochs",
    "trainer.precision",
)
# config groups that choose what is trained (not how it is logged or where files go)
RUN_GROUPS = ("experiment", "ablation", "model", "data", "module", "optimizer", "scheduler", "hparams_search")


class TensorBoardLogger(_LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger with ``epoch`` as ``trainer/epoch``, once per step.

    Lightning adds ``epoch`` to every metrics dict it logs without a step (so twice at an epoch's end: training
    and validation), and TensorBoard would sort the chart before train/, val/ and test/.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch_step: int | None = None

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        if epoch is not None and step != self._epoch_step:
            metrics["trainer/epoch"] = epoch
            self._epoch_step = step
        if metrics:
            super().log_metrics(metrics, step)


def figure_step(trainer: L.Trainer) -> int:
    """The step a picture made now belongs to: the step of the scalars logged at the same moment.

    Lightning logs the metrics of an epoch's end at the step of its last batch (``global_step - 1``) while fitting,
    and test metrics at ``global_step``.
    """
    fitting = trainer.state.fn == TrainerFn.FITTING
    return max(trainer.global_step - 1, 0) if fitting else trainer.global_step


def session_hparams(record: dict[str, Any], swept: set[str] | None = None) -> dict[str, bool | float | str]:
    """The settings of a run shown in HParams: what chooses the run, the key settings, and every override.

    Args:
        record: the run's record (:func:`imgbench.record.run_record`: ``config``, ``choices``, ``overrides``).
        swept: keys swept by the sweep this run belongs to (always included).

    Returns:
        ``{name: value}``; group choices under their group's name (``model``, ``optimizer``), settings under their
        config key (``optimizer.lr``), the parameter count as ``params``; values that are None are left out.
    """
    config = record.get("config") or {}
    choices = record.get("choices") or {}
    given = {o.split("=", 1)[0].lstrip("+~") for o in record.get("overrides") or [] if "=" in o}
    wanted = set(KEY_SETTINGS) | given | set(swept or ())
    values: dict[str, Any] = {g: choices[g] for g in RUN_GROUPS if choices.get(g) is not None}
    values.update({k: choices[k] for k in wanted if choices.get(k) is not None})
    values.update({k: config[k] for k in wanted if k in config and config[k] is not None})
    values = {k: v for k, v in values.items() if not k.startswith(("hydra", "paths", "callbacks", "logger"))}
    if record.get("params"):
        values["params"] = record["params"]  # the model's size: a property of the run, not a metric over time
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in sorted(values.items())}


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])


def session_start(hparams: dict[str, bool | float | str]) -> Summary:
    """The HParams session-start summary (booleans stay booleans, not torch's 0/1)."""
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in hparams.items():
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, int | float):
            info.hparams[name].number_value = float(value)
        else:
            info.hparams[name].string_value = str(value)
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end(success: bool) -> Summary:
    """The HParams session-end summary: a finished or a failed run."""
    status = api_pb2.Status.Value("STATUS_SUCCESS" if success else "STATUS_FAILURE")
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    return _hparams_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def write_session(writer: SummaryWriter, hparams: dict[str, bool | float | str], success: bool) -> None:
    """Write a run's HParams session (start and end) with ``writer``, and flush it."""
    file_writer = writer._get_file_writer()  # torch's SummaryWriter writes raw summaries only through it
    file_writer.add_summary(session_start(hparams))
    file_writer.add_summary(session_end(success))
    writer.flush()


def log_session(trainer: L.Trainer, record: dict[str, Any], swept: set[str] | None = None) -> None:
    """A finished run's HParams session, in every TensorBoard logger of ``trainer``."""
    for logger in trainer.loggers:
        if isinstance(logger, _LightningTensorBoardLogger):
            write_session(logger.experiment, session_hparams(record, swept), success=True)


def log_failed_session(log_dir: str | Path, record: dict[str, Any], swept: set[str] | None = None) -> None:
    """A failed run's HParams session in its TensorBoard folder, so that a sweep's failures show in HParams."""
    writer = SummaryWriter(str(log_dir))
    try:
        write_session(writer, session_hparams(record, swept), success=False)
    finally:
        writer.close()
