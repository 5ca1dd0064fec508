"""``OUT/weightmaps.json``: what was generated, from what, with which parameters.

The manifest is plain JSON (never pickle), written atomically. It holds

- ``tool_version`` and the ``settings`` of the last run;
- ``parameter_sets``: every set of map parameters in use, by digest;
- ``dataset``: summed class counts and weights when balance maps were made
  with dataset scope;
- ``masks``: per mask (path relative to MASKS) its size, SHA-256, type,
  shape, dtype and spacing, the class counts it contributes, and per output
  kind the map's path (relative to OUT), parameter digest, file size and the
  map's min, max and mean.

A manifest comes from disk and may have been edited by anyone: every path in
it is checked to stay inside OUT before it is used.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from weightmaps._version import __version__
from weightmaps.writing import write_text_atomic

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "Manifest",
    "ManifestError",
    "file_sha256",
    "map_name",
    "params_digest",
    "safe_relative_path",
]

MANIFEST_NAME = "weightmaps.json"
MANIFEST_FORMAT = "weightmaps-manifest/1"


def map_name(rel: str, kind: str, suffix: str) -> str:
    """Where a mask's map goes, relative to OUT: the mask's stem, the kind, ``suffix``.

    The stem drops the mask's extension and an ``.ome`` before it, so an
    OME-TIFF or OME-Zarr mask's maps are named like any other's.

    Examples
    --------
    >>> map_name("a/b.png", "edge", ".tif")
    'a/b.edge.tif'
    >>> map_name("cells.ome.zarr", "unet", ".zarr")
    'cells.unet.zarr'
    """
    parent, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if stem.lower().endswith(".ome"):
        stem = stem[: -len(".ome")]
    return f"{parent}/{stem}.{kind}{suffix}" if parent else f"{stem}.{kind}{suffix}"


def _manifest_text(data: dict[str, Any]) -> str:
    """The manifest as JSON: indented, with one line per mask.

    ``json.dumps(indent=...)`` runs Python's pure encoder; records dumped
    unindented run the C one: a manifest of 10^5 masks takes 1.9 s to write
    instead of 5.5 s, and a long run rewrites it again and again.
    """
    masks = data.get("masks") or {}
    head = json.dumps({k: v for k, v in data.items() if k != "masks"}, indent=1)
    records = ",\n".join(f"  {json.dumps(rel)}: {json.dumps(rec)}" for rel, rec in masks.items())
    body = f'"masks": {{\n{records}\n }}' if masks else '"masks": {}'
    return f"{head[:-2]},\n {body}\n}}\n" if head != "{}" else f"{{\n {body}\n}}\n"


class ManifestError(ValueError):
    """The manifest file is not one this tool can trust or read."""


def params_digest(params: Mapping[str, Any]) -> str:
    """Short digest of a JSON-ready parameter mapping (key order does not matter).

    Examples
    --------
    >>> params_digest({"a": 1, "b": 2}) == params_digest({"b": 2, "a": 1})
    True
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a regular file's bytes, as hex.

    Opened without blocking and checked on the open descriptor, so a FIFO
    or device swapped in for a mask raises ``OSError`` instead of hanging.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1  # closed with fh
            return hashlib.file_digest(fh, "sha256").hexdigest()
    finally:
        if fd >= 0:
            os.close(fd)


def safe_relative_path(text: object) -> PurePosixPath:
    """Check a path read from a manifest: relative, no ``..``, no drive.

    Raises
    ------
    ManifestError
        For anything that could point outside the folder it is relative to.

    Examples
    --------
    >>> safe_relative_path("a/b.unet.tif")
    PurePosixPath('a/b.unet.tif')
    >>> safe_relative_path("../etc/passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    weightmaps.manifest.ManifestError: unsafe path in manifest: '../etc/passwd'
    """
    if not isinstance(text, str) or not text or "\\" in text or "\x00" in text:
        raise ManifestError(f"unsafe path in manifest: {text!r}")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        raise ManifestError(f"unsafe path in manifest: {text!r}")
    return path


@dataclasses.dataclass
class Manifest:
    """In-memory form of ``weightmaps.json``; see the module docstring."""

    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameter_sets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    masks: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tool_version: str = __version__

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest | None:
        """Read a manifest; None when the file does not exist.

        Raises
        ------
        ManifestError
            Not JSON, not a weightmaps manifest, or holding unsafe paths.
        """
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: not a readable JSON manifest ({exc})") from exc
        try:
            return cls.from_dict(data)
        except (ManifestError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{path}: not a weightmaps manifest ({exc})") from exc

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"format is not {MANIFEST_FORMAT!r}")
        masks = data.get("masks", {})
        if not isinstance(masks, dict):
            raise ManifestError("'masks' is not an object")
        for rel, record in masks.items():
            safe_relative_path(rel)
            if not isinstance(record, dict) or not isinstance(record.get("outputs", {}), dict):
                raise ManifestError(f"record of {rel!r} is not an object")
            for output in record.get("outputs", {}).values():
                safe_relative_path(output["path"])
        return cls(
            settings=dict(data.get("settings") or {}),
            parameter_sets=dict(data.get("parameter_sets") or {}),
            dataset=data.get("dataset"),
            masks=dict(masks),
            tool_version=str(data.get("tool_version", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "tool_version": self.tool_version,
            "settings": self.settings,
            "parameter_sets": self.parameter_sets,
            "dataset": self.dataset,
            "masks": dict(sorted(self.masks.items())),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a reader sees the old manifest or the new one."""
        self.tool_version = __version__
        write_text_atomic(path, _manifest_text(self.to_dict()))

    def prune(self) -> None:
        """Drop parameter sets that no recorded output refers to any more."""
        used = {
            output.get("params")
            for record in self.masks.values()
            for output in record.get("outputs", {}).values()
        }
        self.parameter_sets = {k: v for k, v in self.parameter_sets.items() if k in used}

    def register(self, params: Mapping[str, Any]) -> str:
        """Record a parameter set and return its digest."""
        digest = params_digest(params)
        self.parameter_sets[digest] = dict(params)
        return digest

    def output_path(self, out_dir: str | os.PathLike[str], rel_output: str) -> Path:
        """Absolute path of an output recorded in the manifest, checked to stay in OUT."""
        root = Path(out_dir).resolve()
        path = (root / safe_relative_path(rel_output)).resolve()
        if not path.is_relative_to(root):
            raise ManifestError(f"output path {rel_output!r} leads outside {out_dir}")
        return path
