"""Every experiment composes row by row, runs with fast_dev_run, and names a paper table whose cells its rows
can match."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from imgbench.config import validate
from imgbench.data.shard_writer import write_dataset
from imgbench.data.sources import read_source
from imgbench.errors import ConfigError
from imgbench.groups import glob_options, options
from imgbench.paths import CONF_DIR
from imgbench.report import build_report, load
from imgbench.run import train

from .conftest import SHARED_DATA, compose_cfg, needs_shared, run_cli, write_ilsvrc

EXPERIMENTS = options("experiment")
STUDIES = [e for e in EXPERIMENTS if e.startswith("study_")]  # the papers' tables; cifar10_fast has no paper


def sweep_values(key: str, spec: str) -> list[str]:
    """The values of one sweeper param: a,b,c | glob(pattern) over a group | range(a,b)."""
    spec = str(spec).strip()
    if spec.startswith("glob("):
        return glob_options(key, spec)
    if spec.startswith("range("):
        return [str(i) for i in range(*[int(v) for v in spec[6:-1].split(",")])]
    return [v.strip() for v in spec.split(",")]


def experiment_rows(name: str) -> list[list[str]]:
    """One override list per value of the experiment's first sweep dimension (every ablation row)."""
    cfg = compose_cfg([f"experiment={name}"])
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) if cfg.hydra.sweeper.get("params") else {}
    rest = [f"{k}={sweep_values(k, v)[0]}" for k, v in list(params.items())[1:]]
    if not params:
        return [[]]
    key, spec = next(iter(params.items()))
    return [[f"{key}={v}", *rest] for v in sweep_values(key, spec)]


def test_every_study_has_experiments():
    assert {
        "study_a",
        "study_a_bits",
        "study_b",
        "study_c",
        "study_d",
        "study_e_mnist",
        "study_e_cifar",
        "study_e_single_conv",
    } <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", STUDIES)
def test_experiment_rows_compose_and_name_a_reference(name, tmp_path):
    rows = experiment_rows(name)
    extra = ["data.root=x"] if name == "study_b" else []
    for row in rows:
        cfg = compose_cfg([f"experiment={name}", *row, *extra], output_dir=tmp_path)
        validate(cfg)
    reference = OmegaConf.select(cfg, "report.reference")
    table = load(reference)  # the table exists
    ablations = {c.setting["ablation"] for c in table.cells if "ablation" in c.setting}
    swept = {row[0].split("=", 1)[1] for row in rows if row and row[0].startswith("ablation=")}
    assert ablations <= swept, "reference cells name ablation rows that the experiment does not run"


def swept_ablations(name: str) -> set[str]:
    spec = OmegaConf.select(compose_cfg([f"experiment={name}"]), "hydra.sweeper.params.ablation")
    return set(sweep_values("ablation", spec)) if spec else set()


def test_ablation_rows_live_in_one_folder_per_study():
    """ablation=<study>/<row>: every row file is in its study's folder, and every swept row exists."""
    rows = set(options("ablation"))
    assert rows and all(re.fullmatch(r"study_[a-e]/\w+", r) for r in rows), sorted(rows)
    swept = set().union(*(swept_ablations(name) for name in STUDIES))
    assert swept <= rows
    assert rows == swept  # every row is in its experiment's one command


# what each paper fixes and its experiment must do: the training set (the whole one, or the paper's split) and the
# augmentation and normalisation it states or its code uses
STUDY_D = {"data.val_size": 10000, "data.normalize": "symmetric", "data.augment.flip": False}
PAPER_SETTINGS = {
    "study_a": {"data.val_size": 0, "data.augment.crop_padding": 0},  # whole training sets; flips only (not stated)
    "study_c": {"data.val_size": 0},
    "study_d": {**STUDY_D, "optimizer.momentum": 0.9},  # the tutorial's SGD (the paper's code)
    "study_d_no_momentum": {**STUDY_D, "optimizer.momentum": 0.0},  # the paper's words, "gradient descent"
    "study_e_mnist": {"data.val_size": 0, "data.normalize": "unit"},
    "study_e_single_conv": {"data.val_size": 0},
    "study_e_cifar": {"data.val_size": 0, "data.augment.crop_padding": 0, "data.augment.shift": 0.1},
}


@pytest.mark.parametrize(("name", "settings"), PAPER_SETTINGS.items())
def test_experiments_do_what_their_papers_say(name, settings):
    for row in experiment_rows(name):
        cfg = compose_cfg([f"experiment={name}", *row])
        assert {k: OmegaConf.select(cfg, k) for k in settings} == settings, row


def test_cifar10_fast_takes_every_number_from_its_recipe(tmp_path):
    cfg = compose_cfg(["experiment=cifar10_fast"], output_dir=tmp_path)
    raw = OmegaConf.to_yaml(cfg)
    used = set(re.findall(r"\$\{recipe\.(\w+)\}", raw))
    assert used == set(cfg.recipe), "a recipe value no block uses, or a block naming no recipe value"
    r = cfg.recipe
    blocks = (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.optimizer.lr, cfg.module.label_smoothing)
    assert blocks == (r.batch_size, r.epochs, r.lr, r.label_smoothing) == (1024, 16, 1.0, 0.2)
    assert cfg.callbacks.ema.decay == 0.99 and cfg.data.augment.crop_padding == 2
    assert list(cfg.callbacks) == ["patch_whitening", "ema", "last_checkpoint"]  # the order they run in
    cfg = compose_cfg(["experiment=cifar10_fast", "recipe.batch_size=512"], output_dir=tmp_path)
    assert cfg.data.batch_size == 512


EXPECTED_ROWS = {
    "study_c": 7 * 10,
    "study_d": 5,  # 4 rows tested at 10, 30, 60 and 100 epochs in one run each (test_epochs), and ResNet's 10
    "study_d_no_momentum": 5,
    "study_e_mnist": 2,
    "study_e_single_conv": 14,  # 12 rows and the conv-layers rows in the stacked reading
    "study_a": 4 * 3,
    "study_a_bits": 3 * 7,
}


@pytest.mark.parametrize(("name", "jobs"), EXPECTED_ROWS.items())
def test_experiment_sweeps_the_papers_rows(name, jobs):
    cfg = compose_cfg([f"experiment={name}"])
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    total = 1
    for key, spec in params.items():
        total *= len(sweep_values(key, spec))
    assert total == jobs
    assert cfg.hydra.mode.name == "MULTIRUN"


def _fast(name: str, tmp_path: Path, cifar_dir: Path) -> list[str]:
    """A fast_dev_run of the experiment's first row on small local data."""
    overrides = [
        f"experiment={name}",
        *experiment_rows(name)[0],
        "debug=fast_dev_run",
        "data.eval_batch_size=64",
        "logger=csv",
    ]
    if name.startswith(("study_d", "study_e_cifar", "cifar10_fast", "cifar10_modern")):
        overrides += [f"paths.data_dir={cifar_dir}", "data.val_size=20"]
    if name == "cifar10_fast":
        overrides.append("data.batch_size=16")  # 1024 with drop_last would leave no batch of 40 images
    if name == "study_a":
        overrides.append("data=mnist")
    if name == "study_b":  # ILSVRC-style data, prepared into shards and streamed (data=imagenet)
        source = read_source(write_ilsvrc(tmp_path / "ilsvrc", per_class=3, n_val=4, odd_files=False))
        write_dataset(source, tmp_path / "shards", workers=1)
        overrides += [
            f"data.root={tmp_path / 'shards'}",
            "data.eval_resize=72",
            "data.image_size=64",
            "data.val_size=2",
            "data.num_workers=0",
        ]
    if name.startswith("study_a"):
        overrides.append("module.hash.database_size=64")
    return overrides


@pytest.mark.parametrize("name", EXPERIMENTS)
@needs_shared
def test_experiment_runs_with_fast_dev_run(name, tmp_path, cifar_dir):
    cfg = compose_cfg(_fast(name, tmp_path, cifar_dir), output_dir=tmp_path / "run")
    result = train(cfg)
    assert result["status"] == "finished"
    assert result["reference"] == OmegaConf.select(compose_cfg([f"experiment={name}"]), "report.reference")
    if "submission" in cfg.callbacks:  # the studies' reports (cifar10_fast keeps to the essentials)
        assert (tmp_path / "run" / "submission.csv").is_file() and (tmp_path / "run" / "predictions.png").is_file()
    if name == "study_b":  # data=imagenet is ILSVRC-2012: the run fills the paper's one-CNN cell of its table 2
        rows = {row["cell"]: row for row in build_report(tmp_path / "run", result["reference"]).comparison()}
        assert rows["AlexNet, ILSVRC-2012 val, top-1"]["n"] == "1"
        assert rows["AlexNet, ILSVRC-2010, top-1"]["ours"] == "not run"


def test_a_batch_larger_than_the_data_with_drop_last_is_one_line(tmp_path, cifar_dir):
    cfg = compose_cfg(
        ["experiment=cifar10_fast", f"paths.data_dir={cifar_dir}", "debug=fast_dev_run"], output_dir=tmp_path
    )
    with pytest.raises(ConfigError, match=r"leaves no training batch from 100 images; lower data\.batch_size"):
        train(cfg)


@needs_shared
def test_study_e_mnist_ends_with_the_papers_table(tmp_path):
    """The whole command as a user runs it (on a subset): both models, then the table beside the thesis's."""
    result = run_cli(
        "train.py",
        "experiment=study_e_mnist",  # the paper's 10 epochs, on 500 images
        "data.train_size=500",
        "data.val_size=0",  # the thesis's: no validation split (a run with one would fill no cell)
        "data.eval_batch_size=2000",
        f"paths.log_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "study_e_mnist" / "multirun").iterdir()
    report = (sweep / "report.md").read_text()
    assert "Paper: CNN versus fully convolutional network" in report
    rows = [line for line in report.splitlines() if line.startswith(("| CNN, MNIST", "| FCN, MNIST"))]
    assert len(rows) == 2 and all("0.99" in r for r in rows)  # the paper's column
    assert not any("not run" in r for r in rows)  # both cells matched by our runs (10 epochs, MNIST)
    record = json.loads(next(sweep.glob("*/metrics.json")).read_text())
    assert record["choices"]["experiment"] == "study_e_mnist" and record["reference"] == "study_e/mnist"
    assert (CONF_DIR / "experiment" / "study_e_mnist.yaml").is_file() and SHARED_DATA.is_dir()
