"""The chunked signed distance map: clipped to max_distance, equal to the in-memory one.

Oracle: :func:`weightmaps.kernels.sdf.signed_distance_map` of the whole array
with the same ``max_distance`` (itself tested against scipy's formula in
``test_sdf.py``), for chunkings smaller than the halo, uneven chunks,
anisotropic spacing, ignored pixels, and classes absent from or filling
the volume.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_backends import synchronous_dask_fixture

from weightmaps.kernels.sdf import signed_distance_map

da = pytest.importorskip("dask.array")
from dask_cases import LABELS_2D, LABELS_3D, random_chunks, semantic  # noqa: E402

from weightmaps.kernels.sdf_dask import signed_distance_map as chunked_sdf  # noqa: E402

synchronous_scheduler = synchronous_dask_fixture()

CASES = {
    # (labels, chunks, classes, kwargs)
    "2d-foreground-chunks-below-halo": ((LABELS_2D != 0).astype(np.uint8), 5, [1], {"R": 9.0}),
    "2d-foreground-fraction": ((LABELS_2D != 0).astype(np.uint8), (13, 7), [1], {"R": 3.5}),
    "2d-semantic-ignore": (
        semantic(LABELS_2D),
        (11, 17),
        [1, 2, 3],
        {"R": 6.0, "ignore_index": 255},
    ),
    "2d-spacing": (semantic(LABELS_2D, None), (9, 12), [0, 2], {"R": 4.0, "spacing": (0.5, 1.5)}),
    "3d-foreground": ((LABELS_3D != 0).astype(np.uint8), (5, 9, 7), [1], {"R": 5.0}),
    "3d-anisotropic": (
        semantic(LABELS_3D),
        (4, 11, 13),
        [1, 3],
        {"R": 4.0, "spacing": (2.0, 0.7, 1.0), "ignore_index": 255},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_in_memory_clipped(case):
    labels, chunks, classes, kwargs = CASES[case]
    kwargs = dict(kwargs)
    radius = kwargs.pop("R")
    x = da.from_array(labels, chunks=chunks)
    lazy = chunked_sdf(x, classes=classes, max_distance=radius, **kwargs)
    assert lazy.shape == (len(classes), *labels.shape)
    assert lazy.chunks[1:] == x.chunks
    got = lazy.compute()
    expected = signed_distance_map(labels, classes=classes, max_distance=radius, **kwargs)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert got.min() >= -radius and got.max() <= radius


def test_random_uneven_chunkings():
    rng = np.random.default_rng(5)
    labels = semantic(LABELS_2D)
    expected = signed_distance_map(labels, classes=[1, 2], max_distance=7.0, ignore_index=255)
    for _ in range(3):
        x = da.from_array(labels, chunks=random_chunks(labels.shape, rng))
        got = chunked_sdf(x, classes=[1, 2], max_distance=7.0, ignore_index=255).compute()
        np.testing.assert_array_equal(got, expected)


def test_absent_and_filling_classes_are_zero_as_in_memory():
    labels = np.ones((20, 30), np.uint8)
    x = da.from_array(labels, chunks=7)
    got = chunked_sdf(x, classes=[1, 4], max_distance=3.0).compute()
    expected = signed_distance_map(labels, classes=[1, 4], max_distance=3.0)
    np.testing.assert_array_equal(got, expected)
    assert not got.any()
    # Counts given (as the recipe does) agree with counts taken here.
    labels[3, 4] = 0
    x = da.from_array(labels, chunks=7)
    given = chunked_sdf(x, classes=[1], max_distance=3.0, counts={1: labels.size - 1}).compute()
    np.testing.assert_array_equal(given, chunked_sdf(x, classes=[1], max_distance=3.0).compute())
    np.testing.assert_array_equal(given, signed_distance_map(labels, classes=[1], max_distance=3.0))


def test_argument_errors():
    x = da.zeros((8, 8), dtype=np.uint8, chunks=4)
    with pytest.raises(ValueError, match="max_distance"):
        chunked_sdf(x, classes=[1], max_distance=0.0)
    with pytest.raises(ValueError, match="ignore value"):
        chunked_sdf(x, classes=[1, 255], max_distance=2.0, ignore_index=255)
    with pytest.raises(TypeError, match="integer or boolean"):
        chunked_sdf(x.astype(np.float32), classes=[1], max_distance=2.0)
    with pytest.raises(ValueError, match="spacing"):
        chunked_sdf(x, classes=[1], max_distance=2.0, spacing=(1.0, -1.0))
