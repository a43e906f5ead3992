"""Every config composes and validates; every bad input of the command line is one line and exit 2."""

from __future__ import annotations

import itertools

import pytest
from omegaconf import OmegaConf, open_dict

from imgbench.cli import options, precheck
from imgbench.config import validate
from imgbench.errors import ConfigError

from .conftest import compose_cfg, run_cli

MODELS = options("model")
DATA = options("data")


@pytest.mark.parametrize(("model", "data"), list(itertools.product(MODELS, DATA)))
def test_every_model_and_data_composes(model, data, tmp_path):
    extra = ["data.root=x"] if data == "imagefolder" else []
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


def _precheck_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        precheck("train", list(argv), validate)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgbench: error: ") and "\n" not in err
    return err


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
    ],
)
def test_bad_command_lines_fail_fast_with_one_line(capsys, argv, expected):
    assert expected in _precheck_error(capsys, *argv)


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
