"""Masks and checks shared by the dask twins' own tests.

Every chunked map must equal the in-memory map of the whole array for any
chunking: chunks smaller than the objects and than the halo, odd and uneven
chunk shapes, anisotropic spacing, objects on the volume edge.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from conftest import random_instances
from scipy import ndimage as ndi


def sparse_ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.arange(1, 5000), n, replace=False)


# Non-contiguous ids, overlapping balls (many touch), centres up to the edges.
LABELS_2D = random_instances((90, 77), 40, radius=(2.0, 10.0), seed=1, ids=sparse_ids(40, 1))
LABELS_3D = random_instances((24, 50, 44), 40, radius=(2.0, 7.0), seed=2, ids=sparse_ids(40, 2))
# Small dots about a cut-off apart: many background pixels whose d1 + d2 is
# just under the cut-off, where a halo a few pixels short would show.
DOTS_2D = random_instances((120, 110), 50, radius=(0.5, 1.5), seed=11, ids=sparse_ids(50, 11))
DOTS_3D = random_instances((30, 60, 50), 60, radius=(0.5, 1.5), seed=12)


def random_chunks(shape: tuple[int, ...], rng: np.random.Generator, largest: int = 12):
    """An uneven chunking: every chunk 1..largest pixels."""
    out = []
    for n in shape:
        sizes = []
        while sum(sizes) < n:
            sizes.append(int(min(rng.integers(1, largest + 1), n - sum(sizes))))
        out.append(tuple(sizes))
    return tuple(out)


def semantic(labels: np.ndarray, ignore: int | None = 255) -> np.ndarray:
    """Classes 0..3 with touching regions of different classes, an ignore band."""
    out = (labels % 4).astype(np.uint8)
    if ignore is not None:
        out[..., 3:5] = ignore
    return out


def soft(labels: np.ndarray) -> np.ndarray:
    return np.clip(ndi.gaussian_filter((labels != 0).astype(np.float64), 1.5), 0.0, 1.0)


def noise(shape, classes: int, density: float, seed: int) -> np.ndarray:
    """Random pixels: long, thin, branching regions that cross many chunks."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, classes + 1, shape).astype(np.uint8)
    return np.where(rng.random(shape) < density, values, 0).astype(np.uint8)


def compare(lazy, x, expected, *, rtol=1e-6, atol=0.0):
    """Lazy dask array with the chunks of ``x`` and the in-memory values."""
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == x.chunks
    got = lazy.compute()
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def assert_same_partition(got: np.ndarray, expected: np.ndarray) -> None:
    """Same regions, whatever the ids: zero on zero, and a bijection of ids."""
    np.testing.assert_array_equal(got == 0, expected == 0)
    pairs = np.unique(np.stack([got.ravel(), expected.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
    ids = np.unique(got[got != 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # 1..n
