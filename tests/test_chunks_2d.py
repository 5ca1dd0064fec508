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


@pytest.mark.parametrize("rowsperstrip", [None, 300])
def test_a_tiff_of_one_strip_is_decoded_once(tmp_path: Path, monkeypatch, rowsperstrip) -> None:
    """Every block of every kind reads the mask again; one stored chunk is decoded once."""
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
    if rowsperstrip is None:  # one strip: the whole mask, once
        assert len(reads) == 1
    else:  # strips of 300 rows: read block by block, many times
        assert len(reads) > 4


class CountedReads:
    """A zarr array that records every read."""

    def __init__(self, array, reads: list[object]) -> None:
        self.array, self.reads = array, reads
        self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]
