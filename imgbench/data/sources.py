"""What a source folder for ``imgbench.prepare`` holds: its splits, their images and labels, the class names.

Two layouts are read:

- an image folder: ``train/<class>/<image>`` and ``val/<class>/...`` and/or ``test/<class>/...``;
- ILSVRC (ImageNet) as distributed: ``train/<wnid>/*.JPEG`` and a flat ``val/`` whose labels are in Kaggle's
  ``LOC_val_solution.csv`` or in the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (with the devkit's
  ``meta.mat``, which maps its ids to wnids); class names come from ``LOC_synset_mapping.txt`` (or
  ``meta.mat``) where present.

With a ``val/`` and no labelled ``test/``, ``val/`` is the test split (ILSVRC's test labels are not public);
with both, ``val/`` is the validation split and ``test/`` the test split.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import scipy.io

from ..errors import DataError
from .folders import IMAGE_EXTENSIONS, find_split_root, list_image_folder

LOC_SOLUTION = "LOC_val_solution.csv"
LOC_SYNSETS = "LOC_synset_mapping.txt"
DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "meta.mat"


@dataclass
class Source:
    """A source's splits and classes.

    Attributes:
        root: the folder that holds ``train/``.
        classes: the class folder names (ILSVRC: wnids), sorted; label ``i`` is ``classes[i]``.
        class_names: readable names, one per class (the folder names where nothing better is known).
        splits: output split name (``train``, ``val``, ``test``) -> ``(file, label)`` pairs.
        notes: what was decided on the way (which label file, what was left out), for the log.
    """

    root: Path
    classes: list[str]
    class_names: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    notes: list[str] = field(default_factory=list)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_EXTENSIONS)


def _has_class_folders(folder: Path) -> bool:
    return any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir())


def _find(name: str, root: Path, given: Path | None = None) -> Path | None:
    """``given`` if set, else ``name`` in ``root``, its ``val/`` or devkit folders, or up to three folders above."""
    if given is not None:
        return given
    places = [root, root / "val", *sorted(root.glob("*devkit*/data")), *list(root.parents)[:3]]
    return next((p / name for p in places if (p / name).is_file()), None)


def read_synset_names(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt``: lines ``<wnid> <names>`` -> ``{wnid: names}``.

    Args:
        path: the file.

    Returns:
        wnid -> its readable names.
    """
    out = {}
    for line in path.read_text().splitlines():
        wnid, _, names = line.strip().partition(" ")
        if wnid:
            out[wnid] = names.strip() or wnid
    return out


def read_devkit_meta(path: Path) -> tuple[dict[int, str], dict[str, str]]:
    """The devkit's ``meta.mat``: ILSVRC2012_ID -> wnid, and wnid -> readable names.

    Args:
        path: ``meta.mat``.

    Returns:
        The id -> wnid and wnid -> names mappings of the 1000 classes.

    Raises:
        DataError: the file is not the devkit's ``meta.mat``.
    """
    try:
        synsets = scipy.io.loadmat(str(path), squeeze_me=True)["synsets"]
        ids = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
        names = {str(s["WNID"]): str(s["words"]) for s in synsets if int(s["num_children"]) == 0}
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        raise DataError(f"{path} is not the ILSVRC devkit's meta.mat ({e}); pass the file from the devkit") from None
    return ids, names


def _val_number(path: Path) -> int | None:
    match = re.search(r"_(\d+)\.[^.]+$", path.name)
    return int(match.group(1)) if match else None


def _flat_val_labels(val: Path, classes: list[str], labels_file: Path | None) -> tuple[list[tuple[Path, int]], str]:
    """Label a flat ILSVRC ``val/`` from ``LOC_val_solution.csv`` or the devkit's ground truth."""
    files = sorted(p for p in val.iterdir() if _is_image(p))
    index = {c: i for i, c in enumerate(classes)}
    solution = _find(LOC_SOLUTION, val.parent, labels_file if labels_file and labels_file.suffix == ".csv" else None)
    truth = _find(DEVKIT_TRUTH, val.parent, labels_file if labels_file and labels_file.suffix == ".txt" else None)
    if solution is not None:
        if not solution.is_file():
            raise DataError(f"label file {solution} does not exist; pass the LOC_val_solution.csv of the source")
        with solution.open(newline="") as f:
            rows = {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(f) if r.get("ImageId")}
        wnid_of = {p: rows.get(p.stem) for p in files}
        how = f"val/ labelled by {solution}"
    elif truth is not None:
        if not truth.is_file():
            raise DataError(f"label file {truth} does not exist; pass the devkit's {DEVKIT_TRUTH}")
        meta = _find(DEVKIT_META, truth.parent)
        if meta is None:
            raise DataError(f"{truth} gives class ids that need the devkit's meta.mat beside it; put it there")
        ids, _ = read_devkit_meta(meta)
        truth_ids = [int(x) for x in truth.read_text().split()]
        wnid_of = {}
        for p in files:
            n = _val_number(p)
            wnid_of[p] = ids.get(truth_ids[n - 1]) if n is not None and 0 < n <= len(truth_ids) else None
        how = f"val/ labelled by {truth} and {meta}"
    else:
        raise DataError(
            f"{val} holds images but no class folders, and no {LOC_SOLUTION} or {DEVKIT_TRUTH} was found beside it; "
            "pass the label file with --val-labels"
        )
    samples = []
    for p in files:
        wnid = wnid_of[p]
        if wnid is None:
            raise DataError(f"{p} has no label in the label file; pass the label file of this val/ folder")
        if wnid not in index:
            raise DataError(f"{p} is labelled {wnid}, which is not a class folder of train/; check the source")
        samples.append((p, index[wnid]))
    if not samples:
        raise DataError(f"{val} holds no images; remove it or add the validation images")
    return samples, how


def _labelled_split(folder: Path, classes: list[str], labels_file: Path | None) -> tuple[list[tuple[Path, int]], str]:
    """A split given as class folders (with train's classes) or as a flat ILSVRC folder with a label file."""
    if not _has_class_folders(folder):
        return _flat_val_labels(folder, classes, labels_file)
    found, samples = list_image_folder(folder)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{folder} has class folders that train/ has not ({', '.join(unknown[:5])}); check the source")
    index = {c: i for i, c in enumerate(classes)}
    return [(p, index[found[label]]) for p, label in samples], f"{folder.name}/ as class folders"


def read_source(root: Path, labels_file: Path | None = None) -> Source:
    """List a source folder's splits (see the module docstring for the layouts).

    Args:
        root: the source folder (or a folder with one subfolder that holds ``train/``).
        labels_file: the flat ``val/``'s label file, where it is not found beside the source.

    Returns:
        The source's splits and classes.

    Raises:
        DataError: no ``train/``, an empty class folder, a flat ``val/`` without labels, a label that is not a class.
    """
    if not root.is_dir():
        raise DataError(f"source folder {root} does not exist; pass the folder that holds train/")
    root = find_split_root(root, ("train",))
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder; expected <source>/train/<class>/<image files>")
    classes, train = list_image_folder(root / "train")
    source = Source(root, classes, list(classes), {"train": train})
    val, test = root / "val", root / "test"
    test_labelled = test.is_dir() and _has_class_folders(test)
    if test.is_dir() and not test_labelled:
        source.notes.append(f"{test} has no class folders (no labels): left out")
    if val.is_dir():
        samples, how = _labelled_split(val, classes, labels_file)
        source.splits["val" if test_labelled else "test"] = samples
        source.notes.append(how + (" (the validation split)" if test_labelled else " (the test split)"))
    if test_labelled:
        source.splits["test"], _ = _labelled_split(test, classes, None)
    if "test" not in source.splits:
        raise DataError(f"{root} has no labelled val/ or test/ folder; add one (as class folders)")
    mapping = _find(LOC_SYNSETS, root)
    if mapping is not None:
        names = read_synset_names(mapping)
        source.class_names = [names.get(c, c) for c in classes]
        source.notes.append(f"class names from {mapping}")
    return source
