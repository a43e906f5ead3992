"""``resume=<run dir>|latest``: the command line that continues a run in its own directory."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .errors import ConfigError
from .paths import REPO_ROOT


def saved_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides a run was started with (``.hydra/overrides.yaml``), without resume and hydra."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not a run directory (no .hydra/overrides.yaml); pass resume=<run dir> or resume=latest"
        )
    return [o for o in (yaml.safe_load(path.read_text()) or []) if not o.startswith(("resume=", "hydra."))]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def latest_run(overrides: list[str], log_dir: Path) -> Path:
    """The newest run directory under ``log_dir`` whose command-line overrides equal ``overrides``."""
    want = sorted(overrides)
    candidates = [
        p.parent.parent
        for p in log_dir.glob("*/*/.hydra/overrides.yaml")
        if "multirun" not in p.parts and sorted(saved_overrides(p.parent.parent)) == want
    ]
    if not candidates:
        shown = " ".join(overrides) or "(no overrides)"
        raise ConfigError(
            f"resume=latest: no earlier run of this config ({shown}) under {log_dir}; start one without resume"
        )
    return max(candidates, key=lambda p: (p / ".hydra" / "overrides.yaml").stat().st_mtime)


def resolve_resume(argv: list[str]) -> list[str]:
    """Turn ``resume=<run dir>|latest`` into the run's own overrides, its directory and ``resume=<dir>``.

    Extra overrides given with ``resume`` replace the saved ones (e.g. ``trainer.max_epochs=20`` to train on).

    Args:
        argv: the command line after the script name.

    Returns:
        The command line that continues the run (``argv`` itself without ``resume=``).
    """
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    if "-m" in argv or "--multirun" in argv:
        raise ConfigError(
            "resume= continues one run; to continue a sweep add hydra.sweep.dir=<dir> sweep.skip_finished=true"
        )
    value = resume[-1].split("=", 1)[1]
    extras = [a for a in argv if not a.startswith("resume=") and not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    if value == "latest":
        log_dir = next(
            (Path(a.split("=", 1)[1]) for a in extras if a.startswith("paths.log_dir=")), REPO_ROOT / "outputs"
        )
        run_dir = latest_run([a for a in extras if not a.startswith("hydra.")], log_dir)
    else:
        run_dir = Path(value).expanduser()
    run_dir = run_dir.resolve()
    saved = {_key(o): o for o in saved_overrides(run_dir)}
    saved.update({_key(o): o for o in extras if not o.startswith("hydra.run.dir=")})
    print(f"imgbench: resuming {run_dir}", file=sys.stderr)
    return [*flags, *saved.values(), f"hydra.run.dir={run_dir}", f"resume={run_dir}"]
