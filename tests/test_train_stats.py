"""The fast training step: the same weights and training metrics as per-step updates, hooks that do nothing
skipped, the progress bar updated no more often than it redraws, and a non-finite loss found at its step."""

from __future__ import annotations

import copy
import csv
import math

import lightning as L
import pytest
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

import imgbench.run as run
from imgbench.callbacks import LastCheckpoint
from imgbench.callbacks.progress import RichProgressBar
from imgbench.modules import ImageClassifier
from imgbench.modules.classifier import NonFiniteLossError
from imgbench.modules.hooks import BATCH_HOOKS, TRAIN_BATCH_HOOKS, skip_empty_hooks
from imgbench.modules.train_stats import CHECK_EVERY, FLUSH_STEPS, Position, TrainStats

from .conftest import compose_cfg, write_cifar


@pytest.fixture
def one_thread():
    """One torch thread: batch-4 steps on two threads wait for a busy core at every op on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _metrics(classes: int = 10) -> MetricCollection:
    acc = {"acc": MulticlassAccuracy(classes, average="micro")}
    return MetricCollection({**acc, "acc_top5": MulticlassAccuracy(classes, top_k=5, average="micro")})


def _loss_mean() -> MeanMetric:
    loss = MeanMetric()
    loss.set_dtype(torch.float64)  # as ImageClassifier sums the training losses
    return loss


def _states(metrics: MetricCollection, loss: MeanMetric) -> dict[str, torch.Tensor]:
    return {**metrics.state_dict(), **{k: v.clone() for k, v in loss.metric_state.items()}}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------- TrainStats == per-step updates


def test_train_stats_equal_per_step_torchmetrics_updates_bit_for_bit():
    """Losses over 30 orders of magnitude and uneven batches: the float64 sum gets the same additions in the same order,
    the accuracy counts are the same integers, at every flush point and at the end."""
    g = torch.Generator().manual_seed(0)
    ref_metrics, ref_loss = _metrics(), _loss_mean()
    metrics, loss = _metrics(), _loss_mean()
    for m in (ref_metrics, metrics):
        m.persistent(True)
    stats = TrainStats(metrics, loss)
    for step in range(3 * FLUSH_STEPS + 5):
        n = int(torch.randint(1, 9, (), generator=g))
        logits = torch.randn(n, 10, generator=g)
        labels = torch.randint(0, 10, (n,), generator=g)
        value = (torch.rand((), generator=g) * 36 - 30).exp().float()  # 1e-13 .. 1e3
        ref_metrics.update(logits, labels)
        ref_loss.update(value, weight=n)
        stats.add(value, logits, labels, Position(0, step, step))
        if step % 37 == 0:  # a checkpoint in between: the states hold every step so far
            stats.flush()
            _assert_same(_states(metrics, loss), _states(ref_metrics, ref_loss))
    stats.flush()
    _assert_same(_states(metrics, loss), _states(ref_metrics, ref_loss))
    assert torch.equal(loss.compute(), ref_loss.compute()) and loss.update_count > 0
    for k, v in ref_metrics.compute().items():
        assert torch.equal(metrics.compute()[k], v), k


def test_a_non_finite_loss_is_found_at_its_step():
    stats = TrainStats(_metrics(), _loss_mean())
    logits, labels = torch.randn(4, 10), torch.arange(4)
    for step in range(CHECK_EVERY):
        assert not stats.check_due
        loss = torch.tensor(float("nan") if step == 3 else 1.0)
        stats.add(loss, logits, labels, Position(2, 100 + step, step))
    assert stats.check_due and stats.unchecked == CHECK_EVERY
    assert stats.first_nonfinite() == ("nan", (2, 103, 3))
    assert stats.unchecked == 0 and stats.first_nonfinite() is None  # nothing left to check

    fresh = TrainStats(_metrics(), _loss_mean())
    fresh.add(torch.tensor(2.0), logits, labels, Position(0, 0, 0))
    assert fresh.first_nonfinite() is None
    fresh.add(torch.tensor(float("inf")), logits, labels, Position(0, 1, 1))
    assert fresh.first_nonfinite() == ("inf", (0, 1, 1))


# ---------------------------------------------------------------------------- hooks that do nothing


def test_empty_hooks_are_skipped_and_implemented_ones_kept():
    class Saver(LastCheckpoint):  # implements on_train_batch_end
        pass

    cb = Saver(dirpath="x")
    skipped = skip_empty_hooks(cb, L.Callback)
    assert "on_train_batch_end" not in skipped and callable(cb.on_train_batch_end)
    assert set(skipped) == set(BATCH_HOOKS) - {"on_train_batch_end"}
    assert all(getattr(cb, h) is None for h in skipped)
    assert callable(Saver(dirpath="y").on_before_backward)  # other instances and the class keep theirs
    module = ImageClassifier(nn.Linear(3, 2), 2, torch.optim.SGD)
    assert module.on_before_backward is None and module.on_before_zero_grad is None
    assert callable(module.on_train_batch_end) and callable(module.on_before_optimizer_step)
    assert all(callable(getattr(module, h)) for h in BATCH_HOOKS if h not in TRAIN_BATCH_HOOKS)  # read by Lightning


# ---------------------------------------------------------------------------- the progress bar


def test_progress_bar_updates_at_most_refresh_rate_times_a_second(monkeypatch):
    shown: list[int | None] = []
    base = RichProgressBar.__mro__[1]
    monkeypatch.setattr(base, "on_train_batch_end", lambda self, tr, m, out, batch, i: shown.append(i))
    monkeypatch.setattr(base, "on_train_epoch_end", lambda self, tr, m: shown.append(None))
    monkeypatch.setattr(RichProgressBar, "total_train_batches", 50)
    bar = RichProgressBar(refresh_rate=10)
    for i in range(50):  # far faster than 10 a second
        bar.on_train_batch_end(None, None, None, None, i)
    assert shown == [0, 49]  # the first, then the epoch's last batch
    shown.clear()
    bar._shown_at = -math.inf
    for i in range(7):  # an epoch ended early (trainer.max_steps): its last batch is shown at the epoch's end
        bar.on_train_batch_end(None, None, None, None, i)
    bar.on_train_epoch_end(None, None)
    assert shown == [0, 6, None]
    disabled = RichProgressBar(refresh_rate=0)
    shown.clear()
    for i in range(3):
        disabled.on_train_batch_end(None, None, None, None, i)
    assert shown == [0, 1, 2]  # Lightning's own (disabled) handling, untouched


# ---------------------------------------------------------------------------- end to end: study D's recipe


class _Snapshots(L.Callback):
    """The module's training-metric states at some batches (what a checkpoint there would hold)."""

    def __init__(self, at: set[int]) -> None:
        self.at, self.states = at, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx in self.at:
            state = pl_module.state_dict()
            self.states[(trainer.current_epoch, batch_idx)] = {
                k: copy.deepcopy(v) for k, v in state.items() if k.startswith("train_metrics.")
            }


@pytest.mark.parametrize(
    ("inner_steps", "snapshots", "every"),
    [(1, {5: 5, 70: 70, 119: 119}, 50), (20, {0: 19, 3: 79, 5: 119}, 40)],  # loader item -> the plain loop's batch
    ids=["one_step_per_batch", "inner_steps_20"],
)
def test_study_d_training_equals_a_plain_pytorch_loop(tmp_path, monkeypatch, one_thread, inner_steps, snapshots, every):
    """Study D's recipe through train.py's path (default callbacks, CSV logger): the weights after two epochs equal a
    plain loop's bit for bit, and so do train/acc, train/acc_top5 and train/loss_epoch of each epoch and the training
    metrics a mid-epoch checkpoint holds (against per-step torchmetrics updates in the plain loop). The same with the
    batches handed over 20 at a time (``module.inner_steps=20``, study D's own setting); the loggers' steps still count
    optimizer steps."""
    from hydra.utils import instantiate

    from imgbench.build import build_datamodule, build_net

    data = tmp_path / "data"
    write_cifar(data, "cifar10", n_train=520, n_test=40)  # 480 training images: 120 steps of 4 an epoch
    overrides = [
        "experiment=study_d",
        "data=cifar10",
        f"paths.data_dir={data}",
        "data.val_size=40",
        "trainer.max_epochs=2",
        "test=false",
        "test_epochs=[]",
        "logger=csv",
        "module.channels_last=false",
        "trainer.log_every_n_steps=20",
        f"module.inner_steps={inner_steps}",
        f"callbacks.last_checkpoint.every_n_train_steps={every}",
        "~callbacks.metric_curves",
        "~callbacks.confusion_matrix",
        "~callbacks.prediction_grid",
    ]
    snaps = _Snapshots(set(snapshots))
    build_trainer = run.build_trainer

    def with_snapshots(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        trainer.callbacks.append(snaps)
        return trainer

    monkeypatch.setattr(run, "build_trainer", with_snapshots)
    cfg = compose_cfg(overrides, output_dir=tmp_path / "run")
    result = run.train(cfg)
    assert result["steps"] == 240 and result["batch_size"] == 4

    # the plain loop: the same initialisation, batches, normalisation and SGD steps, torchmetrics updated every step
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    metrics, loss_mean = _metrics(), _loss_mean()
    metrics.persistent(True)
    logged, states = [], {}
    for epoch in range(2):
        loader = dm.train_dataloader()
        loader.epoch_fn, loader.group = None, 1  # one batch at a time, whatever module.inner_steps
        loader.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            logits = net(dm.transform(x, train=True))
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            metrics.update(logits.detach(), y)
            loss_mean.update(loss.detach(), weight=len(y))
            if i in snapshots.values():
                states[(epoch, i)] = {f"train_metrics.{k}": v.clone() for k, v in metrics.state_dict().items()}
        values = {f"train/{k}": v.item() for k, v in metrics.compute().items()}
        logged.append({**values, "train/loss_epoch": loss_mean.compute().float().item()})
        metrics.reset()
        loss_mean.reset()
        loss_mean.set_dtype(torch.float64)

    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for name, tensor in net.state_dict().items():
        assert torch.equal(trained[f"net.{name}"], tensor), name
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss_epoch")]
    assert [{k: float(r[k]) for k in logged[0]} for r in rows] == logged
    assert [int(r["step"]) for r in rows] == [119, 239]  # the epochs' last optimizer steps, whatever the grouping
    assert states.keys() == {(e, i) for e in range(2) for i in snapshots.values()}
    assert snaps.states.keys() == {(e, i) for e in range(2) for i in snapshots}
    for epoch in range(2):
        for item, batch in snapshots.items():
            _assert_same(snaps.states[(epoch, item)], states[(epoch, batch)])


def test_nan_loss_stops_the_run_naming_its_step(tmp_path, monkeypatch, one_thread):
    """A weight made NaN after batch 10: batch 11's loss is NaN; the run stops within CHECK_EVERY steps, naming it."""
    data = tmp_path / "data"
    write_cifar(data, "cifar10", n_train=200, n_test=20)
    stopped = {}

    class Poison(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
            if batch_idx == 10:
                with torch.no_grad():
                    next(pl_module.net.parameters()).view(-1)[0] = float("nan")

        def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
            stopped["step"] = trainer.global_step

    build_trainer = run.build_trainer
    monkeypatch.setattr(run, "build_trainer", lambda *a, **k: _with(build_trainer(*a, **k), Poison()))
    overrides = ["experiment=study_d", "data=cifar10", f"paths.data_dir={data}", "data.val_size=0"]
    overrides += ["trainer.max_epochs=1", "test=false", "test_epochs=[]", "logger=csv", "module.channels_last=false"]
    overrides += ["module.inner_steps=1"]  # the poison lands between two steps
    cfg = compose_cfg(overrides, output_dir=tmp_path / "run")
    with pytest.raises(NonFiniteLossError) as e:
        run.train(cfg)
    assert str(e.value).startswith("the training loss is nan at epoch 0, step 11 (batch 11 of the epoch); ")
    assert str(e.value).endswith("; lower optimizer.lr or set trainer.gradient_clip_val")
    assert 11 <= stopped["step"] < 11 + CHECK_EVERY <= 11 + 10  # a few steps later at most


def _with(trainer: L.Trainer, callback: L.Callback) -> L.Trainer:
    trainer.callbacks.append(callback)
    return trainer
