"""Views that let one compiled kernel process any axis of an N-D array."""

from __future__ import annotations

import numpy as np


def line_view(array: np.ndarray, axis: int) -> np.ndarray:
    """``(outer, n, inner)`` view of a C-contiguous array, ``n`` along ``axis``.

    A kernel looping over axis 1 of this view walks lines along ``axis``,
    with the innermost loop over contiguous memory.
    """
    shape = array.shape
    return array.reshape(
        int(np.prod(shape[:axis], dtype=np.int64)),
        shape[axis],
        int(np.prod(shape[axis + 1 :], dtype=np.int64)),
    )
