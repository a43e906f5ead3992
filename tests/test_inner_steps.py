"""``module.inner_steps``: groups of batches from the loader, one optimizer step per batch, the same training as one
batch per ``training_step``; the settings it cannot honour refused in one line."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import imgbench.run as run
from imgbench.build import build_module
from imgbench.data.loader import TensorBatches
from imgbench.errors import ConfigError

from .conftest import compose_cfg, precheck_error, write_cifar


def _loader(group: int, **kwargs) -> TensorBatches:
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    return TensorBatches(images, torch.arange(50), batch_size=4, shuffle=True, seed=3, group=group, **kwargs)


def _labels(items) -> list[list[int]]:
    return [y.tolist() for item in items for _, y in (item if isinstance(item, list) else [item])]


def test_a_grouped_loader_hands_out_the_same_batches_in_lists():
    """13 batches of 4 (the last of 2) in lists of 3: five lists, the same batches in the same order; a checkpoint
    taken after two lists resumes at batch 6, in lists again."""
    single, grouped = _loader(1), _loader(3)
    items = list(grouped)
    assert (len(single), single.batches, len(grouped), grouped.batches) == (13, 13, 5, 13)
    assert [len(item) for item in items] == [3, 3, 3, 3, 1]
    assert _labels(items) == _labels(single)

    done = {"items": 2}
    saved = _loader(3, position_fn=lambda: done["items"]).state_dict()
    assert saved == {"epoch": 0, "batches": 6}
    resumed = _loader(3)
    resumed.load_state_dict(saved)
    rest = list(resumed)
    assert [len(item) for item in rest] == [3, 3, 1]
    assert _labels(rest) == _labels(single)[6:]


def _train(tmp_path, name: str, overrides: list[str]) -> dict:
    cfg = compose_cfg(overrides, output_dir=tmp_path / name)
    result = run.train(cfg)
    ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)
    with open(tmp_path / name / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {"result": result, "weights": ckpt["state_dict"], "rows": rows}


@pytest.mark.parametrize(
    "setting",
    [
        ["scheduler=onecycle"],  # stepped after every optimizer step
        ["scheduler=cosine", "data.augment.mixup_alpha=0.2"],  # stepped at each epoch's end; mixup per batch
    ],
    ids=["onecycle", "cosine_mixup"],
)
def test_inner_steps_train_exactly_as_one_step_per_batch(tmp_path, seed_and_one_thread, setting):
    """lenet5 on a small CIFAR-10 with crops and flips, 2 epochs of 15 batches of 8: handing the batches over 4 at a
    time (the last list of 3) gives the same weights, bit for bit, the same epoch metrics at the same steps, and the
    learning rate at the first step of each list that holds a logging step."""
    data = tmp_path / "data"
    write_cifar(data, "cifar10", n_train=120, n_test=16)
    common = [
        "data=cifar10",
        f"paths.data_dir={data}",
        "model=lenet5",
        "optimizer=sgd",
        "data.batch_size=8",
        "data.val_size=0",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=4",
        "test=false",
        "logger=csv",
        "module.channels_last=false",
        "~callbacks.metric_curves",
        "~callbacks.confusion_matrix",
        "~callbacks.prediction_grid",
        *setting,
    ]
    one = _train(tmp_path, "one", [*common, "module.inner_steps=1"])
    four = _train(tmp_path, "four", [*common, "module.inner_steps=4"])

    assert one["result"]["steps"] == four["result"]["steps"] == 30
    assert one["weights"].keys() == four["weights"].keys()
    for key, value in one["weights"].items():
        assert torch.equal(value, four["weights"][key]), key

    def epochs(rows):
        return [(r["step"], r["train/acc"], r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]

    assert epochs(one["rows"]) == epochs(four["rows"]) and len(epochs(one["rows"])) == 2
    lr_steps = sorted({int(r["step"]) for r in four["rows"] if r.get("train/lr")})
    if setting[0] == "scheduler=onecycle":
        # lists start at steps 0, 4, 8, 12 and (second epoch) 15, 19, 23, 27; logging steps are 3, 7, 11, ...
        assert lr_steps == [0, 4, 8, 15, 19, 23, 27]
        by_step = {int(r["step"]): float(r["train/lr"]) for r in one["rows"] if r.get("train/lr")}
        assert math.isclose(by_step[15], next(float(r["train/lr"]) for r in four["rows"] if r["step"] == "15"))
    else:
        assert lr_steps == [0, 15]  # once an epoch, at its start


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["module.inner_steps=0"], "module.inner_steps must be a whole number >= 1, got 0"),
        (
            ["module.inner_steps=2", "data=streaming", "data.root=/nowhere"],
            "module.inner_steps=2 needs data held in memory",
        ),
        (["module.inner_steps=2", "+trainer.accumulate_grad_batches=2"], "trainer.accumulate_grad_batches=2 is not "),
        (["module.inner_steps=2", "trainer.gradient_clip_val=1.0"], "trainer.gradient_clip_val=1.0 is not applied"),
        (["module.inner_steps=2", "scheduler=plateau"], "ReduceLROnPlateau is not stepped with module.inner_steps=2"),
        (["experiment=cifar10_fast", "module.inner_steps=2"], "callbacks.ema averages the weights once per loader"),
        (["module.inner_steps=4", "trainer.log_every_n_steps=50"], "trainer.log_every_n_steps=50 is not a multiple"),
        (
            [
                "module.inner_steps=4",
                "trainer.log_every_n_steps=40",
                "callbacks.last_checkpoint.every_n_train_steps=10",
            ],
            "callbacks.last_checkpoint.every_n_train_steps=10 is not a multiple of module.inner_steps=4",
        ),
        (
            ["module.inner_steps=2", "+trainer.limit_train_batches=5"],
            "trainer.limit_train_batches=5 would count groups",
        ),
    ],
)
def test_settings_inner_steps_cannot_honour_are_refused_in_one_line(capsys, overrides, message):
    err = precheck_error(capsys, *overrides)
    assert message in err and ("module.inner_steps=1" in err or "whole number" in err)


def test_inner_steps_refuse_more_than_one_process(tmp_path):
    """DDP syncs gradients once per training_step: with several optimizer steps in one, the module refuses."""
    cfg = compose_cfg(["model=lenet5", "module.inner_steps=2", "module.channels_last=false"], output_dir=tmp_path)
    net = torch.nn.Linear(2, 10)
    with pytest.raises(ConfigError, match=r"module.inner_steps > 1 takes one process .* got 2; set module.inner_"):
        build_module(cfg, net, 10, processes=2)
    assert build_module(cfg, net, 10, processes=1).automatic_optimization is False
