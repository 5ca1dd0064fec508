"""Writing a volume's maps as zarr arrays, atomically and resumably.

Each map is written into a hidden ``OUT/<dir>/.<stem>.<kind>.zarr.wmtmp``
folder (the kind's dtype, the zarr default codec, the processing chunks) and renamed
into place once complete. A temporary array left by an interrupted run is
resumed when it was made with the same attributes (kind, parameters,
source fingerprint, version), shape, chunks and dtype; anything else is
removed first. Needs the ``[dask]`` extra.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps.io.names import volume_output_name
from weightmaps.io.volume_source import VolumeReadError
from weightmaps.io.volumes import tree_size
from weightmaps.io.writing import TEMP_SUFFIX
from weightmaps.kinds import REGISTRY

__all__ = ["MapWriteError", "write_volume_maps"]


class MapWriteError(Exception):
    """Writing a volume's map failed; ``rel_out`` names it, the ``OSError`` is the cause."""

    def __init__(self, rel_out: str) -> None:
        super().__init__(rel_out)
        self.rel_out = rel_out


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

    def __init__(
        self, out_root: str, rel: str, kind: str, array: Any, attributes: dict[str, Any]
    ) -> None:
        import zarr

        self.rel_out = volume_output_name(rel, kind)
        self.path = Path(out_root) / self.rel_out
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


def write_volume_maps(
    out_root: str, rel: str, maps: Mapping[str, Any], attributes: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], int]:
    """Write every map of a volume in one pass: (manifest outputs, chunks kept from before).

    ``maps`` are lazy dask arrays by output kind (cast to their kind's dtype;
    the carved ``"target"`` keeps the mask's; a signed distance map has its
    class axis first), written to ``OUT/<stem>.<kind>.zarr`` with ``attributes[kind]``.
    The maps share their graph (reading, labelling, carving), so storing them
    together computes each shared step once, and their min, max and mean come
    from the same pass when nothing was resumed.

    Raises
    ------
    MapWriteError
        Writing failed (the ``OSError`` is its cause).
    VolumeReadError
        The source is damaged; the temporary arrays are removed.
    """
    import dask
    import dask.array as da
    import zarr

    root = Path(out_root).resolve()
    targets: dict[str, _MapTarget] = {}
    current = ""
    try:
        for kind, array in maps.items():
            current = volume_output_name(rel, kind)
            folder = (Path(out_root) / current).parent
            for _ in range(2):  # as the TIFF writer: before mkdir and after
                if not folder.resolve().is_relative_to(root):
                    raise ValueError(f"output folder of {current} leads outside OUT; refused")
                folder.mkdir(parents=True, exist_ok=True)
            if kind in REGISTRY:
                array = array.astype(REGISTRY[kind].dtype)
            targets[kind] = _MapTarget(out_root, rel, kind, array, dict(attributes[kind]))
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
        raise MapWriteError(current) from exc
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
