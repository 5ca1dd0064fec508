"""Compile the CPU kernels ahead of the first mask, into numba's disk cache.

Kernels compile on first use and numba keeps them on disk, so only a
machine's (or an image's) first run pays: a few seconds, most of the first
mask's time on a fresh install. :func:`warm_up` pays it when convenient
instead: in ``make install``, a Dockerfile, a cluster's set-up job. It
computes the maps of small made-up masks, which compiles exactly what real
masks of those dtypes and dimensions compile, on one thread and split over
two (the split passes are kernels of their own).

Kernels are cached beside the installed package when that folder is
writable, else in numba's user cache (``NUMBA_CACHE_DIR`` chooses another
place); a cache made on one CPU model is not used on another.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["warm_up"]

# Dtypes masks arrive in, each compiling its own mask-typing kernels.
_MASK_DTYPES = (bool, np.uint8, np.uint16, np.int32, np.uint32, np.int64)


def _blobs(shape: tuple[int, ...], count: int) -> np.ndarray:
    """Ids 1..count on cubes on a grid, two of them touching (a carving case)."""
    labels = np.zeros(shape, np.int64)
    rng = np.random.default_rng(0)
    for label in range(1, count + 1):
        corner = [int(rng.integers(0, n - 8)) for n in shape]
        labels[tuple(slice(c, c + 7) for c in corner)] = label
    return labels


def _masks(ndim: int) -> Iterator[tuple[np.ndarray, str, tuple[float, ...] | None]]:
    """Made-up masks of every type and dtype: ``(mask, its type, spacing)``.

    Large enough (over :data:`weightmaps._shared.threads.PARALLEL_PIXELS`)
    for the passes to split over threads.
    """
    shape = (384, 384) if ndim == 2 else (10, 120, 120)
    instances = _blobs(shape, 60)
    anisotropic = (0.5, 1.0) if ndim == 2 else (2.0, 0.65, 0.65)
    for dtype in _MASK_DTYPES:
        if dtype is bool:
            yield instances > 0, "binary", None
        else:
            yield instances.astype(dtype), "instance", None
    yield (instances % 3).astype(np.uint8), "semantic", None
    yield instances.astype(np.uint16), "instance", anisotropic


def warm_up(kinds: str | Sequence[str] | None = None, *, ndims: Sequence[int] = (2, 3)) -> float:
    """Compile (or load) the CPU kernels of ``kinds`` for masks of ``ndims`` dimensions.

    Parameters
    ----------
    kinds : str or sequence of str, optional
        Map kinds (default every kind of :data:`weightmaps.kinds.KINDS`).
    ndims : sequence of int
        2 and/or 3.

    Returns
    -------
    float
        Seconds spent compiling; about 0 when the cache held everything.

    Examples
    --------
    >>> seconds = warm_up("edge", ndims=(2,))  # compiles, or loads from the cache
    >>> seconds >= 0.0
    True
    """
    from numba.core import event

    from weightmaps._shared.threads import kernel_threads
    from weightmaps.kinds import KINDS
    from weightmaps.recipe import compute_maps
    from weightmaps.settings import MapSettings

    kinds = KINDS if kinds is None else kinds
    unknown = sorted(set(ndims) - {2, 3})
    if unknown:
        raise ValueError(f"ndims must be 2 and/or 3, got {unknown}")
    spent = [0.0]

    def add(seconds: float) -> None:
        spent[0] += seconds

    with event.install_timer("numba:compile", add):
        for ndim in ndims:
            for mask, mask_type, spacing in _masks(ndim):
                # "auto" types the mask first, as generate does by default;
                # a named type skips that and checks the mask against it.
                for settings in (MapSettings(), MapSettings(mask_type=mask_type)):
                    for threads in (1, 2):
                        with kernel_threads(threads):
                            compute_maps(mask, settings, kinds=kinds, spacing=spacing)
    return spent[0]


def main() -> None:  # pragma: no cover - python -m weightmaps.warmup
    start = time.perf_counter()
    seconds = warm_up()
    print(f"kernels ready in {time.perf_counter() - start:.1f} s ({seconds:.1f} s compiling)")


if __name__ == "__main__":  # pragma: no cover
    main()
