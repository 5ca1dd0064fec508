"""The chunked F3Net/PraNet edge weight map (Dask): each chunk with a halo of ``k // 2``."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import dask.array as da
import numpy as np

from weightmaps._shared.checks import check_kernel_size, check_nonempty
from weightmaps.kernels._dask_common import as_dask, map_with_halo
from weightmaps.kernels.edge import edge_weight_map as numpy_edge_weight_map

__all__ = ["edge_weight_map"]


def edge_weight_map(
    mask: da.Array,
    *,
    kernel_size: int = 31,
    alpha: float = 5.0,
    classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.edge_weight_map` (halo of ``kernel_size // 2``).

    ``classes`` is the global class list (or ``num_classes``); a class absent
    from a chunk and its halo adds nothing there, exactly as in memory.
    Float masks are checked to lie in [0, 1] chunk by chunk, when computed.

    Returns
    -------
    dask array of float32
        Lazy, chunks of ``mask``.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> w = edge_weight_map(da.from_array(m, chunks=2), kernel_size=3, alpha=9.0)
    >>> w[2, 2].compute(), w[1, 1].compute(), w[0, 0].compute()
    (np.float32(9.0), np.float32(2.0), np.float32(1.0))
    """
    m = as_dask(mask)
    check_nonempty(m.shape, "mask")
    if classes is not None and num_classes is not None:
        raise ValueError("give classes or num_classes, not both")
    check_kernel_size(kernel_size)
    semantic = classes is not None or num_classes is not None
    if semantic and not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"a semantic mask must hold integer class ids, got {m.dtype}")
    if not (m.dtype == bool or np.issubdtype(m.dtype, np.number)) or np.issubdtype(
        m.dtype, np.complexfloating
    ):
        raise TypeError(f"mask must be bool, integer or float, got dtype {m.dtype}")
    func = functools.partial(
        numpy_edge_weight_map,
        kernel_size=kernel_size,
        alpha=alpha,
        classes=None if classes is None else tuple(int(c) for c in classes),
        num_classes=num_classes,
        ignore_index=ignore_index,
    )
    return map_with_halo(func, [m], (kernel_size // 2,) * m.ndim, np.float32)
