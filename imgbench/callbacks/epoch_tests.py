"""Testing at chosen epochs inside one fit (``test_epochs=[10,30,60]``).

A table of test accuracies after 10, 30, 60 and 100 epochs then takes one run of 100 epochs instead of four, when
the learning-rate schedule does not depend on the run's length (:mod:`imgbench.epoch_tests` checks that): the
weights after epoch 10 of the long run are the weights a 10-epoch run ends with.

The run's own ``trainer.test`` is not called mid-fit (Lightning runs one loop at a time, and the report callbacks
would draw their pictures at every test); :func:`evaluate_test_split` evaluates the way it does instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import islice
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import RunningStage

from ..checkpoint import rng_state, set_rng_state
from ..metrics.classification import classification_values
from .tensorboard import figure_step

log = logging.getLogger(__name__)


class EpochTests(L.Callback):
    """Test the current weights at the end of the listed training epochs; log and keep the test metrics.

    Each test comes after the epoch's validation (Lightning's ``on_train_epoch_end`` follows it) and before the
    epoch's ``last.ckpt``, which keeps the results: a run killed later and resumed still has them. The values go to
    the loggers at the step of the epoch's other epoch-end metrics, as ``test/acc``, ``test/loss``, ...; the run's
    final test is logged by the run itself, so an epoch equal to ``trainer.max_epochs`` is not tested twice.

    Args:
        epochs: finished-epoch counts (1 = after the first epoch) to test at.
    """

    def __init__(self, epochs: Sequence[int]) -> None:
        self.epochs = sorted({int(e) for e in epochs})
        self.results: dict[int, dict[str, float]] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # finished epochs, counting this one
        if (
            epoch not in self.epochs
            or epoch in self.results  # a run resumed at this epoch's end runs this hook again
            or epoch == trainer.max_epochs  # the run's final test
            or trainer.fast_dev_run
            or not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch  # ended mid-epoch (trainer.max_steps)
        ):
            return
        values = evaluate_test_split(trainer, pl_module)
        self.results[epoch] = values
        step = figure_step(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
            logger.save()
        log.info("test at epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items())))

    def with_final(self, epochs: int, final: dict[str, float]) -> dict[str, dict[str, float]]:
        """The results by epoch for ``metrics.json``, with the run's final test as the last entry.

        Args:
            epochs: the epochs the run trained (``trainer.current_epoch`` after the fit).
            final: the run's final test metrics.

        Returns:
            ``{"10": {"test/acc": ..., ...}, ..., "<epochs>": final}``, in epoch order.
        """
        results = {e: v for e, v in self.results.items() if e < epochs} | {epochs: dict(final)}
        return {str(e): results[e] for e in sorted(results)}

    def state_dict(self) -> dict[str, Any]:
        return {"results": {str(e): v for e, v in self.results.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.results = {int(e): {k: float(x) for k, x in v.items()} for e, v in state_dict["results"].items()}


def evaluate_test_split(trainer: L.Trainer, module: L.LightningModule) -> dict[str, float]:
    """Test ``module``'s current weights on the DataModule's test split as ``trainer.test`` would, during a fit.

    The same batches (this process's share under DDP; ``trainer.limit_test_batches``), moved and prepared by the
    same hooks in the test stage (the evaluation transform, not the training augmentation), the same step
    (:meth:`~imgbench.modules.ImageClassifier._eval_step`) in eval mode under the precision plugin's test context,
    and fresh copies of the module's test metrics (the loss summed in float64): the numbers ``trainer.test``
    reports for these weights, bit for bit. Training is left as it was: no gradients, the modules' train/eval
    modes and the global random state (a DataLoader draws its workers' seed from it) are restored.

    Args:
        trainer: the fitting trainer, with its DataModule.
        module: an :class:`~imgbench.modules.ImageClassifier` (``test_metrics``, ``test_loss``, ``test_classes``).

    Returns:
        ``{"test/acc": ..., "test/loss": ..., "test/f1_macro": ..., ...}``, the keys ``trainer.test`` logs.
    """
    metrics, loss, classes = (m.clone() for m in (module.test_metrics, module.test_loss, module.test_classes))
    for metric in (metrics, loss, classes):
        metric.reset()
    module._sum_losses_in_float64(loss)
    loader = trainer.datamodule.test_dataloader()
    limit = trainer.limit_test_batches
    batches = min(len(loader), limit) if isinstance(limit, int) else int(len(loader) * limit)
    modes = {m: m.training for m in module.modules()}
    stage, rng = trainer.state.stage, rng_state()
    try:
        module.eval()
        trainer.state.stage = RunningStage.TESTING  # the DataModule's batch hook then evaluates, not augments
        with torch.no_grad():
            for batch in islice(loader, batches):
                x, y = trainer.strategy.batch_to_device(batch)
                with trainer.precision_plugin.test_step_context():
                    out = module._eval_step((x, y), metrics, loss)
                    classes.update(out["logits"], out["targets"])
        values, _ = classification_values(metrics, loss, classes)
    finally:
        trainer.state.stage = stage
        for m, training in modes.items():
            m.training = training
        set_rng_state(rng)
    return {k: float(v) for k, v in values.items()}
