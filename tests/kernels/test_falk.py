"""Falk et al.'s U-Net weight against a direct per-instance implementation.

Oracle: the plugin's loop written out - per class, one full distance
transform per instance with a running two smallest, then the formula in
float64 on background pixels - and, for the plain case, the library's own
``unet_weight_map`` byte for byte. Runs on every backend that has the
kernel: numpy only, for now.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import random_instances
from kernel_backends import backend_fixture
from scipy import ndimage as ndi

from weightmaps import separate_instances, unet_weight_map

backend = backend_fixture("unet_weight_map_falk")


def reference_falk(
    instances,
    classes=None,
    *,
    w0=10.0,
    sigma=5.0,
    sigma_1=10.0,
    v_bal=0.1,
    class_weights=None,
    spacing=None,
    ignore_mask=None,
) -> np.ndarray:
    instances = np.asarray(instances)
    foreground = instances != 0
    if classes is None:
        classes = foreground.astype(int)
    classes = np.where(foreground, classes, 0)
    extra = np.zeros(instances.shape)
    for c in np.unique(classes[foreground]):
        d1 = np.full(instances.shape, np.inf)
        d2 = np.full(instances.shape, np.inf)
        for i in np.unique(instances[classes == c]):
            d = ndi.distance_transform_edt(~((instances == i) & (classes == c)), sampling=spacing)
            d2 = np.where(d < d1, d1, np.minimum(d2, d))
            d1 = np.minimum(d1, d)
        with np.errstate(invalid="ignore"):
            extra += w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
            extra += (1 - v_bal) * np.exp(-(d1**2) / (2 * sigma_1**2))
    w = np.where(foreground, 1.0, v_bal + extra)
    for c, weight in (class_weights or {}).items():
        w[foreground & (classes == c)] = weight
    if ignore_mask is not None:
        w[ignore_mask] = 0
    return w


def tolerance(w0, v_bal, n_classes) -> float:
    return 1e-5 * (w0 + abs(1 - v_bal)) * n_classes + 1e-5


def test_hand_computed_pixel(backend):
    labels = np.array([[1, 0, 2, 0, 0]])
    w = backend.unet_weight_map_falk(labels, w0=10, sigma=5, sigma_1=10, v_bal=0.1)
    # pixel 1: d1 = d2 = 1; pixel 4: d1 = 2, d2 = 4
    assert w[0, 1] == pytest.approx(0.1 + 10 * math.exp(-4 / 50) + 0.9 * math.exp(-1 / 200))
    assert w[0, 4] == pytest.approx(0.1 + 10 * math.exp(-36 / 50) + 0.9 * math.exp(-4 / 200))
    assert w[0, 0] == w[0, 2] == 1.0


@pytest.mark.parametrize("v_bal", [0.1, 0.5, 2.0])
def test_one_class_matches_reference(backend, v_bal):
    labels = random_instances((60, 70), 25, radius=(2.0, 6.0), seed=1)
    got = backend.unet_weight_map_falk(labels, v_bal=v_bal)
    assert got.dtype == np.float32
    np.testing.assert_allclose(
        got, reference_falk(labels, v_bal=v_bal), rtol=0, atol=tolerance(10, v_bal, 1)
    )


def test_classes_are_separate(backend):
    """Two classes: borders only between instances of one class, both terms summed."""
    labels = random_instances((64, 64), 30, radius=(2.0, 6.0), seed=2, ids=np.arange(3, 200, 6))
    labels = separate_instances(labels)
    classes = np.where(labels > 0, (labels // 6) % 2 + 1, 0)
    kwargs = {"w0": 8.0, "sigma": 4.0, "sigma_1": 6.0, "v_bal": 0.2}
    got = backend.unet_weight_map_falk(labels, classes=classes, **kwargs)
    expected = reference_falk(labels, classes, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance(8.0, 0.2, 2))
    # not the one-class map: borders across classes are not counted
    one = backend.unet_weight_map_falk(labels, **kwargs)
    assert np.abs(one - got).max() > 1.0


def test_classes_with_one_instance_and_foreground_weights(backend):
    labels = np.zeros((30, 40), np.int32)
    labels[5:10, 5:10] = 1
    labels[5:10, 14:19] = 2
    labels[20:25, 10:15] = 3  # alone in its class: no border term, only the fall
    classes = np.where(labels == 3, 2, 1) * (labels > 0)
    ignore = np.zeros(labels.shape, bool)
    ignore[0, :] = True
    kwargs = {"class_weights": {1: 2.0, 2: 3.5}, "ignore_mask": ignore, "v_bal": 0.3}
    got = backend.unet_weight_map_falk(labels, classes=classes, **kwargs)
    np.testing.assert_allclose(
        got, reference_falk(labels, classes, **kwargs), rtol=0, atol=tolerance(10, 0.3, 2)
    )
    assert set(np.unique(got[labels > 0]).tolist()) == {2.0, 3.5}
    assert not got[0].any()


@pytest.mark.parametrize("spacing", [(2.0, 1.0, 1.0), (1.0, 0.5, 0.75)])
def test_3d_anisotropic(backend, spacing):
    labels = random_instances((12, 22, 20), 10, radius=(2.0, 5.0), seed=3)
    kwargs = {"sigma": 3.0, "sigma_1": 4.0, "spacing": spacing}
    np.testing.assert_allclose(
        backend.unet_weight_map_falk(labels, **kwargs),
        reference_falk(labels, **kwargs),
        rtol=0,
        atol=tolerance(10, 0.1, 1),
    )


@pytest.mark.parametrize("seed", [0, 4])
def test_v_bal_one_is_the_unet_map_byte_for_byte(backend, seed):
    labels = random_instances((80, 66), 40, radius=(2.0, 7.0), seed=seed)
    ignore = np.zeros(labels.shape, bool)
    ignore[:3] = True
    for kwargs in (
        {},
        {"w0": 5.0, "sigma": 3.0},
        {"class_weights": {1: 2.5}, "ignore_mask": ignore},
        {"spacing": (1.0, 0.6)},
    ):
        unet_kwargs = dict(kwargs)
        if "class_weights" in kwargs:
            unet_kwargs["class_weights"] = {0: 1.0, **kwargs["class_weights"]}
        expected = unet_weight_map(labels, **unet_kwargs)
        got = backend.unet_weight_map_falk(labels, v_bal=1.0, **kwargs)
        assert got.tobytes() == expected.tobytes(), kwargs
    volume = random_instances((10, 18, 16), 8, seed=seed)
    assert (
        backend.unet_weight_map_falk(volume, v_bal=1.0).tobytes()
        == unet_weight_map(volume).tobytes()
    )


def test_no_instances_is_v_bal_everywhere(backend):
    w = backend.unet_weight_map_falk(np.zeros((4, 5), np.int32), v_bal=0.25)
    np.testing.assert_array_equal(w, np.float32(0.25))


def test_input_checks(backend):
    labels = np.array([[1, 0, 2]])
    with pytest.raises(ValueError, match="v_bal"):
        backend.unet_weight_map_falk(labels, v_bal=-0.1)
    with pytest.raises(ValueError, match="sigma_1"):
        backend.unet_weight_map_falk(labels, sigma_1=0)
    with pytest.raises(ValueError, match="background's is v_bal"):
        backend.unet_weight_map_falk(labels, class_weights={0: 2.0})
    with pytest.raises(ValueError, match="class id >= 1"):
        backend.unet_weight_map_falk(labels, classes=np.array([[1, 0, 0]]))
    with pytest.raises(ValueError, match="classes shape"):
        backend.unet_weight_map_falk(labels, classes=np.ones((2, 3), int))
    with pytest.raises(TypeError, match="integer label"):
        backend.unet_weight_map_falk(labels.astype(float))
    with pytest.raises(ValueError, match="ignore_mask shape"):
        backend.unet_weight_map_falk(labels, ignore_mask=np.zeros((1, 2), bool))
