"""What only the dask U-Net twin does: chunkings, halos, global counts, schedulers.

The map itself is tested on every backend in ``test_unet.py``; here each
case brings its own chunking (thinner than the halo, uneven, one-pixel).
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_backends import synchronous_dask_fixture

import weightmaps as wm

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
chunked = pytest.importorskip("weightmaps.chunked")
from dask_cases import DOTS_2D, DOTS_3D, LABELS_2D, LABELS_3D, compare  # noqa: E402

synchronous_scheduler = synchronous_dask_fixture()


def test_halo_depth_follows_the_cutoff_and_spacing():
    cutoff = wm.border_cutoff(2.0)
    assert chunked.halo_depth(2.0, (2.0, 1.0, 0.5), ndim=3) == tuple(
        int(np.ceil(cutoff / s)) + 1 for s in (2.0, 1.0, 0.5)
    )


UNET_CASES = {
    # sigma 5: halo 28 spans four chunks of 7 (merged for the computation).
    "2d-halo-over-several-chunks": (LABELS_2D, 7, dict(w0=10.0, sigma=5.0)),
    "2d-odd-chunks": (LABELS_2D, (9, 13), dict(w0=7.0, sigma=2.0)),
    "2d-uneven-chunks": (LABELS_2D, ((30, 1, 40, 19), (7, 50, 20)), dict(sigma=2.5)),
    "2d-anisotropic": (LABELS_2D, (11, 5), dict(sigma=2.0, spacing=(0.7, 1.6))),
    "3d": (LABELS_3D, (6, 10, 9), dict(sigma=2.0)),
    "3d-anisotropic": (LABELS_3D, (5, 7, 6), dict(sigma=1.5, spacing=(2.0, 1.0, 0.8))),
    "2d-dots": (DOTS_2D, (9, 13), dict(sigma=2.5)),
    "3d-dots-anisotropic": (DOTS_3D, (5, 7, 6), dict(sigma=2.0, spacing=(2.0, 1.0, 0.8))),
    # sigma 5 on 24 slices: axis 0 stays one chunk, needing no halo.
    "3d-axis-shorter-than-halo": (LABELS_3D, (8, 16, 16), dict(sigma=5.0)),
    "no-border-term": (LABELS_2D, 10, dict(w0=0.0)),
}


@pytest.mark.parametrize("case", list(UNET_CASES))
def test_equals_in_memory(case):
    labels, chunks, kwargs = UNET_CASES[case]
    x = da.from_array(labels, chunks=chunks)
    w0 = kwargs.get("w0", 10.0)
    compare(
        chunked.unet_weight_map(x, **kwargs),
        x,
        wm.unet_weight_map(labels, **kwargs),
        atol=1e-6 * w0,
    )


def test_ignore_mask_chunked_otherwise_and_balanced_class_weights():
    labels = LABELS_3D
    rng = np.random.default_rng(3)
    ignore = rng.random(labels.shape) < 0.1
    x = da.from_array(labels, chunks=(7, 9, 11))
    # The ignore mask may come chunked differently: it follows the labels.
    ign = da.from_array(ignore, chunks=(5, 20, 13))
    expected = wm.unet_weight_map(labels, sigma=2.0, class_weights="balanced", ignore_mask=ignore)
    got = chunked.unet_weight_map(x, sigma=2.0, class_weights="balanced", ignore_mask=ign)
    compare(got, x, expected, atol=1e-5)
    assert (got.compute()[ignore] == 0).all()


def test_explicit_class_weights_with_numpy_ignore_mask():
    labels = LABELS_2D
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :5] = True  # along the volume edge
    x = da.from_array(labels, chunks=(8, 12))
    kwargs = dict(sigma=3.0, class_weights={0: 0.5, 1: 2.0}, ignore_mask=ignore)
    compare(
        chunked.unet_weight_map(x, **kwargs), x, wm.unet_weight_map(labels, **kwargs), atol=1e-5
    )


def test_balanced_counts_the_whole_volume():
    # One chunk is all background: its own counts would give it weight 1.
    labels = np.zeros((40, 40), np.int32)
    labels[25:30, 5:10] = 3
    labels[25:30, 12:20] = 9
    x = da.from_array(labels, chunks=20)
    compare(
        chunked.unet_weight_map(x, class_weights="balanced"),
        x,
        wm.unet_weight_map(labels, class_weights="balanced"),
        atol=1e-5,
    )


def test_rejects_a_numpy_ignore_mask_of_another_shape():
    labels = da.zeros((8, 8), chunks=4).astype(np.int32)
    with pytest.raises(ValueError, match="ignore_mask shape"):
        chunked.unet_weight_map(labels, ignore_mask=np.zeros((8, 7), bool))


def test_separate_then_unet_across_chunks():
    x = da.from_array(LABELS_2D, chunks=(6, 9))
    carved = chunked.separate_instances(x)
    expected = wm.unet_weight_map(wm.separate_instances(LABELS_2D), sigma=2.0)
    compare(chunked.unet_weight_map(carved, sigma=2.0), x, expected, atol=1e-5)


def test_threaded_scheduler_gives_the_same_map():
    x = da.from_array(LABELS_2D, chunks=(9, 13))
    got = chunked.unet_weight_map(x, sigma=2.0).compute(scheduler="threads")
    np.testing.assert_allclose(got, wm.unet_weight_map(LABELS_2D, sigma=2.0), atol=1e-5)
