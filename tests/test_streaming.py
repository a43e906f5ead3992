"""The streaming data path as users run it: imgbench.prepare on an ILSVRC-style folder, then train.py/eval.py
with data=streaming or data=imagenet; exact resume after SIGKILL with loader workers, DDP evaluation equal to one
process, and one clear line for every bad input."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from litdata import StreamingDataset

from imgbench.data.image_views import ImageView, random_resized_box
from imgbench.data.streaming import StreamingDataModule
from imgbench.errors import ConfigError

from .conftest import REPO_ROOT, WNIDS, compose_cfg, run_cli, write_ilsvrc
from .test_reliability import _run_until, assert_same_run

# 32-pixel crops of 36-pixel squares: small enough for CPU tests, every step of the real path
SMALL = [
    "data=streaming",
    "data.image_size=32",
    "data.eval_resize=36",
    "data.batch_size=16",
    "data.val_size=27",
    "data.num_workers=2",
    "data.augment.lighting=0.1",
    "model=keras_cnn",
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "~callbacks.prediction_grid",
    "~callbacks.metric_curves",
    "module.channels_last=false",
]
TEST_KEYS = ("test/acc", "test/loss")


def _prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgbench.prepare", *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """An ILSVRC-style source (4 classes, 123 training images incl. gray, CMYK and PNG files) prepared once."""
    base = tmp_path_factory.mktemp("streaming")
    write_ilsvrc(base / "src", per_class=30, n_val=40)
    result = _prepare(base / "src", base / "shards", "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "shards"


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# ---------------------------------------------------------------------------- prepare


def test_prepare_reads_both_ilsvrc_label_files_and_converts_odd_images(tmp_path, shards):
    meta = json.loads((shards / "imgbench.json").read_text())
    assert meta["classes"] == WNIDS and meta["class_names"][0] == "tench, Tinca tinca"
    assert meta["splits"] == {"train": 123, "test": 40}  # ILSVRC's val/ is the test split
    assert meta["converted"] == {"train": 3, "test": 0}  # the gray JPEG, the CMYK JPEG and the PNG
    test = StreamingDataset(str(shards / "test"))
    assert [int(test[k]["label"]) for k in range(40)] == [k % 4 for k in range(40)]  # val/ in file order
    train = StreamingDataset(str(shards / "train"))
    labels = [int(train[k]["label"]) for k in range(123)]
    assert sorted(labels) == sorted([0] * 31 + [1] * 31 + [2] * 31 + [3] * 30)
    assert labels[:30] != sorted(labels[:30])  # written in a seeded random order, classes mixed
    # the devkit's ground truth uses its own class ids, mapped to wnids through meta.mat
    write_ilsvrc(tmp_path / "dev", per_class=3, n_val=8, labels="devkit", odd_files=False)
    result = _prepare(tmp_path / "dev", tmp_path / "dev_shards", "--workers", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    dev = StreamingDataset(str(tmp_path / "dev_shards" / "test"))
    assert [int(dev[k]["label"]) for k in range(8)] == [k % 4 for k in range(8)]
    # the same source gives the same shards, byte for byte
    again = _prepare(tmp_path / "dev", tmp_path / "again", "--workers", "2")
    assert again.returncode == 0
    for chunk in (tmp_path / "dev_shards").rglob("*.bin"):
        assert chunk.read_bytes() == (tmp_path / "again" / chunk.relative_to(tmp_path / "dev_shards")).read_bytes()


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("imgbench-prepare: error: "), result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == lines[0]  # the last thing said (after the progress bar)
    for word in words:
        assert word in lines[0], lines[0]


def test_prepare_bad_inputs_give_one_line_and_leave_nothing(tmp_path):
    src = write_ilsvrc(tmp_path / "src", per_class=4, n_val=4, odd_files=False)
    bad = src / "train" / WNIDS[1] / f"{WNIDS[1]}_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    out = tmp_path / "out"
    _one_line_error(_prepare(src, out, "--workers", "2"), str(bad), "--skip-corrupt")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["src"]  # no partial folder left
    result = _prepare(src, out, "--skip-corrupt", "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((out / "imgbench.json").read_text())
    assert meta["splits"]["train"] == 15 and meta["skipped"] == {"train": [str(bad)]}
    # the output folder is in use: refused, and what is there stays
    _one_line_error(_prepare(src, out), str(out), "--overwrite")
    assert json.loads((out / "imgbench.json").read_text()) == meta
    # an empty class folder, a flat val/ without labels
    (src / "train" / "n09999999").mkdir()
    _one_line_error(_prepare(src, tmp_path / "out2"), "n09999999", "holds no images")
    (src / "train" / "n09999999").rmdir()
    (src / "LOC_val_solution.csv").unlink()
    _one_line_error(_prepare(src, tmp_path / "out2"), "--val-labels", "LOC_val_solution.csv")
    _one_line_error(_prepare(tmp_path / "nowhere", tmp_path / "out2"), "does not exist")
    assert not (tmp_path / "out2").exists()


# ---------------------------------------------------------------------------- training and evaluation


@pytest.mark.slow
def test_train_then_eval_gives_the_same_test_metrics(tmp_path, shards):
    run_dir = tmp_path / "run"
    result = run_cli("train.py", *SMALL, f"data.root={shards}", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = _metrics(run_dir)
    assert record["splits"] == {"train": 96, "val": 27, "test": 40}
    assert record["data"] == "src"  # the name prepare gave it: the source folder's
    rows = (run_dir / "submission.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(40))
    ev = run_cli("eval.py", f"ckpt_path={run_dir}", f"paths.log_dir={tmp_path / 'logs'}")
    assert ev.returncode == 0, ev.stderr[-3000:]
    (eval_metrics,) = (tmp_path / "logs").glob("eval/*/metrics.json")
    evaluated = json.loads(eval_metrics.read_text())
    assert {k: evaluated["metrics"][k] for k in TEST_KEYS} == {k: record["metrics"][k] for k in TEST_KEYS}


@pytest.mark.slow
def test_killed_run_with_two_loader_workers_resumes_to_identical_weights(tmp_path, shards):
    args = [*SMALL, f"data.root={shards}", "trainer.max_epochs=3", "callbacks.last_checkpoint.every_n_train_steps=2"]
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    rc, out = _run_until([*args, f"hydra.run.dir={ref_dir}"], ref_dir, None)
    assert rc == 0, out[-3000:]
    rc, out = _run_until([*args, f"hydra.run.dir={run_dir}"], run_dir, 3)  # mid-epoch (6 steps an epoch)
    assert rc == -signal.SIGKILL, out[-3000:]
    rc, out = _run_until([f"resume={run_dir}"], run_dir, 12)  # right after the second epoch
    assert rc == -signal.SIGKILL, out[-3000:]
    rc, out = _run_until([f"resume={run_dir}"], run_dir, None)
    assert rc == 0, out[-3000:]
    assert_same_run(ref_dir, run_dir, steps=18)


@pytest.mark.slow
def test_two_process_test_equals_one_process_eval(tmp_path, shards):
    run_dir = tmp_path / "ddp"
    args = [*SMALL, f"data.root={shards}", "trainer=ddp_cpu", "trainer.max_epochs=1", "data.eval_batch_size=7"]
    result = run_cli("train.py", *args, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = _metrics(run_dir)
    assert record["processes"] == 2
    rows = (run_dir / "submission.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(40))  # every test image once, in order
    ev = run_cli("eval.py", f"ckpt_path={run_dir}", "trainer.devices=1", f"paths.log_dir={tmp_path / 'logs'}")
    assert ev.returncode == 0, ev.stderr[-3000:]
    (eval_metrics,) = (tmp_path / "logs").glob("eval/*/metrics.json")
    evaluated = json.loads(eval_metrics.read_text())
    assert {k: evaluated["metrics"][k] for k in TEST_KEYS} == {k: record["metrics"][k] for k in TEST_KEYS}


def test_each_process_streams_a_disjoint_share_of_every_epoch(shards, monkeypatch):
    from imgbench.data.streaming import ShardStream

    def index_only(data, index, epoch):
        return index

    shares = []
    for rank in range(2):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))  # LitData's rank outside an initialised process group
        stream = ShardStream(str(shards / "train"), index_only, shuffle=True, drop_last=True, seed=3)
        stream.set_epoch(2)
        shares.append([i for i, _ in stream])
    assert len(shares[0]) == len(shares[1]) == 61  # equal shares, so the processes stay in step
    assert not set(shares[0]) & set(shares[1]) and len(set(shares[0] + shares[1])) == 122


# ---------------------------------------------------------------------------- bad shard folders and values


def _train_error(*args: str) -> str:
    result = run_cli("train.py", *SMALL, "debug=fast_dev_run", *args)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("imgbench: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_missing_foreign_and_truncated_shards_give_one_line(tmp_path, shards):
    line = _train_error(f"data.root={tmp_path / 'nowhere'}")
    assert "does not exist" in line and "imgbench.prepare" in line
    foreign = tmp_path / "foreign"
    shutil.copytree(shards / "train", foreign / "train")  # LitData shards, but not prepared by imgbench
    assert "not a dataset prepared by imgbench" in _train_error(f"data.root={foreign}")
    broken = shutil.copytree(shards, tmp_path / "broken")
    (chunk,) = (broken / "train").glob("*.bin")
    chunk.write_bytes(chunk.read_bytes()[:1000])
    line = _train_error(f"data.root={broken}")
    assert str(chunk) in line and "truncated" in line
    no_test = shutil.copytree(shards, tmp_path / "no_test")
    shutil.rmtree(no_test / "test")
    assert str(no_test / "test") in _train_error(f"data.root={no_test}")
    line = _train_error("data.root=s3://imgbench-no-such-bucket/imagenet")
    assert "s3://imgbench-no-such-bucket/imagenet/imgbench.json" in line and "credentials" in line


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"image_size": 300}, "data.image_size (300) must be at most data.eval_resize"),
        ({"train_crop": "center"}, "data.train_crop must be one of random_resized, random"),
        ({"scale": [0.5, 0.1]}, "data.scale must be [low, high]"),
        ({"augment": {"crop_padding": 4}}, "data.augment.crop_padding"),
        ({"num_workers": -1}, "data.num_workers must be >= 0"),
    ],
)
def test_streaming_values_are_checked_before_anything_is_read(kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        StreamingDataModule(root="/nowhere", **kwargs)


def test_random_resized_crops_are_a_function_of_seed_epoch_and_index():
    import random

    boxes = {random_resized_box(300, 400, random.Random(hash((0, e, i))), (0.08, 1.0), (3 / 4, 4 / 3))
             for e in range(3) for i in range(50)}  # fmt: skip
    assert len(boxes) > 140  # different crops for different images and epochs
    for top, left, h, w in boxes:
        assert 0 <= top <= 300 - h and 0 <= left <= 400 - w and 0.08 * 120000 * 0.9 <= h * w <= 120000
    from .conftest import _jpeg

    data = _jpeg(__import__("numpy").random.default_rng(0))
    view = ImageView(train=True, image_size=24, eval_resize=32, seed=5)
    assert torch.equal(view(data, 7, 2), view(data, 7, 2)) and view(data, 7, 2).shape == (3, 24, 24)
    assert not torch.equal(view(data, 7, 2), view(data, 7, 3))
    assert ImageView(train=False, image_size=24, eval_resize=32)(data, 7, 2).shape == (3, 32, 32)


@pytest.mark.parametrize("train_crop", ["random_resized", "random"])
def test_decoding_on_the_device_gives_the_workers_images(shards, train_crop):
    """decode=device (nvJPEG on a GPU) must give what decode=workers gives: here both decode on the CPU."""
    batches = {}
    for decode in ("workers", "device"):
        dm = StreamingDataModule(root=str(shards), image_size=24, eval_resize=32, train_crop=train_crop,
                                 batch_size=16, val_size=27, num_workers=1, decode=decode)  # fmt: skip
        dm.setup()
        train = next(iter(dm.train_dataloader()))
        test = next(iter(dm.test_dataloader()))
        batches[decode] = [dm.on_after_batch_transfer(b, 0) for b in (train, test)]  # decoded, normalised
    for (x, y), (x2, y2) in zip(batches["workers"], batches["device"]):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_imagenet_and_study_b_compose_the_streaming_recipe():
    cfg = compose_cfg(["data=imagenet", "data.root=/shards"])
    assert cfg.data._target_ == "imgbench.data.StreamingDataModule" and cfg.data.normalize == "imagenet"
    assert (cfg.data.image_size, cfg.data.eval_resize, cfg.data.name) == (224, 256, "ilsvrc2012")
    cfg = compose_cfg(["experiment=study_b", "data.root=/shards"])
    assert cfg.data._target_ == "imgbench.data.StreamingDataModule"
    assert (cfg.data.train_crop, cfg.data.eval_views, cfg.data.augment.lighting) == ("random", "ten_crop", 0.1)
    assert cfg.data.augment.flip is True and cfg.model._target_ == "imgbench.models.alexnet"
    assert cfg.scheduler.factor == 0.1
