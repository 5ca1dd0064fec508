"""What only the dask instance twins do: carving and labelling across chunk edges.

Each case brings its own chunking (one-pixel, uneven, smaller than the
regions); the kernels themselves are tested on every backend in
``test_instances.py``. Labels may be numbered differently from numpy's:
the same partition into regions, ids 1..n.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_backends import synchronous_dask_fixture

import weightmaps as wm

da = pytest.importorskip("dask.array")
chunked = pytest.importorskip("weightmaps.chunked")
from dask_cases import LABELS_2D, LABELS_3D, assert_same_partition, noise, semantic  # noqa: E402

synchronous_scheduler = synchronous_dask_fixture()


@pytest.mark.parametrize(
    ("labels", "chunks", "connectivity"),
    [
        (LABELS_2D, (4, 6), 1),
        (LABELS_2D, (1, 13), 2),
        (LABELS_3D[:, :20, :20], 3, 1),
        (LABELS_3D, (5, 7, 4), 3),
    ],
)
def test_separate_instances_equals_in_memory(labels, chunks, connectivity):
    labels = labels.astype(np.uint16)
    x = da.from_array(labels, chunks=chunks)
    got = chunked.separate_instances(x, connectivity=connectivity)
    assert got.chunks == x.chunks and got.dtype == labels.dtype
    np.testing.assert_array_equal(got.compute(), wm.separate_instances(labels, connectivity))


LABEL_CASES = {
    "2d-binary-noise": (noise((40, 45), 1, 0.55, 4), (4, 7), {}),
    "2d-binary-noise-faces": (noise((40, 45), 1, 0.6, 5), (5, 3), dict(connectivity=1)),
    "2d-semantic-noise": (noise((40, 45), 3, 0.8, 6), 5, {}),
    "2d-semantic-noise-faces": (noise((40, 45), 3, 0.9, 7), (1, 9), dict(connectivity=1)),
    "2d-semantic-objects": (semantic(LABELS_2D), ((30, 1, 40, 19), (7, 50, 20)), {}),
    "2d-ignore": (semantic(LABELS_2D), 8, dict(ignore_value=255)),
    "3d-binary-noise": (noise((12, 14, 13), 1, 0.4, 8), (3, 4, 5), {}),
    "3d-binary-noise-conn2": (noise((12, 14, 13), 1, 0.45, 9), (4, 3, 5), dict(connectivity=2)),
    "3d-semantic-noise-faces": (noise((12, 14, 13), 2, 0.7, 10), 4, dict(connectivity=1)),
    "3d-semantic-objects": (semantic(LABELS_3D), (5, 9, 7), dict(ignore_value=255)),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_label_instances_same_partition_as_in_memory(case):
    mask, chunks, kwargs = LABEL_CASES[case]
    x = da.from_array(mask, chunks=chunks)
    got = chunked.label_instances(x, **kwargs)
    assert isinstance(got, da.Array) and got.chunks == x.chunks and got.dtype == np.int32
    assert_same_partition(got.compute(), wm.label_instances(mask, **kwargs))


def test_label_instances_bool_and_empty():
    mask = LABELS_2D != 0
    x = da.from_array(mask, chunks=(6, 10))
    assert_same_partition(chunked.label_instances(x).compute(), wm.label_instances(mask))
    empty = chunked.label_instances(da.zeros((9, 9), dtype=np.uint8, chunks=4))
    np.testing.assert_array_equal(empty.compute(), np.zeros((9, 9), np.int32))
