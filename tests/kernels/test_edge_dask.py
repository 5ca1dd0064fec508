"""What only the dask edge twin does: chunkings thinner than the box, lazy value checks.

The map itself is tested on every backend in ``test_edge.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_backends import synchronous_dask_fixture

import weightmaps as wm

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
chunked = pytest.importorskip("weightmaps.chunked")
from dask_cases import LABELS_2D, LABELS_3D, compare, semantic, soft  # noqa: E402

synchronous_scheduler = synchronous_dask_fixture()

EDGE_CASES = {
    # k = 31: halo 15, chunks of 7 merged.
    "2d-binary-int": (LABELS_2D, 7, dict()),
    "2d-bool-odd-chunks": (LABELS_2D != 0, (9, 13), dict(kernel_size=11, alpha=3.0)),
    "2d-soft": (soft(LABELS_2D), (10, 6), dict(kernel_size=9)),
    "2d-binary-ignore": (semantic(LABELS_2D), (8, 12), dict(kernel_size=7, ignore_index=255)),
    "2d-semantic": (
        semantic(LABELS_2D),
        ((30, 1, 40, 19), (7, 50, 20)),
        dict(kernel_size=7, num_classes=4, ignore_index=255),
    ),
    "2d-semantic-some-classes": (semantic(LABELS_2D, None), 11, dict(classes=[0, 2, 3])),
    "3d-bool": (LABELS_3D != 0, (4, 5, 6), dict(kernel_size=5)),
    "3d-soft": (soft(LABELS_3D).astype(np.float32), (5, 9, 7), dict(kernel_size=7)),
    "3d-semantic": (semantic(LABELS_3D), (6, 11, 8), dict(kernel_size=5, num_classes=4)),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_equals_in_memory(case):
    mask, chunks, kwargs = EDGE_CASES[case]
    x = da.from_array(mask, chunks=chunks)
    compare(chunked.edge_weight_map(x, **kwargs), x, wm.edge_weight_map(mask, **kwargs))


def test_argument_errors_are_eager_value_errors_lazy():
    x = da.zeros((8, 8), dtype=np.uint8, chunks=4)
    with pytest.raises(ValueError, match="odd"):
        chunked.edge_weight_map(x, kernel_size=4)
    with pytest.raises(ValueError, match="not both"):
        chunked.edge_weight_map(x, classes=[0], num_classes=2)
    with pytest.raises(TypeError, match="semantic"):
        chunked.edge_weight_map(x.astype(np.float32), num_classes=2)
    bad = chunked.edge_weight_map(x.astype(np.float32) + 2.0, kernel_size=3)  # lazy
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bad.compute()
