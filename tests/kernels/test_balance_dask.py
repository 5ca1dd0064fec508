"""What only the dask balance twin does: argument checks before any counting pass.

The map and the counts are tested on every backend in ``test_balance.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
chunked = pytest.importorskip("weightmaps.chunked")


def test_rejects_a_bad_mode_before_counting():
    x = da.zeros((4, 4), dtype=np.uint8, chunks=2)
    with pytest.raises(ValueError, match="unknown balance mode"):
        chunked.balance_weight_map(x, mode="log")
    with pytest.raises(TypeError, match="integer class ids"):
        chunked.balance_weight_map(x.astype(np.float32))
