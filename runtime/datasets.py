"""Data sets by name, and COCO annotation files read and checked once: torch-free, for every package.

The catalog maps maskrcnn-benchmark-style names (``coco_2017_val``, ``shapes_train``) or an explicit
``path/to/annotations.json:path/to/images`` to files under a data root. Training (``trainer.datasets``),
evaluation (``runtime.evaluate``), calibration and the exporter all resolve names here, so a deployment-only
install (no torch) evaluates and calibrates on named data sets too. ``shapes_*`` data sets are generated on
demand by the embedded generator (``trainer.shapes``, numpy/OpenCV only, imported only when the files are
missing), so the embedded default works on a fresh machine.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: name prefix -> "module:function" that writes the data set's root (called with the root folder)
GENERATORS: dict[str, str] = {"shapes_": "trainer.shapes:generate_shapes_dataset"}


class DatasetError(ValueError):
    """A user-facing problem with a data set: a missing or unreadable file, or an unknown name."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    ann_file: Path
    img_dir: Path


class DatasetCatalog:
    """Data set names -> (annotation file, image folder), relative to a data root, as in maskrcnn-benchmark."""

    _entries: dict[str, tuple[str, str]] = {
        "shapes_train": ("shapes/annotations/instances_train.json", "shapes/train"),
        "shapes_val": ("shapes/annotations/instances_val.json", "shapes/val"),
        "coco_2017_train": ("coco/annotations/instances_train2017.json", "coco/train2017"),
        "coco_2017_val": ("coco/annotations/instances_val2017.json", "coco/val2017"),
        "keypoints_coco_2017_train": ("coco/annotations/person_keypoints_train2017.json", "coco/train2017"),
        "keypoints_coco_2017_val": ("coco/annotations/person_keypoints_val2017.json", "coco/val2017"),
    }

    @classmethod
    def register(cls, name: str, ann_file: str | os.PathLike[str], img_dir: str | os.PathLike[str]) -> None:
        """Add or replace a name; relative paths are resolved against the root given to :meth:`get`."""
        cls._entries[name] = (os.fspath(ann_file), os.fspath(img_dir))

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls._entries)

    @classmethod
    def get(cls, name: str, root: str | os.PathLike[str] = "datasets", generate: bool = True) -> DatasetSpec:
        root = Path(root)
        if name in cls._entries:
            ann, img = cls._entries[name]
            spec = DatasetSpec(name, root / ann, root / img)
            if generate and not spec.ann_file.exists():
                _generate(spec)
            return spec
        ann, sep, img = name.partition(".json:")
        if sep and img:
            return DatasetSpec(name, Path(ann + ".json"), Path(img))
        close = difflib.get_close_matches(name, cls._entries, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DatasetError(
            f"unknown data set {name!r}.{hint} Known: {', '.join(cls.names())}; "
            "or give explicit paths as path/to/annotations.json:path/to/images"
        )


def _generate(spec: DatasetSpec) -> None:
    """Write a generated data set whose files are missing (its root is two levels above the annotations)."""
    target = next((t for prefix, t in GENERATORS.items() if spec.name.startswith(prefix)), None)
    if target is None:
        return
    module, _, function = target.partition(":")
    root = spec.ann_file.parent.parent
    log.info("Data set %s not found: generating it in %s", spec.name, root)
    getattr(importlib.import_module(module), function)(root)


def resolve_dataset(
    dataset: str | None,
    annotations: str | os.PathLike[str] | None = None,
    images: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] = "datasets",
) -> DatasetSpec:
    """A catalog name xor explicit annotation file and image folder (what ``--dataset`` or
    ``--annotations/--images`` give), checked to exist."""
    if dataset:
        spec = DatasetCatalog.get(dataset, root=root)
    elif annotations and images:
        spec = DatasetSpec(os.fspath(annotations), Path(annotations), Path(images))
    else:
        raise DatasetError("give --dataset NAME, or both --annotations A.json and --images DIR")
    check_files(spec)
    return spec


def check_files(spec: DatasetSpec) -> None:
    if not spec.ann_file.is_file():
        raise DatasetError(f"annotation file not found: {spec.ann_file}")
    if not spec.img_dir.is_dir():
        raise DatasetError(f"image folder not found: {spec.img_dir}")


def load_coco_annotations(ann_file: str | os.PathLike[str]) -> dict[str, Any]:
    """A COCO instances file as a dict, checked to be one: readable JSON with its three lists."""
    path = Path(ann_file)
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"not a valid COCO annotation file: {path} (unreadable JSON: {e})") from None
    check_coco_annotations(data, str(path))
    return data


def check_coco_annotations(data: Any, source: str = "the annotations") -> None:
    """A COCO instances dict has lists of images and categories; a missing annotations list (COCO's
    image_info test files) is taken as empty."""
    if not isinstance(data, dict):
        raise DatasetError(f"not a valid COCO annotation file: {source} (not a JSON object)")
    data.setdefault("annotations", [])
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(
            f"not a valid COCO annotation file: {source} lacks the {', '.join(missing)} list(s); "
            "is it a COCO instances file?"
        )


def image_paths(spec: DatasetSpec, data: dict[str, Any] | None = None) -> list[Path]:
    """The image files a data set's annotation file lists, in its order."""
    data = load_coco_annotations(spec.ann_file) if data is None else data
    try:
        return [spec.img_dir / str(info["file_name"]) for info in data["images"]]
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{spec.ann_file}: an image entry lacks its file_name ({e})") from None
