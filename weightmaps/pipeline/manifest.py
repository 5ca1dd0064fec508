"""``OUT/weightmaps.json``: what was generated, from what, with which parameters.

The manifest is plain JSON (never pickle), written atomically. It holds

- ``tool_version`` and the ``settings`` of the last run;
- ``parameter_sets``: every set of map parameters in use, by digest;
- ``dataset``: summed class counts and weights when balance maps were made
  with dataset scope;
- ``masks``: per mask (path relative to MASKS) its size, SHA-256, type,
  shape, dtype, ``spacing`` (the pixel size its distances used; null: pixel
  units) and ``file_spacing`` (the one its file records, when it records
  one), the class counts it contributes, and per output
  kind the map's path (relative to OUT), parameter digest, file size, the
  map's min, max and mean, and for a TIFF map the SHA-256 of the bytes
  written (``"sha256"``; absent for zarr maps and in manifests written before
  it was recorded).

A manifest comes from disk and may have been edited by anyone. :meth:`Manifest.load`
reads only a regular file (never through a symlink, never blocking on a FIFO) and
checks the type of every field this package reads, and every path in it is checked
to stay inside OUT before it is used: whatever is wrong with it is one
:class:`ManifestError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from weightmaps._version import __version__
from weightmaps.io.header import RGB_RULES
from weightmaps.io.names import OUTPUT_KINDS
from weightmaps.io.writing import write_text_atomic
from weightmaps.kinds import KINDS
from weightmaps.kinds.spec import Param
from weightmaps.masktype import MASK_TYPES
from weightmaps.settings import PARAMS, settings_from_record

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "Manifest",
    "ManifestError",
    "check_manifest",
    "file_sha256",
    "params_digest",
    "safe_relative_path",
]

MANIFEST_NAME = "weightmaps.json"
MANIFEST_FORMAT = "weightmaps-manifest/1"


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


MAX_MANIFEST_BYTES = 2**31
"""Largest manifest read (about two million masks): the file is parsed whole."""


def _read_regular_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most :data:`MAX_MANIFEST_BYTES`.

    Never through a symlink (``O_NOFOLLOW``) and never waiting for a writer
    (``O_NONBLOCK``: a FIFO would otherwise block ``open`` forever).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > MAX_MANIFEST_BYTES:
            raise OSError(
                errno.EFBIG, f"{info.st_size} bytes, more than the {MAX_MANIFEST_BYTES} read"
            )
        return fh.read(MAX_MANIFEST_BYTES + 1)


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
    weightmaps.pipeline.manifest.ManifestError: unsafe path in manifest: '../etc/passwd'
    """
    if not isinstance(text, str) or not text or "\\" in text or "\x00" in text:
        raise ManifestError(f"unsafe path in manifest: {text!r}")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        raise ManifestError(f"unsafe path in manifest: {text!r}")
    return path


# --- the manifest's structure --------------------------------------------------
#
# Every field any part of the package reads is checked here, once, on load, so
# that code using a loaded manifest can rely on the types below. Unknown fields
# are dropped when the manifest is saved, and may only be shallow, so that
# nothing walks a deep structure later.
#
# A check is a function of the value that raises _Bad; the containers around it
# add where it was on the way out, so a valid manifest (10^5 records) costs no
# string formatting.

_Check = Callable[[Any], None]

_MAX_DEPTH = 4
"""Deepest nesting accepted in a value whose layout is not checked field by field."""

_RESOLVED_MASK_TYPES = tuple(t for t in MASK_TYPES if t != "auto")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_INT_KEY = re.compile(r"-?[0-9]{1,19}")
_SUSPECT_PATH = re.compile(r"\.\.|[\\\x00:]")


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where: list[str] = []  # innermost first

    def located(self) -> ManifestError:
        where = "".join(reversed(self.where)).lstrip(".")
        return ManifestError(f"{where}: {self.reason}" if where else self.reason)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _member(name: str) -> str:
    """``name`` as a step of a field's location: short, on one line."""
    return f".{name}" if name.isidentifier() and len(name) <= 40 else f"[{_shown(name)}]"


def _wrong(expected: str, value: Any) -> _Bad:
    return _Bad(f"expected {expected}, got {_shown(value)}")


def _shallow(value: Any) -> None:
    # Iterative: a value nested as deep as the JSON parser allows must not
    # exhaust the stack here either.
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > _MAX_DEPTH:
            raise _Bad(f"nested deeper than {_MAX_DEPTH} levels")
        stack.extend((child, level + 1) for child in children)


def _string(value: Any) -> None:
    if type(value) is not str:
        raise _wrong("a string", value)


def _count(value: Any) -> None:
    if type(value) is not int or value < 0:  # bool is no count
        raise _wrong("a whole number >= 0", value)


def _integer(value: Any) -> None:
    if type(value) is not int:
        raise _wrong("a whole number", value)


def _number(value: Any) -> None:
    if type(value) is not float and type(value) is not int:
        raise _wrong("a number", value)


def _finite(value: Any) -> None:
    _number(value)
    if not math.isfinite(value):
        raise _wrong("a finite number", value)


def _boolean(value: Any) -> None:
    if type(value) is not bool:
        raise _wrong("true or false", value)


def _sha256(value: Any) -> None:
    if type(value) is not str or not _HEX_SHA256.fullmatch(value):
        raise _wrong("a SHA-256 in hex", value)


def _path(value: Any) -> None:
    if type(value) is str and value and value[0] != "/" and not _SUSPECT_PATH.search(value):
        return  # what safe_relative_path accepts, without building a PurePosixPath
    try:
        safe_relative_path(value)
    except ManifestError:
        raise _Bad(f"unsafe path in manifest: {_shown(value)}") from None


def _int_key(value: Any) -> None:
    if not _INT_KEY.fullmatch(value):
        raise _wrong("a class id", value)


def _choice(*options: str) -> _Check:
    def check(value: Any) -> None:
        if type(value) is not str or value not in options:
            raise _wrong("one of " + ", ".join(options), value)

    return check


def _optional(check: _Check) -> _Check:
    def optional(value: Any) -> None:
        if value is not None:
            check(value)

    return optional


def _either(first: _Check, second: _Check) -> _Check:
    def either(value: Any) -> None:
        try:
            first(value)
        except _Bad:
            second(value)

    return either


def _list_of(check: _Check) -> _Check:
    def list_of(value: Any) -> None:
        if type(value) is not list:
            raise _wrong("a list", value)
        for i, item in enumerate(value):
            try:
                check(item)
            except _Bad as bad:
                bad.where.append(f"[{i}]")
                raise

    return list_of


def _object_of(key: _Check, check: _Check) -> _Check:
    def object_of(value: Any) -> None:
        if type(value) is not dict:
            raise _wrong("an object", value)
        for name, item in value.items():
            try:
                key(name)
                check(item)
            except _Bad as bad:
                bad.where.append(f"[{_shown(name)}]")
                raise

    return object_of


def _fields(known: Mapping[str, _Check], required: tuple[str, ...] = ()) -> _Check:
    """An object with these fields (each optional unless ``required``)."""

    def fields(value: Any) -> None:
        if type(value) is not dict:
            raise _wrong("an object", value)
        for name in required:
            if name not in value:
                raise _Bad(f"no {name!r}")
        for name, item in value.items():
            try:
                known.get(name, _shallow)(item)
            except _Bad as bad:
                bad.where.append(_member(name))
                raise

    return fields


_CLASS_COUNTS = _fields(
    {
        "pixels": _object_of(_int_key, _count),
        "image_pixels": _object_of(_int_key, _count),
        "images": _count,
    },
    required=("pixels", "image_pixels"),
)

_NUMBERS = _list_of(_number)


def _setting(param: Param) -> _Check:
    """The JSON type of a settings field, from its declaration; its value is
    checked by building the settings (:func:`_check_settings_values`)."""
    if param.flag:
        return _boolean
    if param.choices is not None:
        return _choice(*param.choices)
    if param.cli_type is not None:
        return _number if param.default is not None else _optional(_number)
    return _optional(_either(_string, _NUMBERS))


# Settings of the last run: the MapSettings fields, the reading options, the kinds.
_SETTINGS = _fields(
    {
        "kinds": _list_of(_choice(*KINDS)),
        **{name: _setting(param) for name, param in PARAMS.items()},
        "channel": _optional(_integer),
        "rgb_rule": _optional(_choice(*RGB_RULES)),
        "chunked_above": _count,
        "chunks": _optional(_count),
        "max_volume_voxels": _count,
        "max_chunk_bytes": _count,
        "missing_chunks": _choice("fill", "error"),
    }
)


_DATASET = _fields(
    {
        "counts": _CLASS_COUNTS,
        "weights": _object_of(_int_key, _finite),
        "sources": _string,
    }
)

_OUTPUT = _fields(
    {
        "path": _path,
        "bytes": _count,
        "sha256": _sha256,
        "shape": _list_of(_count),
        "dtype": _string,
        "min": _number,
        "max": _number,
        "mean": _number,
        "params": _string,
    },
    required=("path",),
)

_COUNT_CACHE_FIELDS = _fields(
    {
        "sha256": _string,
        "params": _string,
        "mask_type": _choice(*_RESOLVED_MASK_TYPES),
        "counts": _CLASS_COUNTS,
    },
    required=("sha256", "params", "mask_type", "counts"),
)


def _count_cache(value: Any) -> None:
    if value != {}:  # an empty cache is no cache
        _COUNT_CACHE_FIELDS(value)


_RECORD = _fields(
    {
        "size": _count,
        "sha256": _string,  # a content SHA-256, or a volume's "stat:..." fingerprint
        "mask_type": _choice(*_RESOLVED_MASK_TYPES),
        "shape": _list_of(_count),
        "dtype": _string,
        "spacing": _optional(_NUMBERS),
        "file_spacing": _optional(_NUMBERS),
        "outputs": _object_of(_choice(*OUTPUT_KINDS), _OUTPUT),
        "count_cache": _count_cache,
        "threshold": _number,
    }
)

_MANIFEST = _fields(
    {
        "format": _string,
        "tool_version": _string,
        "settings": _optional(_SETTINGS),
        "parameter_sets": _optional(_object_of(_string, _fields({}))),
        "dataset": _optional(_DATASET),
        "masks": _object_of(_path, _RECORD),
    }
)


def _check_settings_values(settings: Mapping[str, Any]) -> None:
    """The recorded map parameters make valid :class:`~weightmaps.settings.MapSettings`."""
    try:
        settings_from_record(settings)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"settings: {exc}") from None


def check_manifest(data: Any) -> None:
    """Check a parsed manifest's structure: the type of every field that is read.

    Raises
    ------
    ManifestError
        Naming the first field found wrong, e.g. ``masks['a.png'].outputs['unet'].bytes:
        expected a whole number >= 0, got 'x'``.

    Examples
    --------
    >>> check_manifest({"format": MANIFEST_FORMAT, "masks": {}})
    >>> check_manifest({"format": MANIFEST_FORMAT, "settings": [1]})
    Traceback (most recent call last):
    ...
    weightmaps.pipeline.manifest.ManifestError: settings: expected an object, got a list
    """
    if not isinstance(data, dict):
        raise ManifestError(f"expected an object, got {_shown(data)}")
    if data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"format is not {MANIFEST_FORMAT!r}")
    try:
        _MANIFEST(data)
    except _Bad as bad:
        raise bad.located() from None
    if data.get("settings"):
        _check_settings_values(data["settings"])


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
            ``"<path>: bad manifest: <reason>"``: not a regular file, not
            JSON, not a weightmaps manifest, a field of the wrong type (see
            :func:`check_manifest`), or an unsafe path.
        """
        try:
            text = _read_regular_file(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or exc
            raise ManifestError(f"{path}: bad manifest: cannot read it ({reason})") from None
        try:
            data = json.loads(text)
        except RecursionError:
            raise ManifestError(f"{path}: bad manifest: JSON nested too deeply") from None
        except ValueError as exc:
            raise ManifestError(f"{path}: bad manifest: not JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except ManifestError as exc:
            raise ManifestError(f"{path}: bad manifest: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """A manifest from its parsed JSON, checked by :func:`check_manifest`."""
        check_manifest(data)
        return cls(
            settings=dict(data.get("settings") or {}),
            parameter_sets=dict(data.get("parameter_sets") or {}),
            dataset=data.get("dataset"),
            masks=dict(data.get("masks", {})),
            tool_version=data.get("tool_version", ""),
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
