"""The dask twins' shared machinery (kernels/_dask_common.py): halos, coarsening, rereads.

And what holds for every chunked map at once: any chunking gives the
in-memory maps, and ``import weightmaps`` does not import dask.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from kernel_backends import synchronous_dask_fixture

import weightmaps as wm
from weightmaps.kernels.blocks import coarsen_chunks

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
chunked = pytest.importorskip("weightmaps.chunked")
_dask_common = pytest.importorskip("weightmaps.kernels._dask_common")
from dask_cases import (  # noqa: E402
    LABELS_2D,
    LABELS_3D,
    assert_same_partition,
    compare,
    random_chunks,
    semantic,
)

synchronous_scheduler = synchronous_dask_fixture()


def test_import_weightmaps_does_not_import_dask():
    code = "import weightmaps, sys; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("chunks", "depth", "expected"),
    [
        ((7,) * 9 + (1,), 28, (28, 36)),
        ((3, 3), 10, (6,)),
        ((5, 1, 9), 0, (5, 1, 9)),
        ((30, 1, 40, 19), 12, (30, 41, 19)),
    ],
)
def test_chunks_thinner_than_the_halo_are_merged(chunks, depth, expected):
    assert coarsen_chunks(chunks, depth) == expected


@pytest.mark.parametrize("seed", range(4))
def test_random_chunkings(seed):
    rng = np.random.default_rng(100 + seed)
    labels = LABELS_2D if seed % 2 == 0 else LABELS_3D[:, :30, :30]
    x = da.from_array(labels, chunks=random_chunks(labels.shape, rng))
    compare(
        chunked.unet_weight_map(x, sigma=1.5),
        x,
        wm.unet_weight_map(labels, sigma=1.5),
        atol=1e-5,
    )
    mask = semantic(labels)
    m = da.from_array(mask, chunks=x.chunks)
    compare(
        chunked.edge_weight_map(m, kernel_size=5, num_classes=4, ignore_index=255),
        m,
        wm.edge_weight_map(mask, kernel_size=5, num_classes=4, ignore_index=255),
    )
    np.testing.assert_array_equal(
        chunked.separate_instances(x).compute(), wm.separate_instances(labels)
    )
    assert_same_partition(
        chunked.label_instances(m, ignore_value=255).compute(),
        wm.label_instances(mask, ignore_value=255),
    )


def test_halo_maps_read_their_own_blocks_only_from_cheap_inputs(tmp_path):
    """Storage reads with slicing and elementwise ops on top are read again by
    each block task (memory set by the blocks in flight); a labelling or a
    user's map_blocks is computed once and goes through map_overlap."""
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "labels.zarr"
    z = zarr.create_array(str(path), shape=LABELS_3D.shape, chunks=(8, 16, 16), dtype=np.int32)
    z[:] = LABELS_3D
    stored = da.from_zarr(str(path))
    assert _dask_common._rereadable(stored)
    assert _dask_common._rereadable(da.where(stored == 7, 0, stored).astype(np.int64)[2:, :-3])
    assert _dask_common._rereadable(da.from_array(LABELS_3D, chunks=8).rechunk(12))
    assert not _dask_common._rereadable(chunked.label_instances(stored > 0))
    assert not _dask_common._rereadable(stored.map_blocks(lambda b: b + 1))
    w = chunked.unet_weight_map(stored, sigma=2.0)
    assert any(name.startswith("_reread_block") for name in w.dask.layers)
    assert not any("overlap" in name for name in w.dask.layers)
    labelled = chunked.unet_weight_map(chunked.label_instances(stored > 0), sigma=2.0)
    assert any("overlap" in name for name in labelled.dask.layers)
    np.testing.assert_allclose(w.compute(), wm.unet_weight_map(LABELS_3D, sigma=2.0), atol=1e-5)
