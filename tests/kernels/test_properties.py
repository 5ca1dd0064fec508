"""Properties every map keeps on every backend, on random masks drawn by hypothesis."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from kernel_backends import backend_fixture

backend = backend_fixture("unet_weight_map", "edge_weight_map", "balance_weight_map")

SETTINGS = settings(max_examples=40, deadline=None)

# Small label images with a few ids, so instances often touch and repeat.
labels_2d = arrays(
    np.int32,
    st.tuples(st.integers(1, 14), st.integers(1, 14)),
    elements=st.sampled_from([0, 0, 0, 1, 2, 7]),
)
labels_3d = arrays(
    np.uint16,
    st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 8)),
    elements=st.sampled_from([0, 0, 3, 9]),
)
any_labels = st.one_of(labels_2d, labels_3d)


def all_maps(backend, labels):
    return {
        "unet": backend.unet_weight_map(labels, w0=10.0, sigma=2.0),
        "unet_wc": backend.unet_weight_map(
            labels, w0=10.0, sigma=2.0, class_weights={0: 0.5, 1: 2.0}
        ),
        "edge": backend.edge_weight_map(labels, kernel_size=5),
        "balance": backend.balance_weight_map(labels),
    }


@SETTINGS
@given(any_labels)
def test_float32_and_inputs_not_modified(backend, labels):
    before = labels.copy()
    for m in all_maps(backend, labels).values():
        assert m.dtype == np.float32 and m.shape == labels.shape
        assert np.all(np.isfinite(m))
    np.testing.assert_array_equal(labels, before)


@SETTINGS
@given(any_labels)
def test_weights_at_least_class_weight(backend, labels):
    maps = all_maps(backend, labels)
    assert np.all(maps["unet"] >= 1.0)
    assert np.all(maps["unet"][labels > 0] == 1.0)
    wc = np.where(labels > 0, 2.0, 0.5)
    assert np.all(maps["unet_wc"] >= wc)
    assert np.all(maps["edge"] >= 1.0)
    assert np.all(maps["balance"] > 0)


@SETTINGS
@given(any_labels, st.data())
def test_commute_with_flips(backend, labels, data):
    axis = data.draw(st.integers(0, labels.ndim - 1))
    maps = all_maps(backend, labels)
    flipped = all_maps(backend, np.flip(labels, axis))
    for name in maps:
        np.testing.assert_allclose(
            flipped[name], np.flip(maps[name], axis), atol=1e-5, err_msg=name
        )


@SETTINGS
@given(any_labels, st.data())
def test_commute_with_transposes(backend, labels, data):
    order = data.draw(st.permutations(range(labels.ndim)))
    maps = all_maps(backend, labels)
    moved = all_maps(backend, np.transpose(labels, order))
    for name in maps:
        np.testing.assert_allclose(
            moved[name], np.transpose(maps[name], order), atol=1e-5, err_msg=name
        )


@SETTINGS
@given(labels_2d)
def test_unet_invariant_to_relabelling(backend, labels):
    ids = np.unique(labels)
    permuted = np.zeros_like(labels)
    new_ids = np.random.default_rng(0).permutation(np.arange(1, 1000))[: len(ids)]
    for old, new in zip(ids, new_ids, strict=True):
        permuted[labels == old] = 0 if old == 0 else new
    np.testing.assert_allclose(
        backend.unet_weight_map(permuted, sigma=2.0),
        backend.unet_weight_map(labels, sigma=2.0),
        atol=1e-6,
    )
