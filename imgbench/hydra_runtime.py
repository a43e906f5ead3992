"""What Hydra knows about the running job: its config, run mode, overrides, and a name made of its swept values."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


def hydra_cfg() -> DictConfig | None:
    """The ``hydra`` node of the running job, or None outside a Hydra job."""
    try:
        return HydraConfig.get()
    except ValueError:
        return None


def is_multirun() -> bool:
    """Whether the running job is one job of a sweep."""
    cfg = hydra_cfg()
    return cfg is not None and cfg.mode == RunMode.MULTIRUN


def job_overrides() -> list[str]:
    """This job's command-line overrides (sweep values included), as Hydra recorded them."""
    cfg = hydra_cfg()
    return list(cfg.overrides.task) if cfg is not None else []


def swept_keys() -> set[str]:
    """Keys that vary across the current sweep: the sweeper's params plus sweep overrides of the command line."""
    cfg = hydra_cfg()
    if cfg is None or cfg.mode != RunMode.MULTIRUN:  # a single run sweeps nothing (and must not resolve sweep.dir)
        return set()
    keys = {str(k) for k in (OmegaConf.select(cfg, "sweeper.params") or {})}
    multirun_yaml = Path(str(cfg.sweep.dir)) / "multirun.yaml"
    if multirun_yaml.is_file():
        master = OmegaConf.load(multirun_yaml)
        try:
            parsed = OverridesParser.create().parse_overrides(list(master.hydra.overrides.task))
            keys |= {o.get_key_element() for o in parsed if o.is_sweep_override()}
        except HydraException:  # an unparseable file must not stop a job
            pass
    return keys


def job_name(max_len: int = 100) -> str:
    """A readable, path-safe name from the swept overrides of this job ('' outside a multirun)."""
    if not is_multirun():
        return ""
    keys = swept_keys()
    parts = [o for o in job_overrides() if not keys or o.split("=", 1)[0].lstrip("+~") in keys]
    num = OmegaConf.select(hydra_cfg(), "job.num", default=None, throw_on_missing=False)
    name = re.sub(r"[^\w.,=+-]+", "_", ",".join(parts)) or (f"job{num}" if num is not None else "")
    if len(name) > max_len:
        name = name[: max_len - 9] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def run_name() -> str | None:
    """The run's name in trackers: its sweep job's name (:func:`job_name`), else its run directory's name.

    None outside a Hydra job.
    """
    name = job_name()
    cfg = hydra_cfg()
    if name or cfg is None:
        return name or None
    output_dir = OmegaConf.select(cfg, "runtime.output_dir", default=None)
    return Path(str(output_dir)).name if output_dir else None
