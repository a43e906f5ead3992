"""Every config composes and validates; every bad input of the command line is one line and exit 2."""

from __future__ import annotations

import itertools
import json

import pytest
from omegaconf import OmegaConf, open_dict

from imgbench.compose import precheck
from imgbench.config import validate
from imgbench.errors import ConfigError
from imgbench.groups import options

from .conftest import compose_cfg, needs_shared, precheck_error, run_cli

MODELS = options("model")
DATA = options("data")


@pytest.mark.parametrize(("model", "data"), list(itertools.product(MODELS, DATA)))
def test_every_model_and_data_composes(model, data, tmp_path):
    extra = ["data.root=x"] if data in ("imagefolder", "imagenet", "streaming") else []
    if model in ("timm", "torchvision"):  # name: ??? (required)
        extra.append("model.name=resnet18")
    cfg = compose_cfg([f"model={model}", f"data={data}", *extra], output_dir=tmp_path)
    validate(cfg)
    assert cfg.model._target_.endswith(model)
    assert OmegaConf.select(cfg, "data.batch_size") >= 1


@pytest.mark.parametrize(
    ("group", "option"),
    [(g, o) for g in ("optimizer", "scheduler", "trainer", "callbacks", "logger", "debug") for o in options(g)],
)
def test_every_group_option_composes(group, option, tmp_path):
    cfg = compose_cfg([f"{group}={option}"], output_dir=tmp_path)
    validate(cfg)
    for key in ("model", "data", "optimizer", "scheduler", "trainer", "callbacks", "module", "paths"):
        if cfg.get(key) is not None:
            OmegaConf.to_container(cfg[key], resolve=True)  # every interpolation resolves


def test_scheduler_cosine_follows_max_epochs(tmp_path):
    cfg = compose_cfg(["scheduler=cosine", "trainer.max_epochs=7"], output_dir=tmp_path)
    assert cfg.scheduler.T_max == 7


def test_default_run_is_study_e_mnist_cnn(tmp_path):
    cfg = compose_cfg([], output_dir=tmp_path)
    assert cfg.model._target_ == "imgbench.models.keras_cnn"
    assert cfg.data._target_ == "imgbench.data.MNISTDataModule"
    assert cfg.optimizer.lr == 0.001 and cfg.data.batch_size == 128 and cfg.trainer.max_epochs == 10


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["model=resnet9000"], "unknown model 'resnet9000'"),
        (["model=kears_cnn"], "did you mean 'keras_cnn'"),
        (["data=mnsit"], "did you mean 'mnist'"),
        (["optimizer=adamm"], "unknown optimizer 'adamm'"),
        (["trainer.max_epoch=3"], "did you mean 'trainer.max_epochs'"),
        (["optimizer.learning_rate=0.1"], "optimizer accepts: "),
        (["optimizer.lr=-0.1"], "optimizer.lr must be > 0"),
        (["optimizer=sgd", "optimizer.lr=0"], "optimizer.lr must be > 0"),
        (["trainer.max_epochs=0"], "trainer.max_epochs must be"),
        (["data.batch_size=0"], "data.batch_size must be"),
        (["+foo=1"], "unknown top-level key 'foo'"),
        (["seed=abc"], "seed must be an integer"),
        (["data=imagefolder"], "data.root has no value"),
        (["-m", "model=keras_cnn,nope"], "unknown model 'nope'"),
        (["module.label_smothing=0.1"], "did you mean 'module.label_smoothing'"),
        (["test_ckpt=middle"], "test_ckpt must be"),
        (["sed=3"], "unknown config key 'sed' (did you mean 'seed'?)"),  # a top-level key is no config group
    ],
)
def test_bad_command_lines_fail_fast_with_one_line(capsys, argv, expected):
    assert expected in precheck_error(capsys, *argv)


def test_a_good_command_line_passes(capsys):
    precheck("train", ["model=keras_fcn", "data=fashion_mnist", "optimizer=sgd", "trainer.max_epochs=3"], validate)
    precheck("train", ["-m", "data=mnist,fashion_mnist", "optimizer=adam,sgd"], validate)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_passes_the_pre_flight_check(capsys, name):
    """`python train.py experiment=<name>` as the README shows it (glob() sweeps included) gets past the check."""
    precheck("train", [f"experiment={name}", "data.root=x"] if name == "study_b" else [f"experiment={name}"], validate)
    assert capsys.readouterr().err == ""


def test_misspelt_key_in_a_config_file_is_caught(tmp_path):
    cfg = compose_cfg([], output_dir=tmp_path)
    with open_dict(cfg):
        cfg.trainer.max_epoch = 3  # as if an experiment file had it
    with pytest.raises(ConfigError, match="did you mean 'max_epochs'"):
        validate(cfg)


def test_cli_exits_2_before_loading_data():
    """The real entry point: a bad value stops in well under the time it takes to load any data."""
    result = run_cli("train.py", "optimizer.lr=-1", env={"IMGBENCH_DATA_DIR": "/nonexistent"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["imgbench: error: optimizer.lr must be > 0, got -1"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["model=lenet5", "model.activation=gelu"], "model.activation: "),
        (["model=resnet18", "model.stem=pyramid"], "model.stem: "),
        (["model=resnet18", "model.shortcut=identity"], "model.shortcut: "),
        (["model=single_conv", "model.conv_layers=0"], "model.conv_layers: "),
        (["model=keras_cnn", "model.init=he"], "model.init: "),
        (["model=alexnet_hash", "model.pooling=avg"], "model.pooling: "),
        (["seed=-1"], "seed must be a whole number in 0..4294967295, got -1"),
        (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size must be a whole number >= 1"),
        (["scheduler=multistep", "scheduler.milestones=[30,10]"], "scheduler.milestones must be increasing"),
        (["data.batch_size=abc"], "data.batch_size must be an integer, got 'abc'"),
        (["sweep.skip_finished=maybe"], "sweep.skip_finished must be true or false"),
        (["data.normalize=zscore"], "data.normalize must be"),
        (["module.hash.knn_k=3"], "unknown config key 'module.hash'"),
        (["model=alexnet_hash", "module.hash.knn=3"], "did you mean 'module.hash.knn_k'"),
        (["-m", "optimizer.lr=-1,0.1"], "optimizer.lr must be > 0, got -1"),
        (["-m", "model=lenet5,keras_cnn", "model.activation=relu"], "key 'model.activation'"),
        (["train=false", "test=false"], "leave nothing to do"),
        (["hparams_search=keras_cnn_optuna", "test=false", "optimized_metric=test/acc"], "runs no test"),
    ],
)
def test_every_value_of_a_group_is_checked_before_data(capsys, argv, expected):
    assert expected in precheck_error(capsys, *argv)


def test_a_sweep_whose_later_job_does_not_compose_creates_nothing(tmp_path):
    """Every job of a sweep composes before the first starts: the second job's unknown key stops it, exit 2."""
    result = run_cli("train.py", "-m", "model=lenet5,keras_cnn", "model.activation=relu", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("imgbench: error: ") and "'model.activation'" in line
    assert list(tmp_path.iterdir()) == []


def test_a_bad_model_switch_fails_in_one_line_before_any_run_directory(tmp_path):
    result = run_cli("train.py", "model=resnet18", "model.stem=pyramid", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("imgbench: error: model.stem: ") and "set model.stem=" in line
    assert list(tmp_path.iterdir()) == []


def test_help_lists_only_real_options():
    result = run_cli("train.py", "--help")
    assert result.returncode == 0
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "_in_memory" not in groups and "imgbench_" not in groups
    assert "data: cifar10, cifar100, cifar10_jpeg, fashion_mnist, imagefolder, imagenet, mnist, streaming" in groups
    assert "module: classifier, hashing" in groups


def test_hash_bits_and_the_hashing_module_follow_model_and_data(tmp_path):
    cfg = compose_cfg(["model=alexnet_hash", "data=cifar100"], output_dir=tmp_path)
    assert cfg.model.hash_bits == 128 and cfg.module._target_ == "imgbench.modules.HashClassifier"
    cfg = compose_cfg(["model=alexnet_hash", "data=mnist"], output_dir=tmp_path)
    assert cfg.model.hash_bits == 48 and cfg.module.hash.knn_k == 10
    cfg = compose_cfg(["model=alexnet_hash", "data=cifar100", "model.hash_bits=12"], output_dir=tmp_path)
    assert cfg.model.hash_bits == 12  # the command line still wins
    assert compose_cfg([], output_dir=tmp_path).module._target_ == "imgbench.modules.ImageClassifier"


@needs_shared
def test_test_false_trains_and_exits_0(tmp_path):
    """A documented option: train=true test=false fits, writes metrics.json without test metrics, exits 0."""
    result = run_cli(
        "train.py",
        "test=false",
        "data.train_size=256",
        "data.val_size=128",
        "trainer.max_epochs=1",
        "callbacks=none",
        "module.channels_last=false",
        f"paths.log_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [metrics] = tmp_path.glob("train/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["status"] == "finished" and "val/acc_best" in record["metrics"]
    assert not any(k.startswith("test/") for k in record["metrics"])
