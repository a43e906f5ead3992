"""Lightning callbacks: the resume checkpoint, graceful interruption and a run's reports.

The reports are the training curves, the confusion matrix, the prediction grid and ``submission.csv``.
Configured in ``conf/callbacks/reports.yaml`` (part of ``callbacks=default``); each can be removed with
``~callbacks.<name>``. Files go into the run directory from global rank 0; figures also go to the run's trackers
(TensorBoard's images tab, MLflow artifacts, W&B images: ``trackers.py``). ``tensorboard.py`` and
``learning_rate_monitor.py`` keep TensorBoard's tags grouped and its HParams table useful. ``epoch_tests.py`` tests
at the epochs of the top-level ``test_epochs`` (added by the run, not configured in ``conf/callbacks/``).
"""

from .base import ReportCallback
from .checkpoint import LastCheckpoint
from .curves import MetricCurves
from .ema import EMA
from .epoch_tests import EpochTests
from .interrupt import GracefulInterrupt, TrainingInterrupted
from .plots import draw_confusion_matrix, draw_curves, draw_prediction_grid
from .predictions import (
    ConfusionMatrixReport,
    PredictionGrid,
    PredictionReport,
    Predictions,
    SubmissionWriter,
    interleave_shares,
)
from .whitening import PatchWhitening

__all__ = [
    "EMA",
    "ConfusionMatrixReport",
    "EpochTests",
    "GracefulInterrupt",
    "LastCheckpoint",
    "MetricCurves",
    "PatchWhitening",
    "PredictionGrid",
    "PredictionReport",
    "Predictions",
    "ReportCallback",
    "SubmissionWriter",
    "TrainingInterrupted",
    "draw_confusion_matrix",
    "draw_curves",
    "draw_prediction_grid",
    "interleave_shares",
]
