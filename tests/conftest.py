"""Shared fixtures: real configs composed with hydra.compose, small datasets written in official formats."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from imgbench.cli import setup_environment
from imgbench.paths import CONF_DIR, REPO_ROOT

SHARED_DATA = Path(os.environ.get("IMGBENCH_DATA_DIR", REPO_ROOT.parent / "shared" / "datasets"))
HAS_SHARED = (SHARED_DATA / "mnist-train.npz").is_file()
needs_shared = pytest.mark.skipif(not HAS_SHARED, reason="needs ../shared/datasets (IMGBENCH_DATA_DIR)")

setup_environment()


def compose_cfg(
    overrides: list[str] | None = None, output_dir: Path | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose a real config as train.py would, with the run directory at ``output_dir``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=config_name):
        cfg = compose(config_name, overrides=overrides or [], return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def train_cfg(tmp_path):
    """``train_cfg(*overrides)``: a composed training config whose run directory is a temporary folder."""

    def make(*overrides: str, data_dir: Path | None = None) -> DictConfig:
        extra = [f"paths.data_dir={data_dir}"] if data_dir is not None else []
        return compose_cfg([*overrides, *extra, "logger=csv"], output_dir=tmp_path / "run")

    return make


def run_cli(script: str, *args: str, cwd: Path = REPO_ROOT, timeout: int = 600, env: dict | None = None):
    """Run ``python <script> args`` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


# ---------------------------------------------------------------------------- small datasets on disk


def write_cifar(root: Path, kind: str, n_train: int = 60, n_test: int = 30, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 or CIFAR-100 in the official python-pickle layout (protocol 2, as distributed)."""
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        folder.mkdir(parents=True)
        per_batch = n_train // 5
        for i in range(1, 6):
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, per_batch).tolist()
            _pickle(folder / f"data_batch_{i}", {b"batch_label": b"batch", b"labels": labels, b"data": data})
        data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
        _pickle(
            folder / "test_batch",
            {b"batch_label": b"test", b"labels": rng.integers(0, 10, n_test).tolist(), b"data": data},
        )
        _pickle(folder / "batches.meta", {b"label_names": [c.encode() for c in classes], b"num_vis": 3072})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        fine = [f"class_{i:02d}" for i in range(100)]
        coarse = [f"super_{i:02d}" for i in range(20)]
        for split, n in (("train", n_train), ("test", n_test)):
            fine_labels = rng.integers(0, 100, n)
            _pickle(
                folder / split,
                {
                    b"filenames": [b"x.png"] * n,
                    b"batch_label": split.encode(),
                    b"fine_labels": fine_labels.tolist(),
                    b"coarse_labels": (fine_labels // 5).tolist(),
                    b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                },
            )
        _pickle(
            folder / "meta",
            {
                b"fine_label_names": [c.encode() for c in fine],
                b"coarse_label_names": [c.encode() for c in coarse],
            },
        )
    return folder


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_image_folder(
    root: Path,
    classes=("cat", "dog", "fox"),
    per_class: int = 6,
    size=(20, 24),
    splits=("train", "test"),
    fmt: str = "png",
    seed: int = 0,
) -> Path:
    """Write ``root/<split>/<class>/<i>.<fmt>`` with random RGB images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in splits:
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.{fmt}")
    return root


@pytest.fixture
def cifar_dir(tmp_path):
    """A data directory holding tiny official-format CIFAR-10 and CIFAR-100."""
    root = tmp_path / "cifar_data"
    write_cifar(root, "cifar10", n_train=100, n_test=40)
    write_cifar(root, "cifar100", n_train=100, n_test=40)
    return root
