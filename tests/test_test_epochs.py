"""``test_epochs``: tests at chosen epochs inside one run equal separate runs of that many epochs, change nothing in
training, are logged at their epoch's step, survive a kill and resume, and are refused where they could not equal
separate runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from imgbench.callbacks import epoch_tests
from imgbench.compose import precheck
from imgbench.config import validate
from imgbench.run import train

from .conftest import compose_cfg, needs_shared, precheck_error, run_cli
from .test_reliability import _run_until

# keras_fcn (dropout) on 300 MNIST images, 6 steps an epoch, crop augmentation; tested on 3 x 100 test images
TINY = [
    "model=keras_fcn",
    "data.train_size=300",
    "data.val_size=100",
    "data.batch_size=50",
    "data.eval_batch_size=100",
    "+trainer.limit_test_batches=3",
    "data.augment.crop_padding=2",
    "callbacks=[last_checkpoint]",
    "module.channels_last=false",  # one layout for every run here
]
STEP_LR = ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"]  # the LR halves every epoch
KEYS = {"test/acc", "test/loss", "test/precision_macro", "test/recall_macro", "test/f1_macro", "test/acc_top5"}


def _train(tmp_path: Path, name: str, *overrides: str) -> dict:
    return train(compose_cfg([*TINY, *overrides], output_dir=tmp_path / name))


def _test_metrics(result: dict) -> dict[str, float]:
    return {k: v for k, v in result["metrics"].items() if k.startswith("test/")}


@pytest.fixture(scope="module")
def constant_lr(tmp_path_factory, monkeypatch_module) -> dict[str, dict]:
    """A 2-epoch run tested at epoch 1 too, beside separate 1- and 2-epoch runs; the test's random state checked."""
    tmp = tmp_path_factory.mktemp("constant_lr")
    evaluate_test_split, checked = epoch_tests.evaluate_test_split, []

    def checked_test(trainer, module):  # the global random state and the modules' modes are left as they were
        before, modes = torch.get_rng_state(), [m.training for m in module.modules()]
        values = evaluate_test_split(trainer, module)
        assert torch.equal(torch.get_rng_state(), before) and [m.training for m in module.modules()] == modes
        checked.append(values)
        return values

    monkeypatch_module.setattr(epoch_tests, "evaluate_test_split", checked_test)
    runs = {
        "tested": _train(tmp, "tested", "trainer.max_epochs=2", "test_epochs=[1]", "logger=tensorboard"),
        "one": _train(tmp, "one", "trainer.max_epochs=1", "logger=csv"),
        "two": _train(tmp, "two", "trainer.max_epochs=2", "logger=csv"),
    }
    assert len(checked) == 1  # epoch 1 only: the end is the run's own test
    runs["dir"] = tmp / "tested"
    return runs


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@needs_shared
def test_tests_at_an_epoch_equal_a_run_of_that_many_epochs(constant_lr):
    tested = constant_lr["tested"]["test_epochs"]
    assert list(tested) == ["1", "2"]
    assert set(tested["1"]) == KEYS
    assert tested["1"] == _test_metrics(constant_lr["one"])  # bit for bit: the same weights, tested alike
    # training went on as without the test: the end equals a plain 2-epoch run
    assert tested["2"] == _test_metrics(constant_lr["tested"]) == _test_metrics(constant_lr["two"])


@needs_shared
def test_a_step_schedule_tests_as_separate_runs(tmp_path):
    tested = _train(tmp_path, "tested", *STEP_LR, "trainer.max_epochs=2", "test_epochs=[1]", "logger=csv")
    one = _train(tmp_path, "one", *STEP_LR, "trainer.max_epochs=1", "logger=csv")
    assert tested["test_epochs"]["1"] == _test_metrics(one)


@needs_shared
def test_metrics_json_and_tensorboard_hold_each_tested_epoch(constant_lr):
    run_dir = constant_lr["dir"]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["test_epochs"] == constant_lr["tested"]["test_epochs"]
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps_per_epoch = record["steps"] // record["epochs"]
    for tag in ("test/acc", "test/loss"):
        points = events.Scalars(tag)
        # epoch 1 at its epoch-end step (with val/acc), the run's test at the end, as trainer.test logs it
        assert [p.step for p in points] == [steps_per_epoch - 1, record["steps"]], tag
        assert [p.value for p in points] == pytest.approx([record["test_epochs"][e][tag] for e in ("1", "2")])
    assert steps_per_epoch - 1 in [p.step for p in events.Scalars("val/acc")]


@needs_shared
def test_a_killed_run_keeps_the_tests_before_the_kill(tmp_path, constant_lr):
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer.max_epochs=3", "test_epochs=[1,2]", "logger=csv", f"hydra.run.dir={run_dir}"]
    args += ["callbacks.last_checkpoint.every_n_train_steps=4"]  # last.ckpt at steps 4, 6 (epoch 1's end), 8, ...
    rc, out = _run_until(args, run_dir, 8)  # killed in epoch 2, after epoch 1's test
    assert rc == -signal.SIGKILL, out[-2000:]
    rc, out = _run_until([f"resume={run_dir}"], run_dir, None)
    assert rc == 0, out[-2000:]
    tested = json.loads((run_dir / "metrics.json").read_text())["test_epochs"]
    assert list(tested) == ["1", "2", "3"]
    assert tested["1"] == constant_lr["tested"]["test_epochs"]["1"]  # the same run up to epoch 1: the same test


@needs_shared
def test_a_schedule_over_the_run_is_refused_before_data_loads(tmp_path):
    done = run_cli(
        "train.py",
        "scheduler=cosine",
        "test_epochs=[1]",
        "trainer.max_epochs=2",
        f"paths.data_dir={tmp_path / 'no_data'}",  # nothing is read: the check comes first
        f"paths.log_dir={tmp_path / 'logs'}",
    )
    assert done.returncode == 2
    err = done.stderr.strip()
    assert "\n" not in err and err.startswith("imgbench: error: test_epochs")
    assert "scheduler=cosine's T_max follows trainer.max_epochs" in err and "scheduler.T_max=<number>" in err
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["test_epochs=[0]"], "test_epochs entries must be whole numbers of epochs >= 1"),
        (["test_epochs=[1.5]"], "test_epochs[0]"),
        (["test_epochs=[two]"], "test_epochs[0]"),
        (["test_epochs=[11]"], "test_epochs entry 11 is beyond trainer.max_epochs=10"),
        (["test_epochs=[5,3]"], "test_epochs must be increasing, without repeats"),
        (["test_epochs=[3,3]"], "test_epochs must be increasing, without repeats"),
        (["test_epochs=[3]", "test=false"], "but test=false; set test=true or test_epochs=[]"),
        (["test_epochs=[3]", "test_ckpt=best"], "set test_ckpt=last or test_epochs=[]"),
        (["test_epochs=[3]", "scheduler=onecycle"], "scheduler=onecycle's total_steps is null"),
        (["test_epochs=[3]", "scheduler=warmup_cosine"], "and max_epochs follows trainer.max_epochs"),
        (  # the length through another key: both follow recipe.epochs
            [
                "+recipe.epochs=4",
                "trainer.max_epochs=${recipe.epochs}",
                "scheduler=cosine",
                "scheduler.T_max=${recipe.epochs}",
                "test_epochs=[2]",
            ],
            "T_max follows recipe.epochs (as trainer.max_epochs does)",
        ),
        (["test_epochs=[3]", "experiment=cifar10_fast"], "callbacks.ema tests an average"),
    ],
)
def test_test_epochs_that_cannot_work_are_refused_in_one_line(capsys, argv, expected):
    assert expected in precheck_error(capsys, *argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["test_epochs=[3,10]"],  # an entry equal to max_epochs is the run's own test
        ["test_epochs=[3]", "scheduler=cosine", "scheduler.T_max=10"],  # a cosine of fixed length
        ["test_epochs=[3]", "scheduler=multistep"],
        ["experiment=study_d"],
    ],
)
def test_schedules_that_do_not_follow_the_run_pass(capsys, argv):
    precheck("train", argv, validate)
    assert capsys.readouterr().err == ""
