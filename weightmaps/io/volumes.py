"""Volumes on disk: zarr, OME-Zarr and big TIFF masks, known from their metadata.

A mask that is a zarr array (or an OME-Zarr image: its full-resolution
level), or a TIFF with more pixels than ``chunked_above``, is computed the
chunked way: read chunk by chunk (:mod:`weightmaps.io.volume_source`), its
maps written as zarr arrays (:mod:`weightmaps.io.zarr_maps`).

Volumes are identified by a fingerprint rather than by the SHA-256 of their
bytes: for a zarr folder a digest of the sorted (relative path, size,
mtime_ns) of its files, for a big TIFF of its (size, mtime_ns). Rewriting one
chunk changes it; copying a volume with new modification times does too.

Limits (:class:`VolumeLimits`): metadata comes from strangers, so a
volume's shape, data type and stored chunks are read from its metadata
(:func:`inspect_volume`, no zarr needed) and checked (:func:`check_volume`)
before anything is read or scheduled: when the run is planned and again in
the job, and once more on what zarr itself read; the processing chunks grown
by the maps' halos (:func:`check_halo_blocks`, on :func:`processing_grid`,
with the file's spacing from :func:`ome_scale` or a TIFF's tags) when
planned and again in the job, still before any data is read. A refusal is
one line
(:class:`VolumeRefused`). Zarr chunks missing from the store are counted
from its listing, never by reading.

Nothing here needs dask or zarr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weightmaps.kernels.blocks import largest_grown_block

if TYPE_CHECKING:
    from weightmaps.recipe import VolumeHalo

__all__ = [
    "DEFAULT_CHUNKED_ABOVE",
    "DEFAULT_CHUNKS",
    "DEFAULT_CHUNKS_2D",
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_MAX_VOLUME_VOXELS",
    "MAX_VOLUME_CHUNKS",
    "MISSING_CHUNKS",
    "VolumeInfo",
    "VolumeLimits",
    "VolumeRefused",
    "check_halo_blocks",
    "check_volume",
    "default_chunk_edge",
    "fingerprint",
    "inspect_volume",
    "is_big_tiff",
    "multiscales",
    "ome_scale",
    "processing_chunks",
    "processing_grid",
    "tree_size",
    "zarr_kind",
]

DEFAULT_CHUNKED_ABOVE: int = 2**27
"""TIFF masks with more pixels than this go the chunked way."""
DEFAULT_CHUNKS: int = 256
"""Edge length of the processing chunks of a 3-D TIFF (a zarr keeps its own)."""
DEFAULT_CHUNKS_2D: int = 2048
"""Edge length of the processing chunks of a 2-D TIFF (a whole-slide mask).

A chunk is computed on itself grown by the maps' halo (28 pixels a side for
the U-Net map at sigma 5) and has a fixed cost besides (a few Dask tasks, the
strips it decodes): at 256^2 a 4096^2 mask took 6x the in-memory time, at
2048^2 it takes about as long (``benchmarks/bench_scale.py``), and a chunk's
maps are 16 MiB each, far under ``--max-chunk-bytes``.
"""
DEFAULT_MAX_VOLUME_VOXELS: int = 2**31
"""Largest voxel count of a chunked volume unless raised (``--max-volume-voxels``)."""
DEFAULT_MAX_CHUNK_BYTES: int = 2**28
"""Largest decoded stored chunk, processing chunk, and processing chunk grown by
a map's halo, unless raised (``--max-chunk-bytes``)."""
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


def multiscales(attrs: dict[str, Any]) -> list | None:
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
            return "ome" if multiscales(meta.get("attributes") or {}) else "group"
        return None
    if (path / ".zarray").is_file():
        return "array"
    if (path / ".zgroup").is_file():
        return "ome" if multiscales(_read_json(path / ".zattrs") or {}) else "group"
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
        mask's item size if larger), before and after it is grown by a map's
        halo (:func:`check_halo_blocks`) (``--max-chunk-bytes``).
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


def _full_resolution(root: Path) -> dict[str, Any]:
    """The first dataset of an OME-Zarr image's multiscales (VolumeRefused if none)."""
    meta = _load_json(root / "zarr.json")
    attrs = (meta.get("attributes") or {}) if isinstance(meta, dict) else None
    if attrs is None:
        attrs = _load_json(root / ".zattrs") or {}
    ms = multiscales(attrs) if isinstance(attrs, dict) else None
    try:
        dataset = ms[0]["datasets"][0]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        dataset = None
    if not isinstance(dataset, dict) or "path" not in dataset:
        raise VolumeRefused("OME-Zarr metadata names no full-resolution dataset")
    return dataset


def ome_scale(path: str | os.PathLike[str]) -> tuple[float, ...] | None:
    """The scale of a zarr volume's full-resolution level, read from its metadata
    (the last ``scale`` transform of the first dataset), or None: a zarr array, or
    no scale given. VolumeRefused, one line, for metadata that cannot be used.
    Planning and the job that opens the volume both read it here.
    """
    path = Path(path)
    if zarr_kind(path) != "ome":
        return None
    scale = None
    try:
        for transform in _full_resolution(path).get("coordinateTransformations") or []:
            if transform.get("type") == "scale":
                scale = tuple(float(s) for s in transform["scale"])
    except (AttributeError, TypeError, KeyError, ValueError, OverflowError) as exc:
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise VolumeRefused(f"cannot open the volume's metadata: {text}") from None
    return scale


def _level_zero(root: Path) -> Path:
    """The folder of an OME-Zarr image's full-resolution array (kept inside ``root``)."""
    path = _full_resolution(root)["path"]
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
        edges = (default_chunk_edge(info.shape),) * len(info.shape)
    return tuple(max(1, min(c, s)) for c, s in zip(edges, info.shape, strict=True))


def processing_grid(info: VolumeInfo, chunks: int | None) -> tuple[tuple[int, ...], ...]:
    """The chunks per axis a job computes the volume in, as a dask array's ``chunks``.

    :func:`processing_chunks` along each axis, the last chunk the remainder;
    leading axes of length 1 dropped while more than two are left, as the
    job drops them when it opens the volume.

    Examples
    --------
    >>> info = VolumeInfo(shape=(1, 600, 500), dtype=np.dtype("uint16"),
    ...                   stored_chunks=(1, 600, 500), stored_name="TIFF strips")
    >>> processing_grid(info, 256)
    ((256, 256, 88), (256, 244))
    """
    edges = processing_chunks(info, chunks)
    grid = [
        (edge,) * (size // edge) + ((size % edge,) if size % edge else ())
        for size, edge in zip(info.shape, edges, strict=True)
    ]
    shape = list(info.shape)
    while len(grid) > 2 and shape[0] == 1:
        grid.pop(0)
        shape.pop(0)
    return tuple(grid)


def default_chunk_edge(shape: tuple[int, ...]) -> int:
    """Processing chunk edge of a TIFF of this shape: :data:`DEFAULT_CHUNKS_2D` for
    an image (at most two axes longer than 1), :data:`DEFAULT_CHUNKS` for a volume.

    Examples
    --------
    >>> default_chunk_edge((1, 12000, 12000)), default_chunk_edge((96, 512, 512))
    (2048, 256)
    """
    return DEFAULT_CHUNKS_2D if sum(1 for n in shape if n > 1) <= 2 else DEFAULT_CHUNKS


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


def check_halo_blocks(
    chunks: Sequence[Sequence[int]],
    dtype: np.dtype,
    halos: Sequence[VolumeHalo],
    limits: VolumeLimits,
) -> None:
    """Refuse a volume whose chunks, grown by a map's halo, are over ``max_chunk_bytes``.

    A chunked map computes each block grown by its halo (after merging the
    chunks thinner than it, :func:`~weightmaps.kernels.blocks.largest_grown_block`,
    the code the kernels run), so a large ``--sigma`` or a fine spacing in
    the file's metadata makes blocks far larger than the processing chunks
    :func:`check_volume` allowed. Counted as :func:`check_volume` counts a
    processing chunk: float32 maps, or the mask's item size if larger. Raises
    :class:`VolumeRefused` (one line: the halo, the block, its bytes, the
    limit, the options that shrink it) for the first halo over the limit.

    Parameters
    ----------
    chunks : sequence of sequences of int
        The processing chunks per axis (a dask array's ``chunks``).
    dtype : numpy dtype
        The volume's.
    halos : sequence of VolumeHalo
        The halos the maps grow blocks by (:func:`weightmaps.recipe.volume_halos`).
    limits : VolumeLimits
    """
    item = max(np.dtype(dtype).itemsize, _MAP_ITEM_BYTES)
    for halo in halos:
        edges = largest_grown_block(chunks, halo.depth)
        size = math.prod(edges) * item
        if size > limits.max_chunk_bytes:
            smaller = f", a smaller halo ({', '.join(halo.options)})" if halo.options else ""
            raise VolumeRefused(
                f"{halo.name} grows processing chunks by a halo of {_shape_text(halo.depth)} "
                f"into blocks of up to {_shape_text(edges)}, {size} bytes each as maps, more "
                f"than the limit of {limits.max_chunk_bytes}; give smaller --chunks{smaller} "
                "or raise --max-chunk-bytes"
            )
