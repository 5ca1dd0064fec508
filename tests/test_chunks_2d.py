"""A 2-D TIFF that goes the chunked way is processed in 2048^2 chunks, a volume in 256^3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from weightmaps import unet_weight_map
from weightmaps.io.volumes import default_chunk_edge
from weightmaps.pipeline import generate

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")


def _nuclei(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for label in range(1, 40):
        corner = [int(rng.integers(0, max(1, n - 6))) for n in shape]
        labels[tuple(slice(c, c + 5) for c in corner)] = label
    return labels


@pytest.mark.parametrize(
    ("shape", "chunks"),
    [((2100, 40), (2048, 40)), ((1, 2100, 40), (2048, 40)), ((3, 300, 20), (3, 256, 20))],
)
def test_default_chunks_of_a_tiff(tmp_path: Path, shape, chunks) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    labels = _nuclei(shape, seed=len(shape))
    tifffile.imwrite(masks / "m.tif", labels, photometric="minisblack")
    report = generate(masks, tmp_path / "out", kinds=["unet"], chunked_above=0, progress=False)
    assert report.exit_code == 0
    stored = zarr.open_array(tmp_path / "out" / "m.unet.zarr", mode="r")
    assert stored.chunks == chunks
    # Exact across the chunk boundary: the in-memory map of the whole mask.
    np.testing.assert_array_equal(stored[...], unet_weight_map(labels.squeeze()))


def test_default_chunk_edge() -> None:
    assert default_chunk_edge((100_000, 100_000)) == 2048
    assert default_chunk_edge((2, 2048, 2048)) == 256


@pytest.mark.parametrize(("rowsperstrip", "decoded"), [(None, 1), (600, 4), (300, None)])
def test_stored_chunks_are_decoded_once(tmp_path: Path, monkeypatch, rowsperstrip, decoded) -> None:
    """Every block of every kind reads the mask again; a stored chunk is decoded once,
    unless chunks are small (36 KB strips of 300 rows: zarr reads them directly)."""
    import weightmaps.io.volume_source as volume_source

    masks = tmp_path / "masks"
    masks.mkdir()
    labels = _nuclei((2100, 60), seed=4)
    tifffile.imwrite(masks / "m.tif", labels, photometric="minisblack", rowsperstrip=rowsperstrip)
    reads: list[object] = []
    original = volume_source._GuardedArray.__init__

    def counting_init(self, array):
        original(self, CountedReads(array, reads))

    monkeypatch.setattr(volume_source._GuardedArray, "__init__", counting_init)
    report = generate(masks, tmp_path / "out", chunked_above=0, progress=False)
    assert report.exit_code == 0
    for kind in ("unet", "edge", "balance"):
        stored = zarr.open_array(tmp_path / "out" / f"m.{kind}.zarr", mode="r")
        assert stored.chunks == (2048, 60)
    np.testing.assert_array_equal(
        zarr.open_array(tmp_path / "out" / "m.unet.zarr", mode="r")[...], unet_weight_map(labels)
    )
    if decoded is not None:  # each strip once
        assert len(reads) == decoded
    else:  # read block by block, every time
        assert len(reads) > 4


class CountedReads:
    """A zarr array that records every read."""

    def __init__(self, array, reads: list[object]) -> None:
        self.array, self.reads = array, reads
        self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


def test_regions_read_through_the_chunk_cache_are_exact(monkeypatch) -> None:
    import weightmaps.io.volume_source as volume_source

    monkeypatch.setattr(volume_source, "_CACHED_CHUNK_MIN_BYTES", 1)
    monkeypatch.setattr(volume_source, "_CACHE_BYTES", 3000)  # a few chunks: some dropped
    rng = np.random.default_rng(0)
    values = rng.integers(0, 1000, (37, 23, 19)).astype(np.uint16)
    stored = zarr.create_array(
        zarr.storage.MemoryStore(), shape=values.shape, chunks=(8, 10, 7), dtype=values.dtype
    )
    stored[...] = values
    guarded = volume_source._GuardedArray(stored)
    for _ in range(200):
        lo = [int(rng.integers(0, n)) for n in values.shape]
        hi = [int(rng.integers(a, n + 1)) for a, n in zip(lo, values.shape, strict=True)]
        key = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        np.testing.assert_array_equal(guarded[key], values[key])
    np.testing.assert_array_equal(guarded[:, 3:, ::1], values[:, 3:])
    np.testing.assert_array_equal(guarded[::2], values[::2])  # a step: read by zarr
    assert guarded._cached_bytes <= 3000 or len(guarded._cache) == 1
