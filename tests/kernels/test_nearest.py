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
