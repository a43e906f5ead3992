"""Shared fixtures: real configs composed with hydra.compose, small datasets written in official formats."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from imgbench.cli import setup_environment
from imgbench.compose import precheck
from imgbench.config import validate
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


WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def _jpeg(rng: np.random.Generator, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    """A small image of random size (40-90 px a side) with a class-free pattern, encoded as ``fmt``."""
    import io

    from PIL import Image

    h, w = (int(v) for v in rng.integers(40, 90, 2))
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)[:h, :w]
    buf = io.BytesIO()
    Image.fromarray(base).convert(mode).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_ilsvrc(
    root: Path, per_class: int = 8, n_val: int = 12, labels: str = "loc", odd_files: bool = True, seed: int = 0
) -> Path:
    """Write a small ILSVRC-2012 layout: train/<wnid>/<wnid>_<k>.JPEG and a flat val/ with its label file.

    Args:
        root: where to write.
        per_class: training images per class.
        n_val: validation images (ILSVRC2012_val_0000000k.JPEG), labelled round-robin.
        labels: ``loc`` (Kaggle's LOC_val_solution.csv and LOC_synset_mapping.txt), ``devkit``
            (ILSVRC2012_validation_ground_truth.txt and meta.mat) or ``none``.
        odd_files: include a gray JPEG, a CMYK JPEG and a PNG named .JPEG, as ILSVRC has.
        seed: the seed of the images.
    """
    import scipy.io

    rng = np.random.default_rng(seed)
    for wnid in WNIDS:
        (root / "train" / wnid).mkdir(parents=True)
        for k in range(per_class):
            (root / "train" / wnid / f"{wnid}_{k}.JPEG").write_bytes(_jpeg(rng))
    if odd_files:
        (root / "train" / WNIDS[0] / f"{WNIDS[0]}_gray.JPEG").write_bytes(_jpeg(rng, "L"))
        (root / "train" / WNIDS[1] / f"{WNIDS[1]}_cmyk.JPEG").write_bytes(_jpeg(rng, "CMYK"))
        (root / "train" / WNIDS[2] / f"{WNIDS[2]}_png.JPEG").write_bytes(_jpeg(rng, "RGB", "PNG"))
    (root / "val").mkdir()
    truth = [k % len(WNIDS) for k in range(n_val)]
    for k in range(n_val):
        (root / "val" / f"ILSVRC2012_val_{k + 1:08d}.JPEG").write_bytes(_jpeg(rng))
    if labels == "loc":
        rows = [f"ILSVRC2012_val_{k + 1:08d},{WNIDS[t]} 1 2 30 40 {WNIDS[t]} 5 6 20 20" for k, t in enumerate(truth)]
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
        names = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark", "tiger shark"]
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in zip(WNIDS, names)))
    elif labels == "devkit":
        data = root / "ILSVRC2012_devkit_t12" / "data"
        data.mkdir(parents=True)
        ids = [3, 1, 4, 2]  # devkit ids are not in wnid order
        dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
        synsets = np.array([(i, w, f"class {w}", 0) for i, w in zip(ids, WNIDS)], dtype=dtype)
        scipy.io.savemat(str(data / "meta.mat"), {"synsets": synsets})
        (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ids[t]}\n" for t in truth))
    return root


@pytest.fixture
def seed_and_one_thread():
    """Seed 0 and one torch thread: batches of 2 gain nothing from a second thread, and spinning threads on shared
    cores cost up to 4x."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_step(model: torch.nn.Module, x: torch.Tensor, num_classes: int = 10) -> float:
    """One forward, cross-entropy backward and optimizer step (plain SGD: cheapest on 11M parameters); the loss."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    y = torch.randint(0, num_classes, (x.shape[0],))
    loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def precheck_error(capsys, *argv: str) -> str:
    """The one line ``python train.py <argv>`` stops with (exit status 2), from the pre-flight check."""
    with pytest.raises(SystemExit) as e:
        precheck("train", list(argv), validate)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgbench: error: ") and "\n" not in err
    return err
