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

Mask types: ``instance`` and ``binary`` only. ``mask_type="auto"`` reads a
volume as ``instance`` when its dtype is an integer type and a strided sample
of its chunks holds more than two distinct values (the ignore value not
counted), else ``binary``. Semantic volumes are refused (not supported
chunked yet), as is ``edge_size``.

Discovery and fingerprints need no dask; computing needs the ``[dask]``
extra.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps._version import __version__
from weightmaps.balance import ClassCounts
from weightmaps.maps import KINDS, MapSettings
from weightmaps.masktype import MaskTypeError
from weightmaps.writing import TEMP_SUFFIX

__all__ = [
    "DEFAULT_CHUNKED_ABOVE",
    "DEFAULT_CHUNKS",
    "compute_volume_job",
    "count_volume_job",
    "fingerprint",
    "is_big_tiff",
    "tree_size",
    "volume_output_name",
    "zarr_kind",
]

DEFAULT_CHUNKED_ABOVE: int = 2**27
"""TIFF masks with more pixels than this go the chunked way."""
DEFAULT_CHUNKS: int = 256
"""Edge length of the processing chunks of a TIFF (a zarr keeps its own)."""

_FG_BG_IGNORE = 2  # as weightmaps.maps: class of ignored pixels
_SAMPLE_BLOCKS = 16  # chunks read to guess the mask type
_SAMPLE_PIXELS = 2**18  # pixels kept per sampled chunk


# --- discovery and fingerprints (no dask) -----------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
    entries = []
    for folder, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            entries.append((rel, stat.st_size, stat.st_mtime_ns))
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
        stat = path.stat()
        entries = [("", stat.st_size, stat.st_mtime_ns)]
        size = stat.st_size
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
    parent, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{parent}/{stem}.{kind}.zarr" if parent else f"{stem}.{kind}.zarr"


# --- reading -----------------------------------------------------------------


def _open_source(path: str, chunks: int | None) -> tuple[Any, tuple[float, ...] | None]:
    """The volume as a lazy dask array (singleton axes dropped), and its OME scale."""
    import dask.array as da
    import zarr

    scale = None
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
        array = da.from_zarr(node, chunks=node.chunks if chunks is None else chunks)
    else:
        import tifffile

        store = tifffile.imread(path, aszarr=True)
        node = zarr.open(store, mode="r")
        if isinstance(node, zarr.Group):
            node = node["0"]  # a pyramid: its full-resolution level
        array = da.from_zarr(node, chunks=chunks or DEFAULT_CHUNKS)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
        if scale is not None:
            scale = scale[1:]
    if array.ndim not in (2, 3):
        raise MaskTypeError(f"volume must be 2-D or 3-D, got shape {array.shape}")
    if scale is not None:
        scale = scale[-array.ndim :]
    return array, scale


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
    """Distinct values of a strided sample of whole chunks (at most 16 chunks read)."""
    import dask

    grid = volume.numblocks
    per_axis = max(1, int(_SAMPLE_BLOCKS ** (1 / len(grid))))
    axes = [np.unique(np.linspace(0, n - 1, min(n, per_axis)).round().astype(int)) for n in grid]
    picks = []
    for index in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid)):
        block = volume.blocks[tuple(int(i) for i in index)]
        step = max(1, int((block.size / _SAMPLE_PIXELS) ** (1 / block.ndim)))
        picks.append(block[(slice(None, None, step),) * block.ndim].ravel())
    values = dask.compute(*[p.map_blocks(np.unique, chunks=(np.nan,)) for p in picks])
    return np.unique(np.concatenate(values)) if values else np.zeros(0, volume.dtype)


def _volume_type(volume: Any, settings: MapSettings) -> str:
    mask_type = settings.mask_type
    if mask_type == "auto":
        mask_type = "binary"
        if np.issubdtype(volume.dtype, np.integer):
            values = _sample_values(volume)
            if settings.ignore_value is not None:
                values = values[values != settings.ignore_value]
            if values.size > 2:
                mask_type = "instance"
    if mask_type == "semantic":
        raise MaskTypeError(
            "semantic volumes are not supported chunked yet (use instance or binary, "
            "or a TIFF below --chunked-above)"
        )
    return mask_type


class _Prepared:
    """The lazy arrays every map of a volume is made from (as maps.PreparedMask)."""

    def __init__(self, volume: Any, settings: MapSettings, mask_type: str) -> None:
        import dask
        import dask.array as da

        self.mask_type = mask_type
        ignore_value = settings.ignore_value
        ignore = None if ignore_value is None else volume == ignore_value
        if mask_type == "instance" and not (
            volume.dtype == bool or np.issubdtype(volume.dtype, np.integer)
        ):
            raise MaskTypeError(
                f"a chunked instance volume must hold integers, got dtype {volume.dtype}"
            )
        if volume.dtype == bool:
            values = volume
        else:
            counted = volume if ignore is None else da.where(ignore, volume.dtype.type(0), volume)
            lowest, highest = dask.compute(counted.min(), counted.max())
            if mask_type == "instance" and lowest < 0:
                raise MaskTypeError("an instance mask must not hold negative values")
            if mask_type == "binary" and not np.isfinite(highest):
                raise MaskTypeError("binary mask holds NaN or infinite values")
            values = volume > float(highest) / 2 if mask_type == "binary" else volume
        foreground = values != 0 if ignore is None else (values != 0) & ~ignore
        if mask_type == "binary":
            values = foreground.astype(np.uint8)  # as maps: ignored pixels are background
        self.values = values
        self.ignore = ignore
        self.classes = self._classes(foreground)
        self.target = None
        self.instances = None

    def _classes(self, foreground: Any) -> Any:
        import dask.array as da

        classes = foreground.astype(np.uint8)
        if self.ignore is not None:
            classes = da.where(self.ignore, np.uint8(_FG_BG_IGNORE), classes)
        return classes

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
                    self.values, connectivity=settings.connectivity
                )
        return self.instances


def _prepare(job: Any) -> tuple[Any, _Prepared, ClassCounts]:
    from weightmaps import chunked

    volume, scale = _open_source(job.path, job.chunks)
    prepared = _Prepared(volume, job.settings, _volume_type(volume, job.settings))
    if prepared.mask_type == "instance" and job.settings.separate_touching:
        prepared.separate()
    counts = chunked.class_counts(prepared.classes, ignore_index=_FG_BG_IGNORE)
    if not job.settings.allow_empty and counts.pixels.get(1, 0) == 0:
        raise MaskTypeError("mask has no foreground pixel (allow empty masks to accept it)")
    return (volume, scale), prepared, counts


def _scheduler() -> Any:
    import dask

    # A threaded scheduler inside the job, in a local worker process or on a
    # Dask worker alike (never the cluster's client from inside a task).
    return dask.config.set(scheduler="threads")


def count_volume_job(job: Any) -> dict[str, Any]:
    """Worker: the mask type and class counts of a volume (dataset-scope balance)."""
    from weightmaps.pipeline import _reason

    try:
        with _scheduler():
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
        with _scheduler():
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
        raise MaskTypeError("edge size is not supported chunked yet")
    (volume, scale), prepared, counts = _prepare(job)
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
            ignore_index=_FG_BG_IGNORE,
        )
    if "balance" in kinds:
        dataset = job.dataset_counts
        if settings.balance_scope == "dataset" and dataset is None:
            raise ValueError("balance scope 'dataset' needs dataset_counts")
        maps["balance"] = chunked.balance_weight_map(
            prepared.classes,
            mode=settings.balance_mode,
            ignore_index=_FG_BG_IGNORE,
            counts=ClassCounts.from_dict(dataset)
            if settings.balance_scope == "dataset"
            else counts,
        )
    if prepared.target is not None and "target" in job.kinds:
        maps["target"] = prepared.target
    _, source_fingerprint = fingerprint(job.path)
    outputs = {}
    for kind, array in maps.items():
        outputs[kind] = _write_map(job, kind, array, settings, source_fingerprint)
    recorded = spacing or file_spacing
    return {
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


def _write_map(
    job: Any, kind: str, array: Any, settings: MapSettings, source_fingerprint: str
) -> dict[str, Any]:
    import dask
    import dask.array as da
    import zarr

    rel_out = volume_output_name(job.rel, kind)
    out_root = Path(job.out_root).resolve()
    path = Path(job.out_root) / rel_out
    tmp, old = _temp_path(path), _temp_path(path, ".old")
    try:
        for _ in range(2):  # as pipeline._write_outputs: before mkdir and after
            if not path.parent.resolve().is_relative_to(out_root):
                raise ValueError(f"output folder of {rel_out} leads outside OUT; refused")
            path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (tmp, old):  # of an interrupted run
            _remove(leftover)
        if kind != "target":
            array = array.astype(np.float32)
        target = zarr.create_array(
            store=str(tmp),
            shape=array.shape,
            chunks=tuple(int(c[0]) for c in array.chunks),
            dtype=array.dtype,
            attributes={
                "weightmaps_kind": kind,
                "weightmaps_params": settings.kind_params(kind),
                "weightmaps_source_fingerprint": source_fingerprint,
                "weightmaps_version": __version__,
            },
        )
        try:
            # store, not to_zarr: with a zarr.Array target, to_zarr rechunks to dask's
            # "auto" chunks (about 128 MiB); these chunks equal the zarr's, one write each.
            da.store(array, target, lock=False)
        except BaseException:
            _remove(tmp)
            raise
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
        size = tree_size(path)
    except OSError as exc:
        raise _WriteError(rel_out) from exc
    written = da.from_zarr(zarr.open_array(str(path), mode="r"))
    low, high, mean = dask.compute(written.min(), written.max(), written.mean(dtype=np.float64))
    return {
        "path": rel_out,
        "bytes": size,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "min": float(low),
        "max": float(high),
        "mean": float(mean),
    }
