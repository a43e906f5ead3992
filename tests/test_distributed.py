"""DDP as users run it, on CPU processes (trainer=ddp_cpu, gloo): one run directory written by rank 0, the test set
evaluated once, the same numbers as one process, sweeps, resume, torchrun and srun, and SLURM submissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from imgbench.data import ImageArrays, InMemoryDataModule, TensorBatches
from imgbench.errors import ConfigError

from .conftest import REPO_ROOT, compose_cfg, needs_shared, run_cli

# a small 2-process run: 256 training images (2 steps of 64 per process), 128 validation images, the whole test split
SMALL = [
    "trainer=ddp_cpu",
    "data.train_size=256",
    "data.val_size=128",
    "data.eval_batch_size=2000",
    "data.augment.shift=0.1",  # each rank augments with its own generator: resume must continue every one
    "logger=csv",
]
# checkpoints and submission.csv, without the slower figures
TINY = [*SMALL, "~callbacks.metric_curves", "~callbacks.confusion_matrix", "~callbacks.prediction_grid"]
TINY.append("~callbacks.model_summary")
TEST_KEYS = ("test/acc", "test/acc_top5", "test/loss")


def _run(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python <args>`` as a user would run it (run_cli for commands that are not a script of the repository)."""
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    return _run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(REPO_ROOT / "train.py"), *args)


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def _tested(record: dict) -> dict[str, float]:
    return {k: record["metrics"][k] for k in TEST_KEYS}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """One 2-process fit + test through train.py; returns the log dir."""
    log_dir = tmp_path_factory.mktemp("ddp")
    result = run_cli("train.py", *TINY, "trainer.max_epochs=1", f"paths.log_dir={log_dir}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return log_dir


# ---------------------------------------------------------------------------- end to end, 2 CPU processes


@pytest.mark.slow
@needs_shared
def test_two_process_run_has_one_directory_written_by_rank_zero(ddp_run):
    (run_dir,) = (ddp_run / "train").iterdir()  # one run directory, not one per rank
    assert list(ddp_run.rglob("metrics.json")) == [run_dir / "metrics.json"]
    record = _metrics(run_dir / "metrics.json")
    assert record["status"] == "finished" and record["processes"] == 2 and record["batch_size"] == 128
    assert record["epochs"] == 1 and record["steps"] == 2  # 256 images / global batch 128
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert not (run_dir / "previous_attempts").exists()  # rank 1 did not archive rank 0's files
    # the test split is evaluated exactly once: 10,000 predictions, each image once, in order
    rows = (run_dir / "submission.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(10_000))
    log = (run_dir / "train.log").read_text()
    assert log.count("mnist: {") == 1  # rank 1 logs warnings only
    assert "global batch: 64 per process" in log


@pytest.mark.slow
@needs_shared
def test_two_process_test_metrics_equal_one_process_eval_exactly(ddp_run, tmp_path):
    (run_dir,) = (ddp_run / "train").iterdir()
    result = run_cli("eval.py", f"ckpt_path={run_dir}", f"paths.log_dir={tmp_path}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (eval_metrics,) = tmp_path.glob("eval/*/metrics.json")
    evaluated = _metrics(eval_metrics)
    assert evaluated["matches_run"] is True
    # accuracies (torchmetrics counts summed over ranks) and the mean loss: equal, not approximately
    assert _tested(evaluated) == _tested(_metrics(run_dir / "metrics.json"))


@pytest.mark.slow
@needs_shared
def test_resumed_two_process_run_equals_the_uninterrupted_one(ddp_run, tmp_path):
    (first,) = (ddp_run / "train").iterdir()
    part = shutil.copytree(first, tmp_path / "part")  # leave the shared run as it is
    full = run_cli("train.py", *TINY, "trainer.max_epochs=2", f"paths.log_dir={tmp_path / 'full'}", timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    resumed = run_cli("train.py", f"resume={part}", "trainer.max_epochs=2", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr + resumed.stdout
    (full_metrics,) = (tmp_path / "full").glob("train/*/metrics.json")
    record = _metrics(part / "metrics.json")
    assert record["epochs"] == 2 and record["processes"] == 2
    assert _tested(record) == _tested(_metrics(full_metrics))
    assert list((part / "checkpoints").glob("*.ckpt"))


@pytest.mark.slow
@needs_shared
def test_multirun_of_ddp_jobs_one_directory_per_job(tmp_path):
    result = run_cli(
        "train.py",
        "-m",
        "optimizer=adam,sgd",
        *SMALL,
        "trainer.max_epochs=1",
        "callbacks=none",
        f"paths.log_dir={tmp_path}",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["multirun"]  # no stray run directories
    (sweep,) = (tmp_path / "train" / "multirun").iterdir()  # the children did not start a sweep of their own
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    records = {p.parent.name: _metrics(p) for p in sweep.glob("*/metrics.json")}
    assert {k: (r["status"], r["processes"]) for k, r in records.items()} == {
        "0": ("finished", 2),
        "1": ("finished", 2),
    }
    assert records["0"]["overrides"][0] == "optimizer=adam" and records["1"]["overrides"][0] == "optimizer=sgd"
    assert (sweep / "report.md").is_file() and result.stdout.count("# Report:") == 1


@pytest.mark.slow
@needs_shared
def test_torchrun_and_srun_processes_share_one_directory_and_match(ddp_run, tmp_path):
    """Processes started by torchrun, or by srun (SLURM's environment, simulated), use the directory rank 0 created,
    and train exactly as the processes Lightning starts: same seed and world size, same numbers."""
    (reference,) = ddp_run.glob("train/*/metrics.json")
    args = [*TINY, "trainer.max_epochs=1", "~callbacks.submission"]
    torchrun = _torchrun(*args, f"paths.log_dir={tmp_path / 'torchrun'}")
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]

    srun_dir = tmp_path / "srun"
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "SLURM_NTASKS": "2",
            "SLURM_NTASKS_PER_NODE": "2",
            "SLURM_NNODES": "1",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": str(rank),
            "SLURM_NODEID": "0",
            "SLURM_NODELIST": "127.0.0.1",
            "SLURM_JOB_ID": str(40000 + os.getpid() % 9000),  # Lightning's port: 15000 + the id's last 4 digits
            "SLURM_JOB_NAME": "imgbench",
        }
        command = [sys.executable, str(REPO_ROOT / "train.py"), *args, f"paths.log_dir={srun_dir}"]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]

    for log_dir in (tmp_path / "torchrun", srun_dir):
        (run_dir,) = (log_dir / "train").iterdir()
        assert [p.parent for p in log_dir.rglob("metrics.json")] == [run_dir]
        assert _tested(_metrics(run_dir / "metrics.json")) == _tested(_metrics(reference))


@needs_shared
def test_torchrun_refuses_a_sweep_with_one_line(tmp_path):
    result = _torchrun("-m", "optimizer=adam,sgd", "trainer=ddp_cpu", f"paths.log_dir={tmp_path}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("imgbench: error:")]
    assert len(errors) == 2 and "not a sweep" in errors[0]  # both ranks stop at once, neither waits
    assert not (tmp_path / "train").exists()


# ---------------------------------------------------------------------------- SLURM submissions


def _fake_slurm_commands(folder: Path) -> Path:
    """``srun`` (submitit checks that it exists) and an ``sbatch`` that keeps the script and answers like SLURM."""
    folder.mkdir()
    for name, body in (
        ("srun", "exit 0"),
        ("sbatch", f'cp "$1" "{folder}/submitted.sh"\necho "Submitted batch job 4242"'),
    ):
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


def test_slurm_ddp_launcher_submits_one_task_per_process(tmp_path, monkeypatch):
    """The launcher config, through hydra-submitit-launcher and submitit, gives an sbatch script that starts
    trainer.num_nodes x trainer.devices tasks with a GPU each: what Lightning's SLURMEnvironment expects."""
    submitit = pytest.importorskip("submitit")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra.utils import instantiate

    from imgbench.compose import check_launcher

    fake = _fake_slurm_commands(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_cfg(
        [
            "hydra/launcher=submitit_slurm_ddp",
            "trainer=ddp",
            "trainer.num_nodes=2",
            "trainer.devices=4",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=240",
            f"paths.log_dir={tmp_path / 'logs'}",
        ]
    )
    check_launcher(cfg)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    monkeypatch.setattr(submitit.slurm.slurm.SlurmJob, "results", lambda self: [None])  # no cluster to wait for
    launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0)

    script = (fake / "submitted.sh").read_text()
    sbatch = {
        line.split("=", 1)[0]: line.split("=", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH")
    }
    assert sbatch["#SBATCH --nodes"] == "2"
    assert sbatch["#SBATCH --ntasks-per-node"] == "4"
    assert sbatch["#SBATCH --gpus-per-node"] == "4"
    assert sbatch["#SBATCH --partition"] == "gpu" and sbatch["#SBATCH --time"] == "240"
    assert sbatch["#SBATCH --array"].startswith("0-1")  # one array element per job of the sweep
    srun = next(line for line in script.splitlines() if line.startswith("srun"))
    assert "submitit.core._submit" in srun  # every task runs the job: SLURM starts the DDP processes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra/launcher=submitit_slurm", "trainer.num_nodes=2", "trainer.devices=4"], "1 node(s) x 1 task(s)"),
        (["hydra/launcher=submitit_slurm_ddp", "trainer.num_nodes=2"], "trainer.devices=auto cannot size"),
    ],
)
def test_slurm_launcher_that_does_not_match_the_trainer_is_refused(tmp_path, overrides, message):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run_cli("train.py", "-m", "trainer=ddp", *overrides, f"paths.log_dir={tmp_path}", timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("imgbench: error:") and message in line
    assert not (tmp_path / "train").exists()  # nothing was submitted


# ---------------------------------------------------------------------------- the pieces


class _Tiny(InMemoryDataModule):
    name = "tiny"

    def load_split(self, split: str) -> ImageArrays:
        n = 40 if split == "train" else 10
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
        return ImageArrays(images, torch.arange(n) % 2, ["a", "b"])


def _attach(dm: InMemoryDataModule, rank: int, world: int) -> None:
    strategy = SimpleNamespace(root_device=torch.device("cpu"))
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, strategy=strategy, training=True, current_epoch=0)


def test_batch_size_is_global_and_must_split():
    dm = _Tiny(batch_size=12, eval_batch_size=7, val_size=0)
    dm.setup()
    assert dm.per_process_batch_size(1) == 12 and dm.per_process_batch_size(3) == 4
    with pytest.raises(ConfigError, match=r"data.batch_size=12 is the global batch .* 5 processes.*=10 or 15"):
        dm.per_process_batch_size(5)
    _attach(dm, rank=1, world=3)
    assert dm.train_dataloader().batch_size == 4 and dm.test_dataloader().batch_size == 3  # ceil(7 / 3)


def test_augmentation_is_seeded_per_rank_once_the_trainer_is_attached():
    """run.py sets the DataModule up before a Trainer exists (rank unknown); Lightning's setup re-seeds it."""
    augment = {"crop_padding": 2}
    draws = {}
    for rank in (0, 1):
        dm = _Tiny(batch_size=8, val_size=0, augment=augment, seed=5)
        dm.setup()  # as run.py does: no trainer yet
        _attach(dm, rank=rank, world=2)
        dm.setup("fit")  # as Lightning does
        assert dm.transform.seed == 5 + 1000 * rank
        x = dm.splits["train"].images[:8]
        draws[rank] = dm.transform(x, train=True)
    assert not torch.equal(draws[0], draws[1])
    again = _Tiny(batch_size=8, val_size=0, augment=augment, seed=5)
    again.setup()
    _attach(again, rank=1, world=2)
    again.setup("fit")
    assert torch.equal(again.transform(again.splits["train"].images[:8], train=True), draws[1])  # same seed, same


def test_global_batch_of_each_step_is_the_one_process_batch():
    n, per_process, world = 50, 4, 3
    images = torch.zeros(n, 1, 1, 1, dtype=torch.uint8)
    one = [y for _, y in TensorBatches(images, torch.arange(n), batch_size=per_process * world, shuffle=True, seed=9)]
    ranks = [
        [y for _, y in TensorBatches(images, torch.arange(n), per_process, shuffle=True, seed=9, rank=r, world_size=3)]
        for r in range(world)
    ]
    assert len({len(r) for r in ranks}) == 1  # ranks stay in step
    for step, batch in enumerate(one[:-1]):  # the full global batches are the same images
        assert sorted(torch.cat([r[step] for r in ranks]).tolist()) == sorted(batch.tolist())
    seen = torch.cat([torch.cat(r) for r in ranks]).tolist()
    assert len(seen) == len(set(seen)) == n - n % world  # disjoint; at most world - 1 left out


def test_rank_zero_follows_the_launcher_environment(monkeypatch):
    from imgbench.ranks import is_rank_zero

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert is_rank_zero()
    cases = [
        ({"LOCAL_RANK": "1"}, False),  # a process Lightning started
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),  # torchrun
        ({"RANK": "3", "LOCAL_RANK": "0"}, False),
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_JOB_NAME": "x"}, False),  # srun
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "x"}, True),
    ]
    for env, expected in cases:
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            assert is_rank_zero() is expected, env


def test_child_command_runs_this_job_alone_in_its_directory(tmp_path):
    from imgbench.distributed import child_command

    compose_cfg(["trainer=ddp_cpu", "optimizer=sgd", "hydra/launcher=submitit_local"], output_dir=tmp_path / "a 'b'")
    command, cwd = child_command(tmp_path / "a 'b'", resume=str(tmp_path / "a 'b'"))
    assert command[:2] == [sys.executable, str(REPO_ROOT / "train.py")]
    assert command[2:4] == ["--config-name", "train"]
    assert "trainer=ddp_cpu" in command and "optimizer=sgd" in command
    assert not any("launcher" in c for c in command)  # a run, not a sweep or a submission
    assert command[-2:] == [f"hydra.run.dir='{tmp_path}/a \\'b\\''", "hydra.mode=RUN"]
    assert f"resume='{tmp_path}/a \\'b\\''" in command
    assert Path(cwd).is_dir()
