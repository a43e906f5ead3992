"""What every benchmark section shares: timing side by side, the machine, composing imgbench configs."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imgbench.hardware import cpu_has_native_bf16, cpu_name

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "datasets"


def data_dir() -> Path:
    """Where the datasets are.

    Returns:
        Path: ``$IMGBENCH_DATA_DIR`` if set, else the shared datasets folder next to the repository if there is
        one, else the repository's data/.
    """
    return Path(os.environ.get("IMGBENCH_DATA_DIR") or (SHARED_DATA if SHARED_DATA.is_dir() else REPO / "data"))


def load() -> float:
    """The 1-minute load average (other jobs on the machine).

    Returns:
        float: the load average, rounded to two decimals (NaN where the system does not report it).
    """
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def machine() -> dict[str, Any]:
    """What the figures were measured on.

    Returns:
        dict[str, Any]: the CPU's name, cores, torch's CPU capability, native bf16, the GPU (None if none), the
        torch and Python versions and torch's threads.
    """
    cpu = cpu_name()

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


@dataclass
class Figure:
    """One side-by-side comparison: ``a`` (imgbench / the fast way) against ``b`` (the baseline).

    Args:
        section: the section that measured it.
        name: what is compared.
        a_label: what side A is.
        b_label: what side B is.
        unit: what a sample is: "s" (lower is better), "img/s" (higher is better), or another quantity such as
            "MB" (the ratio is then simply a / b).
        a: side A's samples, in measurement order.
        b: side B's samples, in measurement order.
        target: the ratio it should reach, in words.
        note: how it was measured.
        loads: the load average before each sample.
        extra: what the section adds (whether the target is met, per-size samples, ...).
    """

    section: str
    name: str
    a_label: str
    b_label: str
    unit: str  # what a sample is: "s" (lower is better), "img/s" (higher is better), "MB", ... (ratio a / b)
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    target: str = ""
    note: str = ""
    loads: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def a_median(self) -> float:
        """The median of side A's samples."""
        return statistics.median(self.a)

    @property
    def b_median(self) -> float:
        """The median of side B's samples."""
        return statistics.median(self.b)

    @property
    def ratio(self) -> float:
        """How many times better ``a`` is than ``b`` (time: b / a; throughput: a / b; other units, e.g. MB: a / b)."""
        if self.unit == "s":
            return self.b_median / self.a_median
        return self.a_median / self.b_median

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure:
        """The inverse of :meth:`as_dict` (a figure read back from results.json).

        Args:
            d: one entry of results.json's ``figures``.

        Returns:
            Figure: the figure, its extra keys back in ``extra``.
        """
        fields = ("section", "name", "a_label", "b_label", "unit", "a", "b", "target", "note")
        derived = ("a_median", "b_median", "ratio", "load")
        extra = {k: v for k, v in d.items() if k not in fields and k not in derived}
        return cls(**{k: d[k] for k in fields}, loads=d.get("load", []), extra=extra)

    def as_dict(self) -> dict[str, Any]:
        """The figure as results.json holds it.

        Returns:
            dict[str, Any]: the fields, the medians and the ratio, the loads as ``load``, and the extras.
        """
        return {
            "section": self.section,
            "name": self.name,
            "a_label": self.a_label,
            "b_label": self.b_label,
            "unit": self.unit,
            "a": self.a,
            "b": self.b,
            "a_median": self.a_median,
            "b_median": self.b_median,
            "ratio": self.ratio,
            "target": self.target,
            "note": self.note,
            "load": self.loads,
            **self.extra,
        }


def side_by_side(figure: Figure, run_a: Callable[[], float], run_b: Callable[[], float], repeats: int) -> Figure:
    """Alternate ``run_b`` and ``run_a`` ``repeats`` times: B first, then A first, and so on.

    Args:
        figure: where the samples and the load before each go.
        run_a: measures side A once and returns its sample.
        run_b: measures side B once and returns its sample.
        repeats: how many samples of each side.

    Returns:
        Figure: ``figure``, its samples appended.
    """
    for i in range(repeats):
        order = (("b", run_b), ("a", run_a)) if i % 2 == 0 else (("a", run_a), ("b", run_b))
        for side, fn in order:
            figure.loads.append(load())
            getattr(figure, side).append(fn())
        logging.getLogger("benchmarks").info(
            "%s / %s: %s=%s %s=%s",
            figure.section,
            figure.name,
            figure.a_label,
            figure.a[-1],
            figure.b_label,
            figure.b[-1],
        )
    return figure


def compose(overrides: list[str], output_dir: Path | None = None):
    """A train.yaml config composed as train.py would (imgbench's own configs).

    Args:
        overrides: Hydra overrides (the data folder is set first, from :func:`data_dir`).
        output_dir: the run directory (default: a new temporary folder).

    Returns:
        The composed config (DictConfig), with its hydra section, also set as the current HydraConfig.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from imgbench.cli import setup_environment
    from imgbench.paths import CONF_DIR

    setup_environment()
    out = output_dir or Path(tempfile.mkdtemp(prefix="imgbench-bench-"))
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="bench"):
        cfg = hydra_compose("train", overrides=[f"paths.data_dir={data_dir()}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
    HydraConfig.instance().set_config(cfg)
    return cfg


def quiet() -> None:
    """Keep Lightning's and imgbench's per-run chatter out of the benchmark's output."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "imgbench", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
