"""The chunked Falk weight: equal to the in-memory one of the whole volume.

Oracle: :func:`weightmaps.kernels.falk.unet_weight_map_falk` (tested against
the plugin's per-instance loop in ``test_falk.py``), for chunkings thinner
than the halo, per-class borders, ignored pixels and anisotropic spacing.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_backends import synchronous_dask_fixture

from weightmaps.kernels.falk import unet_weight_map_falk

da = pytest.importorskip("dask.array")
from dask_cases import DOTS_2D, LABELS_2D, LABELS_3D, random_chunks  # noqa: E402

from weightmaps.kernels.falk_dask import falk_halo  # noqa: E402
from weightmaps.kernels.falk_dask import unet_weight_map_falk as chunked_falk  # noqa: E402

synchronous_scheduler = synchronous_dask_fixture()


def classes_of(labels: np.ndarray) -> np.ndarray:
    return np.where(labels > 0, labels % 2 + 1, 0)


CASES = {
    "2d-one-class": (LABELS_2D, 9, {}),
    "2d-dots-far-fall": (DOTS_2D, (10, 12), {"sigma": 3.0, "sigma_1": 6.0, "v_bal": 0.3}),
    "2d-no-border": (LABELS_2D, 8, {"w0": 0.0, "sigma_1": 4.0}),
    "2d-classes-ignore": (LABELS_2D, (13, 6), {"classes": True, "ignore": True, "sigma": 3.0}),
    "3d-anisotropic": (
        LABELS_3D,
        (5, 9, 8),
        {"sigma": 2.0, "sigma_1": 3.0, "spacing": (2.0, 0.8, 1.0), "classes": True},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_in_memory(case):
    labels, chunks, kwargs = CASES[case]
    kwargs = dict(kwargs)
    extra = {}
    if kwargs.pop("classes", False):
        extra["classes"] = classes_of(labels)
    if kwargs.pop("ignore", False):
        ignore = np.zeros(labels.shape, bool)
        ignore[..., 2:5] = True
        extra["ignore_mask"] = ignore
    x = da.from_array(labels, chunks=chunks)
    lazy = chunked_falk(
        x, **{k: da.from_array(v, chunks=chunks) for k, v in extra.items()}, **kwargs
    )
    assert lazy.chunks == x.chunks
    expected = unet_weight_map_falk(labels, **extra, **kwargs)
    np.testing.assert_array_equal(lazy.compute(), expected)


def test_random_chunkings():
    rng = np.random.default_rng(3)
    expected = unet_weight_map_falk(DOTS_2D, sigma=2.0, sigma_1=8.0, v_bal=0.2)
    for _ in range(3):
        x = da.from_array(DOTS_2D, chunks=random_chunks(DOTS_2D.shape, rng))
        got = chunked_falk(x, sigma=2.0, sigma_1=8.0, v_bal=0.2).compute()
        np.testing.assert_array_equal(got, expected)


def test_halo_is_the_larger_reach():
    assert falk_halo(10.0, 5.0, 10.0, 0.1) == (54, 54)
    assert falk_halo(10.0, 5.0, 10.0, 1.0) == (28, 28)
    assert falk_halo(0.0, 5.0, 2.0, 0.5, (2.0, 1.0), ndim=2) == (7, 12)
    assert falk_halo(0.0, 5.0, 2.0, 1.0) == (0, 0)


def test_argument_errors():
    x = da.zeros((8, 8), dtype=np.int32, chunks=4)
    with pytest.raises(ValueError, match="v_bal"):
        chunked_falk(x, v_bal=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        chunked_falk(x, sigma_1=0.0)
    with pytest.raises(ValueError, match="classes shape"):
        chunked_falk(x, classes=np.ones((2, 2), int))
    with pytest.raises(TypeError, match="integer"):
        chunked_falk(x.astype(np.float32))
