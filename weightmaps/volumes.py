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

Discovery and fingerprints need no dask; computing needs the ``[dask]``
extra.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import stat
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
    """(relative path, size, mtime_ns) of every file of a zarr folder.

    Raises OSError for what zarr must never read: a FIFO or device (the read
    would block) or a symbolic link leading out of the folder.
    """
    entries = []
    real_root = root.resolve()
    for folder, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if os.path.islink(path) and not Path(path).resolve().is_relative_to(real_root):
                raise OSError(errno.EPERM, f"{rel} is a symbolic link out of the volume; refused")
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, f"{rel} is not a regular file; refused")
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

    volume, scale = _open_source(job.path, job.chunks)
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
    return (volume, scale), prepared, counts


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
