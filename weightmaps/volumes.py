"""Volumes on disk in ``weightmaps generate``: zarr, OME-Zarr and big TIFF masks.

A mask that is a zarr array (or an OME-Zarr image: its full-resolution
level), or a TIFF with more pixels than ``chunked_above``, is computed the
chunked way (:mod:`weightmaps.chunked`): read chunk by chunk, each map
written as a zarr array ``OUT/<stem>.<kind>.zarr`` (float32, the zarr
default codec, the processing chunks), never holding the volume in memory.

Each map is written into a hidden ``OUT/<dir>/.<stem>.<kind>.zarr.wmtmp``
folder and renamed into place once complete; a leftover temporary folder of
an interrupted run is removed before writing again. The array's attributes
hold ``weightmaps_kind``, the kind's parameters, the source fingerprint and
the tool version.

Volumes are identified by a fingerprint rather than by the SHA-256 of their
bytes: for a zarr folder a digest of the sorted (relative path, size,
mtime_ns) of its files, for a big TIFF of its (size, mtime_ns). Rewriting one
chunk changes it; copying a volume with new modification times does too.

Mask types: ``instance``, ``binary`` and ``semantic``, as in memory.
``mask_type="auto"`` looks at the distinct values of a strided sample of
chunks (the ignore value not counted): a float volume, or at most one nonzero
value, is ``binary``; more than 16 nonzero values are ``instance``; between
2 and 16 the volume is refused as ambiguous (instance ids or class ids: the
in-memory rule tells them apart by connectivity, which a sample cannot), so
name its type. ``edge_size`` is refused: a volume is not resized.

Limits (:class:`VolumeLimits`): metadata comes from strangers, so a
volume's shape, data type and stored chunks are read from its metadata
(:func:`inspect_volume`, no zarr needed) and checked (:func:`check_volume`)
before anything is read or scheduled: when the run is planned and again in
the job, and once more on what zarr itself read. A refusal is one line
(:class:`VolumeRefused`). Stored data is read through a guard that makes any
decoding failure one line (:class:`VolumeReadError`). Zarr chunks missing
from the store are counted from its listing, never by reading.

Discovery, fingerprints and limits need no dask; computing needs the
``[dask]`` extra.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps._version import __version__
from weightmaps.balance import ClassCounts
from weightmaps.manifest import map_name
from weightmaps.maps import KINDS, MapSettings
from weightmaps.masktype import _FEW_VALUES, MaskTypeError
from weightmaps.writing import TEMP_SUFFIX

__all__ = [
    "DEFAULT_CHUNKED_ABOVE",
    "DEFAULT_CHUNKS",
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_MAX_VOLUME_VOXELS",
    "MAX_VOLUME_CHUNKS",
    "MISSING_CHUNKS",
    "VolumeInfo",
    "VolumeLimits",
    "VolumeReadError",
    "VolumeRefused",
    "check_volume",
    "compute_volume_job",
    "count_volume_job",
    "fingerprint",
    "inspect_volume",
    "is_big_tiff",
    "processing_chunks",
    "tree_size",
    "volume_output_name",
    "zarr_kind",
]

DEFAULT_CHUNKED_ABOVE: int = 2**27
"""TIFF masks with more pixels than this go the chunked way."""
DEFAULT_CHUNKS: int = 256
"""Edge length of the processing chunks of a TIFF (a zarr keeps its own)."""
DEFAULT_MAX_VOLUME_VOXELS: int = 2**31
"""Largest voxel count of a chunked volume unless raised (``--max-volume-voxels``)."""
DEFAULT_MAX_CHUNK_BYTES: int = 2**28
"""Largest decoded stored chunk, and processing chunk, unless raised (``--max-chunk-bytes``)."""
MAX_VOLUME_CHUNKS: int = 2**16
"""Most processing chunks one volume is split into: each is a few tasks of one
graph, and a graph of millions of tasks does not fit in memory (``--chunks``
makes them bigger, hence fewer)."""
MISSING_CHUNKS: tuple[str, ...] = ("fill", "error")
"""What ``--missing-chunks`` accepts: zarr chunks absent from the store read as
the fill value, or the volume is refused."""

_FG_BG_IGNORE = 2  # as weightmaps.maps: class of ignored pixels
_SAMPLE_BLOCKS = 16  # chunks read to guess the mask type
_SAMPLE_PIXELS = 2**18  # pixels kept per sampled chunk
_MAX_METADATA_BYTES = 2**24  # a zarr.json or .zarray is a few kB
_SHARD_INDEX_ENTRY = 16  # bytes per chunk in a zarr shard's index (offset, length)
_MAP_ITEM_BYTES = 4  # float32 maps


# --- discovery and fingerprints (no dask) -----------------------------------


def _multiscales(attrs: dict[str, Any]) -> list | None:
    ms = attrs.get("multiscales")
    if ms is None and isinstance(attrs.get("ome"), dict):  # OME-Zarr 0.5
        ms = attrs["ome"].get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def zarr_kind(path: str | os.PathLike[str]) -> str | None:
    """``"array"``, ``"ome"`` (an OME-Zarr image), ``"group"`` or None (not zarr).

    Read from the metadata files (zarr v2 and v3), without importing zarr.
    """
    path = Path(path)
    meta = _read_json(path / "zarr.json")
    if meta is not None:
        node = meta.get("node_type")
        if node == "array":
            return "array"
        if node == "group":
            return "ome" if _multiscales(meta.get("attributes") or {}) else "group"
        return None
    if (path / ".zarray").is_file():
        return "array"
    if (path / ".zgroup").is_file():
        return "ome" if _multiscales(_read_json(path / ".zattrs") or {}) else "group"
    return None


def _files(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file of a zarr folder.

    Only stats the files (never opens one); :func:`inspect_volume` refuses a
    volume holding a link or anything but regular files before it is read.
    """
    entries = []
    for folder, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in files:
            path = os.path.join(folder, name)
            info = os.stat(path)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            entries.append((rel, info.st_size, info.st_mtime_ns))
    entries.sort()
    return entries


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if not path.is_dir():
        return path.stat().st_size
    return sum(size for _, size, _ in _files(path))


def fingerprint(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size in bytes, fingerprint) of a zarr folder or a big file, without reading it.

    A folder: digest of the sorted (relative path, size, mtime_ns) of its
    files; a file: of its (size, mtime_ns). Prefixed ``stat:`` so it is never
    mistaken for a content SHA-256.
    """
    path = Path(path)
    if path.is_dir():
        entries = _files(path)
        size = sum(e[1] for e in entries)
    else:
        info = path.stat()
        entries = [("", info.st_size, info.st_mtime_ns)]
        size = info.st_size
    text = json.dumps(entries, separators=(",", ":"))
    return size, "stat:" + hashlib.sha256(text.encode()).hexdigest()


def is_big_tiff(path: str | os.PathLike[str], chunked_above: int) -> bool:
    """Whether a TIFF's first series has more pixels than ``chunked_above`` (header only).

    An unreadable file is not big: the in-memory reader reports its problem.
    """
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except Exception:  # noqa: BLE001 - any unreadable TIFF: let read_mask say why
        return False
    return math.prod(shape) > chunked_above


def volume_output_name(rel: str, kind: str) -> str:
    """Output folder (relative to OUT) of a volume's map: ``a/b.zarr`` -> ``a/b.unet.zarr``.

    Examples
    --------
    >>> volume_output_name("a/b.zarr", "edge")
    'a/b.edge.zarr'
    >>> volume_output_name("big.tif", "unet")
    'big.unet.zarr'
    """
    return map_name(rel, kind, ".zarr")


# --- limits: checked from metadata before anything is read (no dask, no zarr) ---


class VolumeRefused(ValueError):
    """A volume refused from its metadata or its listing; the message is one line."""


@dataclasses.dataclass(frozen=True)
class VolumeLimits:
    """What a chunked volume may be, checked from its metadata before it is read.

    Parameters
    ----------
    max_voxels : int
        Largest voxel count of a volume computed chunk by chunk
        (``--max-volume-voxels``).
    max_chunk_bytes : int
        Largest decoded size of one stored chunk (zarr chunk, TIFF tile or
        strip), and of one processing chunk counted as float32 maps (or the
        mask's item size if larger) (``--max-chunk-bytes``).
    missing_chunks : {"fill", "error"}
        Zarr chunks absent from the store read as the fill value (``"fill"``,
        zarr's own rule, noted in the log) or refuse the volume (``"error"``).
    """

    max_voxels: int = DEFAULT_MAX_VOLUME_VOXELS
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
    missing_chunks: str = "fill"

    def __post_init__(self) -> None:
        for name, option in (
            ("max_voxels", "max-volume-voxels"),
            ("max_chunk_bytes", "max-chunk-bytes"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        if self.missing_chunks not in MISSING_CHUNKS:
            raise ValueError(
                f"missing-chunks must be one of {', '.join(MISSING_CHUNKS)}, "
                f"got {self.missing_chunks!r}"
            )


@dataclasses.dataclass(frozen=True)
class VolumeInfo:
    """What a volume's metadata and listing say, read without reading its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    stored_chunks: tuple[int, ...]  # voxels decoded at once: a zarr (inner) chunk, a tile
    stored_name: str  # "zarr chunks", "TIFF tiles", "TIFF strips"
    shard_entries: int = 0  # inner chunks per shard of a sharded zarr: its index's entries
    chunks_expected: int | None = None  # stored objects (chunks or shards) of the grid
    chunks_present: int | None = None  # of those, found in the store listing
    fill_value: Any = 0


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _load_json(path: Path) -> Any:
    """A metadata file's JSON, or None when absent; VolumeRefused when unusable.

    Only a regular file, not a symbolic link, of at most 16 MiB is read: a
    FIFO would block, a link may lead out of MASKS, and a metadata file has
    no reason to be large.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VolumeRefused(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise VolumeRefused(f"{path.name} is not a regular file; refused")
    if info.st_size > _MAX_METADATA_BYTES:
        raise VolumeRefused(
            f"{path.name} has {info.st_size} bytes, more than {_MAX_METADATA_BYTES} "
            "for metadata; refused"
        )
    try:
        return json.loads(path.read_bytes())
    except RecursionError:
        raise VolumeRefused(f"{path.name} is nested too deeply; refused") from None
    except OSError as exc:
        raise VolumeRefused(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # not JSON, not UTF-8, an integer of too many digits
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VolumeRefused(f"{path.name} is not valid JSON: {reason}") from None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = _load_json(path)
    except VolumeRefused:
        return None
    return data if isinstance(data, dict) else None


def _ints(value: Any, what: str, minimum: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
    ):
        raise VolumeRefused(f"bad {what} in the zarr metadata: {str(value)[:80]}")
    return tuple(value)


def _label_dtype(value: Any) -> np.dtype:
    """A zarr data type that can hold labels (bool, integer, float), else refused."""
    try:
        dtype = np.dtype(value) if isinstance(value, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biuf" or dtype.names is not None:
        raise VolumeRefused(f"data type {str(value)[:80]} is not a label mask type")
    return dtype


def _zarr_array_info(folder: Path) -> tuple[VolumeInfo, Callable[[str], bool]]:
    """A zarr array's metadata (v3 ``zarr.json`` or v2 ``.zarray``) and a test of
    whether a file name (relative to ``folder``) is one of its chunk keys."""
    meta = _load_json(folder / "zarr.json")
    if meta is not None:
        if not isinstance(meta, dict) or meta.get("node_type") != "array":
            raise VolumeRefused(f"{folder.name}/zarr.json does not describe a zarr array")
        shape = _ints(meta.get("shape"), "shape", 0)
        dtype = _label_dtype(meta.get("data_type"))
        grid = meta.get("chunk_grid")
        if not isinstance(grid, dict) or grid.get("name") != "regular":
            raise VolumeRefused("only regular zarr chunk grids are read")
        stored = _ints((grid.get("configuration") or {}).get("chunk_shape"), "chunk shape", 1)
        inner, shard_entries = stored, 0
        codecs = meta.get("codecs")
        for _ in range(4):  # sharding may nest; the innermost chunk is what is decoded
            sharding = [
                c
                for c in codecs or []
                if isinstance(c, dict) and c.get("name") == "sharding_indexed"
            ]
            if not sharding:
                break
            config = sharding[0].get("configuration") or {}
            inner_shape = _ints(config.get("chunk_shape"), "shard chunk shape", 1)
            if len(inner_shape) != len(inner):
                raise VolumeRefused("bad shard chunk shape in the zarr metadata")
            shard_entries = max(
                shard_entries,
                math.prod(-(-s // c) for s, c in zip(inner, inner_shape, strict=True)),
            )
            inner, codecs = inner_shape, config.get("codecs")
        encoding = meta.get("chunk_key_encoding") or {"name": "default"}
        name = encoding.get("name") if isinstance(encoding, dict) else None
        config = (encoding.get("configuration") or {}) if isinstance(encoding, dict) else {}
        if name == "default":
            separator, prefix = config.get("separator", "/"), ["c"]
        elif name == "v2":
            separator, prefix = config.get("separator", "."), []
        else:
            raise VolumeRefused(f"unknown zarr chunk key encoding {str(name)[:40]}")
        fill = meta.get("fill_value")
    else:
        meta = _load_json(folder / ".zarray")
        if not isinstance(meta, dict):
            raise VolumeRefused(f"{folder.name} holds no zarr array metadata")
        shape = _ints(meta.get("shape"), "shape", 0)
        dtype = _label_dtype(meta.get("dtype"))
        stored = inner = _ints(meta.get("chunks"), "chunks", 1)
        shard_entries = 0
        separator, prefix = meta.get("dimension_separator") or ".", []
        fill = meta.get("fill_value")
    if len(stored) != len(shape) or len(inner) != len(shape):
        raise VolumeRefused("zarr metadata: chunk shape and shape differ in length")
    if separator not in ("/", "."):
        raise VolumeRefused(f"unknown zarr chunk key separator {str(separator)[:10]}")
    grid_shape = tuple(-(-s // c) for s, c in zip(shape, stored, strict=True))

    def is_chunk_key(rel: str) -> bool:
        parts = rel.split(separator)
        if parts[: len(prefix)] != prefix:
            return False
        indices = parts[len(prefix) :]
        return len(indices) == len(grid_shape) and all(
            p.isascii() and p.isdigit() and str(int(p)) == p and int(p) < n
            for p, n in zip(indices, grid_shape, strict=True)
        )

    info = VolumeInfo(
        shape=shape,
        dtype=dtype,
        stored_chunks=inner,
        stored_name="zarr chunks",
        shard_entries=shard_entries,
        chunks_expected=math.prod(grid_shape),
        fill_value=0 if fill is None else fill,
    )
    return info, is_chunk_key


def _level_zero(root: Path) -> Path:
    """The folder of an OME-Zarr image's full-resolution array (kept inside ``root``)."""
    meta = _load_json(root / "zarr.json")
    attrs = (meta.get("attributes") or {}) if isinstance(meta, dict) else None
    if attrs is None:
        attrs = _load_json(root / ".zattrs") or {}
    ms = _multiscales(attrs) if isinstance(attrs, dict) else None
    try:
        path = ms[0]["datasets"][0]["path"]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        raise VolumeRefused("OME-Zarr metadata names no full-resolution dataset") from None
    parts = path.split("/") if isinstance(path, str) else []
    if not parts or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise VolumeRefused(f"OME-Zarr dataset path {str(path)[:80]!r} is not inside the image")
    return root.joinpath(*parts)


def _listing(root: Path) -> list[str]:
    """Every file under ``root`` (relative, ``/``-separated); VolumeRefused for a
    symbolic link or anything but a regular file or folder."""
    files: list[str] = []
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise VolumeRefused(f"cannot list {prefix or '.'}: {exc.strerror or exc}") from exc
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_symlink():
                raise VolumeRefused(f"holds a symbolic link ({rel}); refused")
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                files.append(rel)
            else:
                raise VolumeRefused(f"holds {rel}, not a regular file; refused")
    return files


def _tiff_info(path: Path) -> VolumeInfo:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.keyframe
            shape = tuple(int(n) for n in series.shape)
            dtype = np.dtype(series.dtype)
            chunks = tuple(int(n) for n in page.chunks)
            tiled = bool(page.is_tiled)
    except Exception as exc:  # noqa: BLE001 - any unreadable header is this mask's failure
        text = str(exc).strip().splitlines()
        raise VolumeRefused(
            f"cannot read the TIFF header: {text[0] if text else type(exc).__name__}"
        ) from None
    return VolumeInfo(shape, dtype, chunks, "TIFF tiles" if tiled else "TIFF strips")


def inspect_volume(path: str | os.PathLike[str]) -> VolumeInfo:
    """A volume's shape, type and stored chunks from its metadata, and (zarr) how
    many of its chunks the store holds, from the listing; no data is read.

    Needs neither zarr nor dask. Raises :class:`VolumeRefused` for metadata
    that cannot be used (not JSON, nested too deeply, not a label type,
    another chunk grid), for a symbolic link or a file that is not regular
    inside a zarr folder.
    """
    path = Path(path)
    if not path.is_dir():
        return _tiff_info(path)
    files = _listing(path)
    array = path if zarr_kind(path) == "array" else _level_zero(path)
    info, is_chunk_key = _zarr_array_info(array)
    prefix = "" if array == path else array.relative_to(path).as_posix() + "/"
    present = sum(1 for rel in files if rel.startswith(prefix) and is_chunk_key(rel[len(prefix) :]))
    return dataclasses.replace(info, chunks_present=present)


def processing_chunks(info: VolumeInfo, chunks: int | None) -> tuple[int, ...]:
    """The chunks a volume is computed in (and its maps written in), clipped to its shape.

    ``chunks`` (``--chunks``) on every axis; else a zarr's own chunks, a TIFF's
    :data:`DEFAULT_CHUNKS`.
    """
    if chunks is not None:
        edges = (chunks,) * len(info.shape)
    elif info.stored_name == "zarr chunks":
        edges = info.stored_chunks
    else:
        edges = (DEFAULT_CHUNKS,) * len(info.shape)
    return tuple(max(1, min(c, s)) for c, s in zip(edges, info.shape, strict=True))


def check_volume(info: VolumeInfo, limits: VolumeLimits, chunks: int | None = None) -> str | None:
    """Refuse a volume over a limit (:class:`VolumeRefused`, one line that names
    the figure, the limit and the option that raises it); else a note on
    missing chunks, or None.
    """
    voxels = math.prod(info.shape)
    if voxels == 0:
        raise VolumeRefused(f"empty volume (shape {_shape_text(info.shape)})")
    if voxels > limits.max_voxels:
        raise VolumeRefused(
            f"volume of {_shape_text(info.shape)} has {voxels} voxels, more than the limit of "
            f"{limits.max_voxels} for a chunked volume; raise --max-volume-voxels to accept it"
        )
    item = info.dtype.itemsize
    stored = math.prod(info.stored_chunks) * item
    if stored > limits.max_chunk_bytes:
        raise VolumeRefused(
            f"{info.stored_name} of {_shape_text(info.stored_chunks)} are {stored} bytes each "
            f"decoded, more than the limit of {limits.max_chunk_bytes}; raise --max-chunk-bytes "
            "to accept them"
        )
    if info.shard_entries * _SHARD_INDEX_ENTRY > limits.max_chunk_bytes:
        raise VolumeRefused(
            f"zarr shards of {info.shard_entries} chunks have an index of "
            f"{info.shard_entries * _SHARD_INDEX_ENTRY} bytes, more than the limit of "
            f"{limits.max_chunk_bytes}; raise --max-chunk-bytes to accept them"
        )
    edges = processing_chunks(info, chunks)
    processed = math.prod(edges) * max(item, _MAP_ITEM_BYTES)
    if processed > limits.max_chunk_bytes:
        raise VolumeRefused(
            f"processing chunks of {_shape_text(edges)} are {processed} bytes each as maps, "
            f"more than the limit of {limits.max_chunk_bytes}; give smaller --chunks or raise "
            "--max-chunk-bytes"
        )
    count = math.prod(-(-s // c) for s, c in zip(info.shape, edges, strict=True))
    if count > MAX_VOLUME_CHUNKS:
        raise VolumeRefused(
            f"{count} processing chunks of {_shape_text(edges)}, more than the {MAX_VOLUME_CHUNKS} "
            "a volume is split into; give bigger --chunks"
        )
    if info.chunks_expected is None or info.chunks_present is None:
        return None
    missing = info.chunks_expected - info.chunks_present
    if missing <= 0:
        return None
    text = f"{missing} of {info.chunks_expected} source chunks missing"
    fill = json.dumps(info.fill_value)
    if limits.missing_chunks == "error":
        raise VolumeRefused(
            f"{text} (they would read as fill value {fill}); refused by --missing-chunks error"
        )
    return f"{text}, read as fill value {fill}"


# --- reading -----------------------------------------------------------------


class VolumeReadError(ValueError):
    """Stored data of a volume could not be read or decoded; one line."""


class _GuardedArray:
    """A zarr array read through ``__getitem__`` only, every failure one ValueError.

    Decoding stored chunks from strangers raises whatever the codec raises
    (numcodecs' RuntimeError, zlib.error, a struct or index error of a
    truncated file...): any of them is this mask's failure, named with the
    region being read, never the run's. MemoryError stays itself.
    """

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self.array[key])
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding failure, see the class notes
            region = ", ".join(
                f"{k.start or 0}:{k.stop}" if isinstance(k, slice) else str(k)
                for k in (key if isinstance(key, tuple) else (key,))
            )
            raise VolumeReadError(
                f"cannot read the stored data at [{region}]: {_error_text(exc)}"
            ) from exc


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _open_node(path: str) -> tuple[Any, tuple[float, ...] | None]:
    """The zarr array of a volume (its full-resolution level), and its OME scale.

    Whatever zarr or tifffile raise on metadata they cannot use is this
    mask's one-line failure.
    """
    import zarr

    scale = None
    try:
        if Path(path).is_dir():
            node = zarr.open(path, mode="r")
            if isinstance(node, zarr.Group):
                ms = _multiscales(dict(node.attrs))
                if not ms:
                    raise MaskTypeError("a zarr group without multiscales metadata; not a mask")
                dataset = ms[0]["datasets"][0]
                node = node[dataset["path"]]
                for transform in dataset.get("coordinateTransformations") or []:
                    if transform.get("type") == "scale":
                        scale = tuple(float(s) for s in transform["scale"])
        else:
            import tifffile

            store = tifffile.imread(path, aszarr=True)
            node = zarr.open(store, mode="r")
            if isinstance(node, zarr.Group):
                node = node["0"]  # a pyramid: its full-resolution level
    except (MaskTypeError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - hostile metadata: RecursionError, KeyError...
        raise VolumeRefused(f"cannot open the volume's metadata: {_error_text(exc)}") from exc
    return node, scale


def _open_source(job: Any) -> tuple[Any, tuple[float, ...] | None, str | None]:
    """The volume as a lazy dask array (singleton axes dropped), its OME scale, and a
    note on missing chunks.

    The limits are checked from the metadata (and the listing) before zarr
    opens anything, and again on what zarr read, in case the files changed
    in between; nothing is read or scheduled for a volume over a limit.
    """
    import dask.array as da

    limits: VolumeLimits = job.volume_limits
    info = inspect_volume(job.path)
    note = check_volume(info, limits, job.chunks)
    node, scale = _open_node(job.path)
    opened = VolumeInfo(
        shape=tuple(node.shape),
        dtype=np.dtype(node.dtype),
        stored_chunks=tuple(node.chunks),
        stored_name=info.stored_name,
        shard_entries=info.shard_entries,
    )
    check_volume(opened, limits, job.chunks)
    chunks = job.chunks
    if chunks is None and not Path(job.path).is_dir():
        chunks = DEFAULT_CHUNKS
    array = da.from_array(
        _GuardedArray(node),
        chunks=tuple(node.chunks) if chunks is None else chunks,
        name=f"volume-{uuid.uuid4().hex}",
        meta=np.empty((0,) * node.ndim, node.dtype),
        lock=False,
    )
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
        if scale is not None:
            scale = scale[1:]
    if array.ndim not in (2, 3):
        raise MaskTypeError(f"volume must be 2-D or 3-D, got shape {array.shape}")
    if scale is not None:
        scale = scale[-array.ndim :]
    return array, scale, note


def _spacing(
    settings: MapSettings, path: str, ome_scale: tuple[float, ...] | None, ndim: int
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str | None]:
    """(spacing for the distances, spacing found in the file, its unit)."""
    file_spacing, unit = ome_scale, None
    if not Path(path).is_dir():
        from weightmaps.io import read_spacing_unit

        file_spacing, unit = read_spacing_unit(path)
    from weightmaps.pipeline import _resolve_spacing

    return _resolve_spacing(settings.spacing, file_spacing, ndim), file_spacing, unit


def _sample_values(volume: Any) -> np.ndarray:
    """Distinct values of a sample of whole chunks: every chunk of a volume of up
    to 64, else a strided sample of about 16 (thinned to 2^18 pixels each)."""
    import dask

    grid = volume.numblocks
    if math.prod(grid) <= 4 * _SAMPLE_BLOCKS:
        axes = [np.arange(n) for n in grid]
    else:
        per_axis = max(1, int(_SAMPLE_BLOCKS ** (1 / len(grid))))
        axes = [
            np.unique(np.linspace(0, n - 1, min(n, per_axis)).round().astype(int)) for n in grid
        ]
    picks = []
    for index in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid)):
        block = volume.blocks[tuple(int(i) for i in index)]
        step = max(1, int((block.size / _SAMPLE_PIXELS) ** (1 / block.ndim)))
        picks.append(block[(slice(None, None, step),) * block.ndim].ravel())
    values = dask.compute(*[p.map_blocks(np.unique, chunks=(np.nan,)) for p in picks])
    return np.unique(np.concatenate(values)) if values else np.zeros(0, volume.dtype)


def _volume_type(volume: Any, settings: MapSettings) -> str:
    if settings.mask_type != "auto":
        return settings.mask_type
    if not np.issubdtype(volume.dtype, np.integer):
        return "binary"
    values = _sample_values(volume)
    if settings.ignore_value is not None:
        values = values[values != settings.ignore_value]
    nonzero = int(np.count_nonzero(values))
    if nonzero <= 1:
        return "binary"
    if nonzero > _FEW_VALUES:
        return "instance"
    raise MaskTypeError(
        f"ambiguous volume: {nonzero} nonzero values in a sample of its chunks, instance "
        "ids or class ids; say --mask-type instance or semantic"
    )


class _Prepared:
    """The lazy arrays every map of a volume is made from (as maps.PreparedMask)."""

    def __init__(self, volume: Any, settings: MapSettings, mask_type: str) -> None:
        import dask
        import dask.array as da

        self.mask_type = mask_type
        ignore_value = settings.ignore_value
        ignore = None if ignore_value is None else volume == ignore_value
        if mask_type != "binary" and not (
            volume.dtype == bool or np.issubdtype(volume.dtype, np.integer)
        ):
            raise MaskTypeError(
                f"a chunked {mask_type} volume must hold integers, got dtype {volume.dtype}"
            )
        if volume.dtype == bool:
            values = volume.astype(np.uint8)
        else:
            counted = volume if ignore is None else da.where(ignore, volume.dtype.type(0), volume)
            lowest, highest = dask.compute(counted.min(), counted.max())
            if mask_type != "binary" and lowest < 0:
                raise MaskTypeError(f"a {mask_type} mask must not hold negative values")
            if mask_type == "binary" and not np.isfinite(highest):
                raise MaskTypeError("binary mask holds NaN or infinite values")
            values = volume > float(highest) / 2 if mask_type == "binary" else volume
        self.ignore = ignore
        self.target = None
        self.instances = None
        if mask_type == "semantic":
            # As maps: the class ids themselves, the ignore value their ignore index.
            self.values = values
            self.classes = values
            self.class_ignore = ignore_value
            return
        foreground = values != 0 if ignore is None else (values != 0) & ~ignore
        if mask_type == "binary":
            values = foreground.astype(np.uint8)  # as maps: ignored pixels are background
        self.values = values
        self.classes = foreground.astype(np.uint8)
        if ignore is not None:
            self.classes = da.where(ignore, np.uint8(_FG_BG_IGNORE), self.classes)
        self.class_ignore = _FG_BG_IGNORE

    def separate(self) -> None:
        """Carve touching instances apart (instance volumes), as maps._separate."""
        import dask.array as da

        from weightmaps import chunked

        labels = self.values if self.ignore is None else da.where(self.ignore, 0, self.values)
        carved = chunked.separate_instances(labels, connectivity=1)
        gap = (carved == 0) & (self.values != 0)
        if self.ignore is not None:
            gap &= ~self.ignore
        self.target = da.where(gap, self.values.dtype.type(0), self.values)
        self.instances = carved
        self.values = self.target
        self.classes = da.where(gap, np.uint8(0), self.classes)

    def instance_labels(self, settings: MapSettings) -> Any:
        import dask.array as da

        from weightmaps import chunked

        if self.instances is None:
            if self.mask_type == "instance":
                labels = self.values
                if self.ignore is not None:
                    labels = da.where(self.ignore, 0, labels)
                self.instances = labels
            else:
                self.instances = chunked.label_instances(
                    self.values,
                    connectivity=settings.connectivity,
                    ignore_value=self.class_ignore if self.mask_type == "semantic" else None,
                )
        return self.instances

    def present_classes(self, counts: ClassCounts) -> list[int] | None:
        """A semantic volume's classes (ignore value excluded), as maps._semantic_classes."""
        if self.mask_type != "semantic":
            return None
        return sorted(int(c) for c, n in counts.pixels.items() if n and c != self.class_ignore)


def _prepare(job: Any) -> tuple[Any, _Prepared, ClassCounts]:
    from weightmaps import chunked

    volume, scale, note = _open_source(job)
    prepared = _Prepared(volume, job.settings, _volume_type(volume, job.settings))
    if prepared.mask_type == "instance" and job.settings.separate_touching:
        prepared.separate()
    counts = chunked.class_counts(prepared.classes, ignore_index=prepared.class_ignore)
    if prepared.mask_type == "semantic":
        empty = not prepared.present_classes(counts)
    else:
        empty = counts.pixels.get(1, 0) == 0
    if empty and not job.settings.allow_empty:
        raise MaskTypeError("mask has no foreground pixel (allow empty masks to accept it)")
    return (volume, scale, note), prepared, counts


def _scheduler(job: Any) -> Any:
    import dask

    # A threaded scheduler inside the job, in a local worker process or on a
    # Dask worker alike (never the cluster's client from inside a task), with
    # the job's share of the cores: N worker processes each running a volume
    # must not start N threads per core.
    return dask.config.set(scheduler="threads", num_workers=getattr(job, "threads", None))


def count_volume_job(job: Any) -> dict[str, Any]:
    """Worker: the mask type and class counts of a volume (dataset-scope balance)."""
    from weightmaps.pipeline import _reason

    try:
        with _scheduler(job):
            _, prepared, counts = _prepare(job)
    except (ValueError, TypeError, MemoryError, OSError, KeyError) as exc:
        return {"error": _reason(exc)}
    return {"mask_type": prepared.mask_type, "counts": counts.to_dict()}


def compute_volume_job(job: Any) -> dict[str, Any]:
    """Worker: compute a volume's maps chunk by chunk and write them as zarr arrays.

    Returns the mask's manifest record, of the shape of the in-memory path's
    (``pipeline._write_outputs``), or ``{"error": reason}`` / ``{"fatal": reason}``.
    """
    from weightmaps.pipeline import _FATAL_WRITE_ERRORS, _reason

    try:
        with _scheduler(job):
            return _compute(job)
    except _WriteError as exc:
        os_error = exc.__cause__
        reason = f"cannot write {exc.rel_out}: {getattr(os_error, 'strerror', None) or os_error}"
        fatal = getattr(os_error, "errno", None) in _FATAL_WRITE_ERRORS
        return {"fatal" if fatal else "error": reason}
    except (ValueError, TypeError, MemoryError, OSError, KeyError) as exc:
        return {"error": _reason(exc)}


class _WriteError(Exception):
    def __init__(self, rel_out: str) -> None:
        super().__init__(rel_out)
        self.rel_out = rel_out


def _compute(job: Any) -> dict[str, Any]:
    from weightmaps import chunked
    from weightmaps.maps import _unet_class_weights

    settings: MapSettings = job.settings
    kinds = [k for k in job.kinds if k in KINDS]
    if "edge" in kinds and settings.edge_size is not None:
        raise MaskTypeError(
            "edge size is not supported for chunked volumes (a volume is not resized)"
        )
    (volume, scale, missing), prepared, counts = _prepare(job)
    spacing, file_spacing, _ = _spacing(settings, job.path, scale, volume.ndim)
    maps: dict[str, Any] = {}
    if "unet" in kinds:
        maps["unet"] = chunked.unet_weight_map(
            prepared.instance_labels(settings),
            w0=settings.w0,
            sigma=settings.sigma,
            class_weights=_unet_class_weights(settings),
            spacing=spacing,
            ignore_mask=prepared.ignore,
        )
    if "edge" in kinds:
        maps["edge"] = chunked.edge_weight_map(
            prepared.classes,
            kernel_size=settings.edge_kernel,
            alpha=settings.edge_alpha,
            classes=prepared.present_classes(counts),
            ignore_index=prepared.class_ignore,
        )
    if "balance" in kinds:
        dataset = job.dataset_counts
        if settings.balance_scope == "dataset" and dataset is None:
            raise ValueError("balance scope 'dataset' needs dataset_counts")
        maps["balance"] = chunked.balance_weight_map(
            prepared.classes,
            mode=settings.balance_mode,
            ignore_index=prepared.class_ignore,
            counts=ClassCounts.from_dict(dataset)
            if settings.balance_scope == "dataset"
            else counts,
        )
    if prepared.target is not None and "target" in job.kinds:
        maps["target"] = prepared.target
    _, source_fingerprint = fingerprint(job.path)
    outputs, kept = _write_maps(job, maps, settings, source_fingerprint)
    recorded = spacing or file_spacing
    total = sum(math.prod(array.numblocks) for array in maps.values())
    return {
        "resumed": f"resumed: {kept} of {total} chunks kept" if kept else None,
        "missing": missing,
        "mask_type": prepared.mask_type,
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "spacing": None if recorded is None else list(recorded),
        "counts": counts.to_dict(),
        "outputs": outputs,
    }


def _temp_path(path: Path, extra: str = "") -> Path:
    return path.parent / f".{path.name}{extra}{TEMP_SUFFIX}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class _MapTarget:
    """One map's zarr array being written: a hidden temporary folder, resumed if it can be.

    A temporary array left by an interrupted run is kept when its
    attributes (kind, parameters, source fingerprint, version), shape,
    chunks and dtype are those of this run: the chunks it holds are whole
    (zarr writes each chunk to a temporary file and renames it) and right,
    and only the missing ones are computed. Anything else is removed first.
    Empty chunks are written too, so a missing chunk always means "not done".
    """

    def __init__(self, job: Any, kind: str, array: Any, attributes: dict[str, Any]) -> None:
        import zarr

        self.rel_out = volume_output_name(job.rel, kind)
        self.path = Path(job.out_root) / self.rel_out
        self.tmp = _temp_path(self.path)
        self.array = array
        chunks = tuple(int(c[0]) for c in array.chunks)
        self.zarr = self._resumable(array, chunks, attributes)
        if self.zarr is None:
            _remove(self.tmp)
            self.zarr = zarr.create_array(
                store=str(self.tmp),
                shape=array.shape,
                chunks=chunks,
                dtype=array.dtype,
                attributes=attributes,
                chunk_key_encoding={"name": "default", "separator": "/"},
                config={"write_empty_chunks": True},
            )
        self.missing = [
            index
            for index in np.ndindex(*array.numblocks)
            if not (self.tmp / "c" / "/".join(map(str, index))).is_file()
        ]

    def _resumable(self, array: Any, chunks: tuple[int, ...], attributes: dict) -> Any:
        import zarr

        if not (self.tmp / "zarr.json").is_file():
            return None
        try:
            existing = zarr.open_array(str(self.tmp), mode="r+")
        except Exception:  # noqa: BLE001 - any unreadable leftover is started afresh
            return None
        same = (
            dict(existing.attrs) == json.loads(json.dumps(attributes))
            and existing.shape == array.shape
            and existing.chunks == chunks
            and existing.dtype == array.dtype
            and str(existing.metadata.chunk_key_encoding.encode_chunk_key((0,) * array.ndim))
            == "c/" + "/".join("0" * array.ndim)
        )
        return existing.with_config({"write_empty_chunks": True}) if same else None

    @property
    def resumed(self) -> bool:
        return len(self.missing) < math.prod(self.array.numblocks)

    def sources(self) -> tuple[list[Any], list[Any], list[Any]]:
        """(sources, targets, regions) for ``dask.array.store``: the missing chunks."""
        if not self.resumed:
            return [self.array], [self.zarr], [None]
        starts = [np.cumsum((0, *c)) for c in self.array.chunks]
        regions = [
            tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index, strict=True))
            for index in self.missing
        ]
        return [self.array[r] for r in regions], [self.zarr] * len(regions), regions

    def publish(self) -> None:
        """Rename the complete temporary array into place."""
        old = _temp_path(self.path, ".old")
        _remove(old)
        if self.path.exists() or self.path.is_symlink():
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        _remove(old)


def _write_maps(
    job: Any, maps: dict[str, Any], settings: MapSettings, source_fingerprint: str
) -> tuple[dict[str, dict[str, Any]], int]:
    """Write every map of a volume in one pass: (manifest outputs, chunks kept from before).

    The maps share their graph (reading, labelling, carving), so storing them
    together computes each shared step once, and their min, max and mean come
    from the same pass when nothing was resumed.
    """
    import dask
    import dask.array as da
    import zarr

    out_root = Path(job.out_root).resolve()
    targets: dict[str, _MapTarget] = {}
    current = ""
    try:
        for kind, array in maps.items():
            current = volume_output_name(job.rel, kind)
            folder = (Path(job.out_root) / current).parent
            for _ in range(2):  # as pipeline._write_outputs: before mkdir and after
                if not folder.resolve().is_relative_to(out_root):
                    raise ValueError(f"output folder of {current} leads outside OUT; refused")
                folder.mkdir(parents=True, exist_ok=True)
            attributes = {
                "weightmaps_kind": kind,
                "weightmaps_params": settings.kind_params(kind),
                "weightmaps_source_fingerprint": source_fingerprint,
                "weightmaps_version": __version__,
            }
            if kind != "target":
                array = array.astype(np.float32)
            targets[kind] = _MapTarget(job, kind, array, attributes)
        sources, stores, regions = [], [], []
        for target in targets.values():
            more = target.sources()
            sources += more[0]
            stores += more[1]
            regions += more[2]
        fresh = not any(t.resumed for t in targets.values())
        # store, not to_zarr: with a zarr.Array target, to_zarr rechunks to dask's
        # "auto" chunks (about 128 MiB); these chunks equal the zarr's, one write each.
        stored = da.store(sources, stores, regions=regions, lock=False, compute=False)
        summaries = [_summary(t.array) for t in targets.values()] if fresh else []
        _, *computed = dask.compute(stored, *summaries)
        for target in targets.values():
            current = target.rel_out
            target.publish()
    except OSError as exc:
        raise _WriteError(current) from exc
    except VolumeReadError:
        # The source is damaged: its next run reads the same chunk (or, mended, has
        # another fingerprint), so the chunks written so far are of no use.
        for target in targets.values():
            _remove(target.tmp)
        raise
    outputs = {}
    for i, (kind, target) in enumerate(targets.items()):
        if fresh:
            low, high, mean = computed[i]
        else:
            written = da.from_zarr(zarr.open_array(str(target.path), mode="r"))
            low, high, mean = dask.compute(*_summary(written))
        outputs[kind] = {
            "path": target.rel_out,
            "bytes": tree_size(target.path),
            "shape": list(target.array.shape),
            "dtype": str(target.array.dtype),
            "min": float(low),
            "max": float(high),
            "mean": float(mean),
        }
    kept = sum(math.prod(t.array.numblocks) - len(t.missing) for t in targets.values())
    return outputs, kept


def _summary(array: Any) -> tuple[Any, Any, Any]:
    return array.min(), array.max(), array.mean(dtype=np.float64)
