"""The config groups of ``conf/`` and the options each one offers (its YAML files)."""

from __future__ import annotations

from fnmatch import fnmatch

from .paths import CONF_DIR

# the config groups a command line selects from (each a folder of options in conf/)
CONFIG_GROUPS = (
    "model",
    "module",
    "data",
    "optimizer",
    "scheduler",
    "trainer",
    "callbacks",
    "logger",
    "paths",
    "experiment",
    "ablation",
    "hparams_search",
    "debug",
)


def options(group: str) -> list[str]:
    """The options of ``group``: its config files, nested ones as ``folder/name`` (``ablation=study_c/selu``).

    Args:
        group: a folder of ``conf/``.

    Returns:
        The option names, sorted; files whose name starts with ``_`` are not options.
    """
    folder = CONF_DIR / group
    if not folder.is_dir():
        return []
    names = (p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split("/")))


def glob_options(group: str, spec: str) -> list[str]:
    """The options of ``group`` that a sweeper's ``glob(pattern)`` selects.

    Args:
        group: a folder of ``conf/``.
        spec: the sweep value as written, e.g. ``glob(study_e_sc_*)``.
    """
    pattern = spec.strip()[5:-1].strip()
    return [option for option in options(group) if fnmatch(option, pattern)]


def help_text() -> str:
    """The config groups and their options, one group a line, for ``python train.py --help``.

    Nested options are listed by folder (``ablation: study_a/{baseline, final}, ...``); files whose name starts with
    ``_`` are building blocks for other configs, not options, and are left out.
    """
    lines = []
    for group in sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra"):
        by_folder: dict[str, list[str]] = {}
        for option in options(group):
            folder, _, name = option.rpartition("/")
            by_folder.setdefault(folder, []).append(name)
        parts = [f"{f}/{{{', '.join(names)}}}" if f else ", ".join(names) for f, names in by_folder.items()]
        if parts:
            lines.append(f"{group}: {', '.join(parts)}")
    return "\n".join(lines)
