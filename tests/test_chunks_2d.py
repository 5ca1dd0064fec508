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
