"""The numpy U-Net transform (kernels/nearest.py): two nearest distinct instances.

Against one full scipy distance transform per instance; its slabs, and ids
at the ends of the integer range.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_instances, reference_two_nearest
from huge_ids import HUGE_2D, ranked
from scipy import ndimage as ndi

import weightmaps.kernels.nearest
from weightmaps import unet_weight_map
from weightmaps.kernels.nearest import nearest_two_instances


@pytest.mark.parametrize("shape", [(40, 50), (9, 20, 17)])
def test_nearest_two_instances_exact_distances(shape):
    labels = random_instances(shape, 12, seed=9)
    d1, l1, d2, l2 = nearest_two_instances(labels, spacing=[1.5, 1.0, 0.8][-len(shape) :])
    r1, r2 = reference_two_nearest(labels, spacing=[1.5, 1.0, 0.8][-len(shape) :])
    np.testing.assert_allclose(d1, r1, rtol=1e-6)
    np.testing.assert_allclose(d2, r2, rtol=1e-6)
    assert np.all(l1 != l2)
    assert np.all(l1 > 0) and np.all(l2 > 0)
    # Each reported label really lies at the reported distance.
    for label in np.unique(labels[labels > 0]):
        d = ndi.distance_transform_edt(labels != label, sampling=[1.5, 1.0, 0.8][-len(shape) :])
        np.testing.assert_allclose(d[l1 == label], d1[l1 == label], rtol=1e-6)
        np.testing.assert_allclose(d[l2 == label], d2[l2 == label], rtol=1e-6)


def test_nearest_two_instances_max_distance():
    labels = np.zeros((1, 30), np.int32)
    labels[0, 0] = 1
    labels[0, 29] = 2
    d1, l1, d2, l2 = nearest_two_instances(labels, max_distance=20)
    assert d1[0, 5] == 5 and l1[0, 5] == 1
    assert np.isinf(d2[0, 5]) and l2[0, 5] == 0
    assert d2[0, 15] == 15 and l2[0, 15] == 1


@pytest.mark.parametrize("shape", [(90, 40), (30, 20, 18)])
def test_slabs_give_the_same_map(monkeypatch, shape):
    """The last pass runs in slabs with halos; tiny slabs must change nothing."""
    labels = random_instances(shape, 20, seed=13)
    whole = unet_weight_map(labels, sigma=2.0)
    monkeypatch.setattr(weightmaps.kernels.nearest, "_BLOCK_PIXELS", 1)
    np.testing.assert_array_equal(unet_weight_map(labels, sigma=2.0), whole)
    d1, d2 = reference_two_nearest(labels)
    with np.errstate(invalid="ignore"):
        border = 10.0 * np.exp(-((d1 + d2) ** 2) / (2 * 2.0**2))
    border[~np.isfinite(d2) | (labels != 0)] = 0.0
    np.testing.assert_allclose(unet_weight_map(labels, sigma=2.0), 1.0 + border, atol=1e-5 * 10)


def test_nearest_two_instances_reports_the_original_ids():
    small = ranked(HUGE_2D)
    d1, l1, d2, l2 = nearest_two_instances(HUGE_2D)
    s1, k1, s2, k2 = nearest_two_instances(small)
    np.testing.assert_array_equal(d1, s1)
    np.testing.assert_array_equal(d2, s2)
    back = np.zeros(int(small.max()) + 1, np.uint64)
    back[small.ravel()] = HUGE_2D.ravel()
    assert l1.dtype == np.uint64
    np.testing.assert_array_equal(l1, back[k1])
    np.testing.assert_array_equal(l2, back[k2])
    # A mask without background: every pixel is its own nearest id.
    full = np.array([[2**64 - 1, 2**63, 3]], np.uint64)
    _, l1, _, l2 = nearest_two_instances(full)
    np.testing.assert_array_equal(l1, full)
    np.testing.assert_array_equal(l2, np.array([[2**63, 2**64 - 1, 2**63]], np.uint64))


# --- the row passes (SIMD, a row of pixels at a time) against the pixel passes -----


def reference_unet_map(labels, w0=10.0, sigma=5.0, spacing=None):
    """Ronneberger et al. eq. 2 from one scipy transform per instance."""
    d1, d2 = reference_two_nearest(labels, spacing)
    with np.errstate(invalid="ignore"):
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    border[~np.isfinite(d2) | (labels != 0)] = 0.0
    return 1.0 + border


def assert_matches_reference(labels, sigma=5.0, spacing=None):
    got = unet_weight_map(labels, sigma=sigma, spacing=spacing)
    want = reference_unet_map(labels, sigma=sigma, spacing=spacing)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * 10.0)


ROW_CASES = [
    # (shape, spacing, sigma): rows longer than one row of the kernel (512)
    # and than one block (1024), partial last rows, unit / power-of-two
    # spacing (float32 accumulators) and spacing whose squares are not exact
    # in float32 (float64 accumulators).
    ((40, 700), None, 4.0),
    ((12, 40, 60), None, 3.0),
    ((12, 40, 60), (2.0, 0.5, 1.0), 2.0),
    ((48, 60), (2.0, 0.7), 3.0),
    ((10, 30, 40), (1.0, 0.6, 0.1625), 1.5),
]


@pytest.mark.parametrize(("shape", "spacing", "sigma"), ROW_CASES)
def test_row_passes_give_the_bytes_of_the_pixel_passes(monkeypatch, shape, spacing, sigma):
    """The passes that take a row of pixels at a time against the
    pixel-at-a-time passes they replace: the same map, byte for byte."""
    import weightmaps.kernels.nearest

    labels = random_instances(shape, 30, seed=21)
    by_rows = unet_weight_map(labels, sigma=sigma, spacing=spacing)
    monkeypatch.setattr(weightmaps.kernels.nearest, "_MIN_ROW", 1 << 62)
    by_pixels = unet_weight_map(labels, sigma=sigma, spacing=spacing)
    np.testing.assert_array_equal(by_rows, by_pixels)
    assert_matches_reference(labels, sigma=sigma, spacing=spacing)


@pytest.mark.parametrize(("shape", "spacing", "sigma"), ROW_CASES[:3])
def test_row_passes_wide_labels_and_nearest_two(monkeypatch, shape, spacing, sigma):
    """int64 labels, and the uncapped transform (every window pass by rows)."""
    import weightmaps.kernels.nearest

    labels = random_instances(shape, 30, seed=22).astype(np.int64)
    labels[labels > 0] += 2**40
    by_rows = unet_weight_map(labels, sigma=sigma, spacing=spacing)
    pairs_by_rows = nearest_two_instances(labels, spacing=spacing)
    monkeypatch.setattr(weightmaps.kernels.nearest, "_MIN_ROW", 1 << 62)
    np.testing.assert_array_equal(by_rows, unet_weight_map(labels, sigma=sigma, spacing=spacing))
    d1, l1, d2, l2 = nearest_two_instances(labels, spacing=spacing)
    np.testing.assert_array_equal(pairs_by_rows[0], d1)
    np.testing.assert_array_equal(pairs_by_rows[2], d2)
    # Labels are the same wherever no other label ties at that distance.
    np.testing.assert_array_equal(pairs_by_rows[1][d1 < d2], l1[d1 < d2])
    r1, r2 = reference_two_nearest(labels, spacing)
    np.testing.assert_allclose(d1, r1, rtol=1e-6)
    np.testing.assert_allclose(d2, r2, rtol=1e-6)


def test_accumulator_is_float32_only_where_sums_are_exact():
    from weightmaps.kernels.nearest import _accumulator

    assert _accumulator(np.ones(3), 700.0).dtype == np.float32
    assert _accumulator(np.array([2.0, 0.5, 0.25]), 700.0).dtype == np.float32
    assert _accumulator(np.array([1.0, 0.6]), 700.0).dtype == np.float64
    # Sums past 2**24 are not exact in float32.
    assert _accumulator(np.ones(2), 2.0**24).dtype == np.float64
    assert _accumulator(np.array([0.5, 1.0]), 2.0**21).dtype == np.float64


def random_pairs(rng, shape, cap, n_labels):
    """Valid pass input: v1 <= v2 < cap, l1 != l2, missing = (cap, -1)."""
    v = rng.integers(0, int(cap) + 1, (2, *shape))
    # Some rows near sites throughout, so that they stop after an offset or two.
    near = rng.random((1, *shape[:-1], 1)) < 0.3
    v = np.sort(np.where(near, v % 3, v), axis=0).astype(np.float32)
    l1 = rng.integers(1, n_labels + 1, shape).astype(np.int32)
    l2 = (l1 + rng.integers(1, n_labels, shape)) % (n_labels + 1)
    l2 = np.where(l2 == 0, n_labels + 1, l2).astype(np.int32)
    missing1 = v[0] >= cap
    missing2 = v[1] >= cap
    l1[missing1] = -1
    l2[missing2] = -1
    # And some lines with no site at all, which the row passes skip.
    empty = np.broadcast_to(rng.random((*shape[:-1], 1)) < 0.3, shape)
    v[:, empty] = cap
    l1[empty] = -1
    l2[empty] = -1
    return v[0], l1, v[1], l2


@pytest.mark.parametrize("inner", [16, 23, 600])
def test_row_kernels_against_pixel_kernels_on_random_pairs(inner):
    """Any valid pairs, not only those a scan produces: short and long rows,
    many rows stopping at the first offsets."""
    from weightmaps.kernels import _nearest_nb as kernels

    rng = np.random.default_rng(inner)
    for cap, step2, acc in [
        (9.0, 1.0, np.float32),
        (50.0, 0.25, np.float64),
        (30.0, 2.0, np.float32),
    ]:
        shape = (3, 25, inner)
        iv = random_pairs(rng, shape, cap, 5)
        by_pixels = [np.empty(shape, a.dtype) for a in iv]
        by_rows = [np.empty(shape, a.dtype) for a in iv]
        kernels.window_pass(*iv, *by_pixels, step2)
        kernels.window_pass_rows(*iv, *by_rows, step2, np.empty(0, acc))
        np.testing.assert_array_equal(by_rows[0], by_pixels[0])
        np.testing.assert_array_equal(by_rows[2], by_pixels[2])
        labels = (rng.random(shape) < 0.2).astype(np.int32)
        out_pixels = np.ones(shape, np.float32)
        out_rows = np.ones(shape, np.float32)
        args = (0, shape[1], step2, 10.0, 1 / 8.0, float(np.sqrt(cap)))
        kernels.border_pass(labels, *iv, out_pixels, *args)
        kernels.border_pass_rows(labels, *iv, out_rows, *args, np.empty(0, acc))
        np.testing.assert_array_equal(out_rows, out_pixels)
        assert np.any(out_rows > 1)
