"""Sweeps as a user runs them: failures recorded, finished jobs skipped, TensorBoard names and HParams,
Optuna with a SQLite study, the submitit launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import needs_shared, run_cli

TINY = ["trainer.max_epochs=1", "data.train_size=200", "data.val_size=100", "data.eval_batch_size=2000"]


def _sweep_dir(log_dir: Path) -> Path:
    (sweep,) = (log_dir / "train" / "multirun").iterdir()
    return sweep


def _statuses(sweep: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json")}


@needs_shared
def test_failing_job_is_recorded_and_rerun_skips_finished_jobs(tmp_path):
    args = ["-m", "optimizer.lr=0.001,0.002,0.003,-1", *TINY, "callbacks=none", f"paths.log_dir={tmp_path}"]
    first = run_cli("train.py", *args)
    assert first.returncode == 1, first.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    assert _statuses(sweep) == {"0": "finished", "1": "finished", "2": "finished", "3": "failed"}
    assert "1 of 4 jobs did not finish" in first.stderr and "optimizer.lr must be > 0" in first.stderr
    report = (sweep / "report.md").read_text()
    assert "optimizer.lr must be > 0" in report and "4 runs, 3 finished, 1 not." in report

    # TensorBoard: each job's run is named by its swept override and carries HParams
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = sweep / "0" / "tensorboard" / "optimizer.lr=0.001"
    assert tb.is_dir()
    events = EventAccumulator(str(tb))
    events.Reload()
    assert "test/acc" in events.Tags()["scalars"]
    assert any("_hparams_" in tag for tag in events.summary_metadata)

    # re-run into the same directory: only the missing (deleted) and the failed job run again
    (sweep / "1" / "metrics.json").unlink()
    second = run_cli("train.py", *args, f"hydra.sweep.dir={sweep}", "sweep.skip_finished=true")
    assert second.returncode == 1
    trained = second.stdout.count("test metrics:") + second.stderr.count("test metrics:")
    skipped = second.stdout.count("it finished before") + second.stderr.count("it finished before")
    assert (trained, skipped) == (1, 2)
    assert _statuses(sweep) == {"0": "finished", "1": "finished", "2": "finished", "3": "failed"}
    assert list((sweep / "3" / "previous_attempts").iterdir())  # the earlier failed attempt is kept


@needs_shared
def test_optuna_search_two_trials_with_sqlite_study(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = [
        "hparams_search=keras_cnn_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        *TINY,
        "callbacks=none",
        "logger=csv",
        f"paths.log_dir={tmp_path}",
    ]
    result = run_cli("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    assert set(_statuses(sweep).values()) == {"finished"} and len(_statuses(sweep)) == 2
    assert (sweep / "optimization_results.yaml").is_file()
    db = tmp_path / "optuna" / "keras_cnn_mnist.db"
    assert db.is_file()
    # the study persists: a second search continues it (4 trials in the database)
    assert run_cli("train.py", *args).returncode == 0
    import optuna

    study = optuna.load_study(study_name="keras_cnn_mnist", storage=f"sqlite:///{db}")
    assert len(study.trials) == 4


@needs_shared
def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    args = [
        "-m",
        "hydra/launcher=submitit_local",
        "optimizer=adam,sgd",
        *TINY,
        "callbacks=none",
        "logger=csv",
        f"paths.log_dir={tmp_path}",
    ]
    result = run_cli("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    assert _statuses(sweep) == {"0": "finished", "1": "finished"}
    assert "| adam |" in (sweep / "report.md").read_text()
