"""Nothing computed is lost and nothing is silently wrong: kills, signals, NaN losses, bad checkpoints,
unwritable folders, interrupted writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imgbench.checkpoint import CONFIG_KEY, AtomicCheckpointIO, read_checkpoint
from imgbench.compose import precheck
from imgbench.config import validate
from imgbench.errors import CheckpointError
from imgbench.io import write_json
from imgbench.paths import REPO_ROOT
from imgbench.run import evaluate, train

from .conftest import compose_cfg, needs_shared, run_cli

# 20 steps per epoch, 3 epochs; a step LR schedule, augmentation and dropout all draw on saved state
RESUMABLE = [
    "trainer.max_epochs=3",
    "data.train_size=1000",
    "data.val_size=200",
    "data.batch_size=50",
    "data.eval_batch_size=2000",
    "scheduler=step",
    "scheduler.step_size=1",
    "scheduler.gamma=0.5",
    "data.augment.crop_padding=2",
    "callbacks.last_checkpoint.every_n_train_steps=7",
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "module.channels_last=false",  # one layout for every run here, whatever the machine decided for auto
]


def _global_step(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["global_step"]
    except Exception:  # being replaced right now
        return -1


def _run_until(args: list[str], run_dir: Path, step: int | None, sig: int = signal.SIGKILL, delay: float = 0.0):
    """Start train.py; once last.ckpt holds ``step`` or more steps, wait ``delay`` and send ``sig``."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ckpt, seen = run_dir / "checkpoints" / "last.ckpt", None
    while step is not None and proc.poll() is None:
        if ckpt.is_file() and ckpt.stat().st_mtime != seen:
            seen = ckpt.stat().st_mtime
            if _global_step(ckpt) >= step:
                time.sleep(delay)
                proc.send_signal(sig)
                break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


@needs_shared
def test_killed_and_interrupted_runs_resume_to_identical_results(tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    started = time.perf_counter()
    rc, out = _run_until([*RESUMABLE, f"hydra.run.dir={ref_dir}"], ref_dir, None)
    assert rc == 0, out[-2000:]
    # SIGKILL mid-epoch, SIGKILL right after an epoch ended, Ctrl+C at an epoch's last batch, SIGTERM mid-epoch
    rc, out = _run_until([*RESUMABLE, f"hydra.run.dir={run_dir}"], run_dir, 7, delay=0.05)
    assert rc == -signal.SIGKILL
    for step, sig, expected_rc in (
        (20, signal.SIGKILL, -signal.SIGKILL),
        (39, signal.SIGINT, 130),
        (45, signal.SIGTERM, 143),
    ):
        rc, out = _run_until([f"resume={run_dir}"], run_dir, step, sig)
        assert rc == expected_rc, out[-2000:]
        if sig != signal.SIGKILL:
            assert f"resume with: python train.py resume={run_dir}" in out
            assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    rc, out = _run_until([f"resume={run_dir}"], run_dir, None)
    assert rc == 0, out[-2000:]
    assert_same_run(ref_dir, run_dir, steps=60)
    # the training time and images count across mid-epoch resumes: at most this test's time, and 3 x 1000 images
    assert 0 < json.loads((run_dir / "metrics.json").read_text())["train_seconds"] < time.perf_counter() - started
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)[CONFIG_KEY]
    assert saved["train_images"] == 3000


@needs_shared
def test_a_killed_run_with_inner_steps_resumes_to_the_one_step_per_batch_results(tmp_path):
    """Batches handed over 4 at a time (``module.inner_steps=4``), killed mid-epoch and resumed: the same weights and
    metrics as an uninterrupted run that takes its batches one at a time."""
    grouped = [
        *[o for o in RESUMABLE if "every_n_train_steps" not in o],
        "callbacks.last_checkpoint.every_n_train_steps=8",
        "trainer.log_every_n_steps=20",
    ]
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "grouped"
    rc, out = _run_until([*grouped, "module.inner_steps=1", f"hydra.run.dir={ref_dir}"], ref_dir, None)
    assert rc == 0, out[-2000:]
    rc, out = _run_until([*grouped, "module.inner_steps=4", f"hydra.run.dir={run_dir}"], run_dir, 24, delay=0.05)
    assert rc == -signal.SIGKILL
    rc, out = _run_until([f"resume={run_dir}"], run_dir, None)
    assert rc == 0, out[-2000:]
    assert_same_run(ref_dir, run_dir, steps=60)


def assert_same_run(ref_dir: Path, run_dir: Path, steps: int) -> None:
    """The two runs ended after ``steps`` steps with the same weights, bit for bit, and the same metrics."""
    ref = torch.load(ref_dir / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == ref["global_step"] == steps
    for name, tensor in ref["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name
    ref_metrics = json.loads((ref_dir / "metrics.json").read_text())["metrics"]
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"] == ref_metrics


@needs_shared
def test_resume_latest_and_bad_resume_targets(tmp_path):
    args = [
        "trainer.max_epochs=1",
        "data.train_size=200",
        "data.val_size=100",
        "logger=csv",
        f"paths.log_dir={tmp_path}",
    ]
    assert run_cli("train.py", *args).returncode == 0
    (first,) = (tmp_path / "train").iterdir()
    result = run_cli("train.py", *args, "resume=latest")  # the newest run of exactly this command line
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {first}" in result.stderr
    result = run_cli("train.py", f"resume={first}", "trainer.max_epochs=2")  # train on for one more epoch
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in (tmp_path / "train").iterdir()] == [first.name]  # continued in place
    assert json.loads((first / "metrics.json").read_text())["epochs"] == 2

    other = run_cli("train.py", "model=keras_fcn", "resume=latest", f"paths.log_dir={tmp_path}")
    assert other.returncode == 2 and "no earlier run of this config" in other.stderr
    bad = run_cli("train.py", f"resume={tmp_path}")
    assert bad.returncode == 2 and "is not a run directory" in bad.stderr


@needs_shared
def test_nan_loss_stops_with_epoch_and_step_and_keeps_good_checkpoint(tmp_path):
    args = [
        "optimizer=sgd",
        "optimizer.lr=1000",  # NaN after a few steps
        "data.train_size=2000",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        "logger=csv",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = run_cli("train.py", *args)
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("imgbench: error:")]
    assert "training loss is nan at epoch 0, step" in line and "last good checkpoint" in line
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    weights = {k: t for k, t in ckpt["state_dict"].items() if k.startswith("net.")}
    assert weights and all(torch.isfinite(t).all() for t in weights.values())


@needs_shared
def test_checkpoint_of_another_model_or_not_a_checkpoint(tmp_path):
    cfg = compose_cfg(
        ["trainer.max_epochs=1", "data.train_size=200", "data.val_size=100", "logger=csv"], output_dir=tmp_path / "cnn"
    )
    train(cfg)
    ckpt = tmp_path / "cnn" / "checkpoints" / "last.ckpt"
    other = compose_cfg(
        ["model=keras_fcn", f"ckpt_path={ckpt}", "data.train_size=200", "logger=csv"], output_dir=tmp_path / "fcn"
    )
    with pytest.raises(CheckpointError, match="holds a 'keras_cnn' model that does not fit"):
        train(other)
    fewer = compose_cfg(["data=cifar10", f"ckpt_path={ckpt}"], output_dir=tmp_path / "x")
    with pytest.raises(CheckpointError, match="does not fit"):
        from imgbench.build import build_module
        from imgbench.checkpoint import check_fits
        from imgbench.models import create_model

        check_fits(read_checkpoint(ckpt), build_module(fewer, create_model("keras_cnn", num_classes=100), 100), ckpt)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        evaluate(compose_cfg([f"ckpt_path={junk}"], output_dir=tmp_path / "e", config_name="eval"))


def test_checkpoints_with_code_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "imgbench": {}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_interrupted_writes_leave_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"v": 1})

    class BoomError(Exception):
        pass

    def explode(*a, **k):
        raise BoomError

    monkeypatch.setattr("json.dump", explode)
    with pytest.raises(BoomError):
        write_json(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind

    ckpt = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, ckpt)

    def half_written(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise BoomError

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(BoomError):
        io.save_checkpoint({"step": 2}, ckpt)
    monkeypatch.undo()
    assert torch.load(ckpt, weights_only=True) == {"step": 1}


def test_unwritable_output_folder_fails_fast(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as e:
        precheck("train", [f"paths.log_dir={blocker / 'outputs'}"], validate)
    assert e.value.code == 2
    assert "cannot write run directories" in capsys.readouterr().err


@needs_shared
def test_a_second_run_into_a_used_directory_keeps_the_first(tmp_path):
    args = [
        "trainer.max_epochs=1",
        "data.train_size=200",
        "data.val_size=100",
        "logger=csv",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    assert run_cli("train.py", *args).returncode == 0
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run_cli("train.py", *args, "seed=1").returncode == 0
    (kept,) = (tmp_path / "run" / "previous_attempts").iterdir()
    assert json.loads((kept / "metrics.json").read_text()) == first
    assert (kept / "checkpoints" / "last.ckpt").is_file()
