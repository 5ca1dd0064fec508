"""Signed and boundary distance maps on every backend, against the formula with scipy.

Oracle: Kervadec's ``one_hot2dist`` written out per class on the whole array
in float64 (``EDT(~S) * ~S - (EDT(S) - 1) * S``), and MONAI's distance field
``EDT(S) + EDT(~S)``. Backends: numpy and torch (CPU; CUDA under the ``gpu``
marker); there is no dask twin. The torch transform and batches:
``test_sdf_torch.py``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import blobs, random_instances
from kernel_backends import backend_fixture
from scipy import ndimage as ndi

from weightmaps.kernels.sdf import class_ids, sdf_halo, signed_distance_map

backend = backend_fixture("signed_distance_map", "boundary_distance_map")


def reference_sdf(labels, classes, spacing=None, ignore_index=None) -> np.ndarray:
    """The formula, per class, on the whole array (0 where S is empty or everything)."""
    out = []
    for c in classes:
        s = labels == c
        if not s.any() or s.all():
            out.append(np.zeros(labels.shape))
            continue
        phi = (
            ndi.distance_transform_edt(~s, sampling=spacing) * ~s
            - (ndi.distance_transform_edt(s, sampling=spacing) - 1) * s
        )
        if ignore_index is not None:
            phi[labels == ignore_index] = 0
        out.append(phi)
    return np.stack(out).astype(np.float32)


def reference_field(labels, classes, spacing=None) -> np.ndarray:
    """MONAI's ``distance_field``: EDT(fg) + EDT(bg) unless fg is empty or everything."""
    out = []
    for c in classes:
        fg = labels == c
        if fg.any() and not fg.all():
            out.append(
                ndi.distance_transform_edt(fg, sampling=spacing)
                + ndi.distance_transform_edt(~fg, sampling=spacing)
            )
        else:
            out.append(np.zeros(labels.shape))
    return np.stack(out).astype(np.float32)


def semantic(shape, n_classes=4, seed=0) -> np.ndarray:
    """Class ids from overlapping balls: classes touch each other and the edge."""
    inst = random_instances(shape, 3 * n_classes, radius=(2.0, 9.0), seed=seed)
    return np.where(inst > 0, (inst - 1) % n_classes + 1, 0).astype(np.uint8)


def assert_float32_equal(actual, expected, *, rtol=2e-7) -> None:
    """Equal to float32 rounding: a float64 result rounded once, or one ulp off."""
    actual = np.asarray(actual, np.float32)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-6)


def assert_same_map(backend, got, expected, spacing=None) -> None:
    """numpy rounds scipy's float64 result once: equal. Torch sums whole-number
    squared distances exactly (unit spacing): equal; else to float32 rounding."""
    assert got.dtype == np.float32
    if backend.is_numpy or spacing is None:
        np.testing.assert_array_equal(got, expected)
    else:
        assert_float32_equal(got, expected)


def blockwise(fn, labels, block_shape, halo, **kwargs) -> np.ndarray:
    """Run ``fn`` on every block grown by ``halo`` and keep each block's core."""
    out = None
    starts = [range(0, n, b) for n, b in zip(labels.shape, block_shape, strict=True)]
    for corner in itertools.product(*starts):
        core = tuple(
            slice(c, min(c + b, n))
            for c, b, n in zip(corner, block_shape, labels.shape, strict=True)
        )
        grown = tuple(
            slice(max(s.start - h, 0), min(s.stop + h, n))
            for s, h, n in zip(core, halo, labels.shape, strict=True)
        )
        part = np.asarray(fn(labels[grown], **kwargs))
        if out is None:
            out = np.zeros((part.shape[0], *labels.shape), np.float32)
        inner = tuple(
            slice(s.start - g.start, s.stop - g.start) for s, g in zip(core, grown, strict=True)
        )
        out[(slice(None), *core)] = part[(slice(None), *inner)]
    return out


def test_hand_computed_line(backend):
    phi = backend.signed_distance_map(np.array([[0, 0, 1, 1, 1, 1, 1, 0]]), classes=(1,))
    # outside: distance to the class; inside: 1 - distance to the outside.
    assert phi[0, 0].tolist() == [2, 1, 0, -1, -2, -1, 0, 1]


@pytest.mark.parametrize("shape", [(40, 53), (12, 17, 15)])
@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 1.25)])
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_semantic_matches_formula(backend, shape, spacing, ignore_index):
    labels = semantic(shape, seed=len(shape))
    if ignore_index is not None:
        labels[0, 0] = ignore_index
    sp = None if spacing is None else spacing[: len(shape)]
    classes = class_ids(labels, ignore_index=ignore_index)
    assert classes == sorted(set(np.unique(labels).tolist()) - {0, ignore_index})
    phi = backend.signed_distance_map(labels, spacing=sp, ignore_index=ignore_index)
    assert phi.dtype == np.float32 and phi.shape == (len(classes), *shape)
    assert_same_map(backend, phi, reference_sdf(labels, classes, sp, ignore_index), sp)


def test_binary_foreground_classes_one(backend):
    mask = blobs((64, 48), seed=3)
    phi = backend.signed_distance_map(mask, classes=(1,))
    assert_same_map(backend, phi, reference_sdf(mask.astype(int), [1]))
    # bool in: the same as 0/1 ints; default classes = (1,)
    np.testing.assert_array_equal(backend.signed_distance_map(mask), phi)


def test_small_objects_use_their_box_but_see_the_edge(backend):
    """The inside transform runs on the class's grown box: objects on the
    array's edge and in a corner must still match the whole-array formula."""
    labels = np.zeros((30, 30), np.uint8)
    labels[0:5, 10:20] = 1  # on the top edge
    labels[25:30, 25:30] = 2  # in a corner
    labels[12:15, 3:4] = 3  # a thin bar
    assert_same_map(backend, backend.signed_distance_map(labels), reference_sdf(labels, [1, 2, 3]))


def test_absent_full_and_ignored(backend):
    labels = np.array([[1, 1, 255], [1, 1, 1]])
    phi = backend.signed_distance_map(labels, classes=(1, 2, 3), ignore_index=255)
    np.testing.assert_array_equal(phi[1:], 0)  # absent classes
    np.testing.assert_array_equal(phi[0], reference_sdf(labels, [1], ignore_index=255)[0])
    assert phi[0, 0, 2] == 0  # ignored pixel
    assert phi[0, 0, 1] == 0  # next to the ignored pixel: on the contour
    full = backend.signed_distance_map(np.ones((4, 5), np.uint8), classes=(1,))
    np.testing.assert_array_equal(full, 0)
    with pytest.raises(ValueError, match="ignore value"):
        backend.signed_distance_map(labels, classes=(1, 255), ignore_index=255)
    with pytest.raises(TypeError, match="integer or boolean"):
        backend.signed_distance_map(np.zeros((3, 3), np.float32))


def test_no_class_present_gives_no_maps(backend):
    assert backend.signed_distance_map(np.zeros((4, 4), np.uint8)).shape == (0, 4, 4)


def test_boundary_distance_map_matches_monai_field(backend):
    labels = semantic((33, 41), seed=5)
    classes = class_ids(labels)
    assert_same_map(
        backend, backend.boundary_distance_map(labels), reference_field(labels, classes)
    )
    sp = (1.5, 0.75)
    assert_same_map(
        backend,
        backend.boundary_distance_map(labels, spacing=sp),
        reference_field(labels, classes, sp),
        sp,
    )
    # outside |phi|, inside |phi| + 1 (unit spacing)
    phi = backend.signed_distance_map(labels)
    inside = np.stack([labels == c for c in classes])
    np.testing.assert_array_equal(backend.boundary_distance_map(labels), np.abs(phi) + inside)
    labels = semantic((36, 29), seed=9)
    classes = class_ids(labels)
    assert_same_map(
        backend, backend.boundary_distance_map(labels), reference_field(labels, classes)
    )


@pytest.mark.parametrize("radius", [1.0, 3.5, 8.0])
def test_max_distance_is_the_clipped_map(backend, radius):
    labels = semantic((50, 37), seed=2)
    sp = (1.0, 0.7)
    full = signed_distance_map(labels, spacing=sp)
    clipped = backend.signed_distance_map(labels, spacing=sp, max_distance=radius)
    assert_same_map(backend, clipped, np.clip(full, -radius, radius), sp)


@pytest.mark.parametrize(
    ("shape", "radius", "spacing", "block_shape"),
    [
        ((24, 30, 28), 3.0, None, (8, 10, 9)),
        ((24, 30, 28), 5.5, (2.0, 1.0, 0.8), (8, 10, 9)),
        ((20, 26, 24), 2.0, (1.5, 1.0, 1.0), (7, 9, 8)),
        ((20, 26, 24), 4.5, (1.5, 1.0, 1.0), (7, 9, 8)),
    ],
)
def test_blocks_grown_by_the_halo_give_the_whole_map(backend, shape, radius, spacing, block_shape):
    """A halo of sdf_halo(R) makes each block's clipped map exact, including
    blocks where a class is absent or that a class fills."""
    if shape == (24, 30, 28):
        labels = semantic(shape, n_classes=3, seed=7)
        labels[:, :12, :12] = 2  # a class filling some blocks entirely
    else:
        labels = semantic(shape, n_classes=3, seed=11)
        labels[:, :10, :10] = 1
    classes = class_ids(labels)
    expected = np.clip(signed_distance_map(labels, spacing=spacing), -radius, radius)
    whole = backend.signed_distance_map(labels, spacing=spacing, max_distance=radius)
    assert_same_map(backend, whole, expected, spacing)
    halo = sdf_halo(radius, spacing, ndim=3)
    got = blockwise(
        backend.signed_distance_map,
        labels,
        block_shape,
        halo,
        classes=classes,
        spacing=spacing,
        max_distance=radius,
        block=True,
    )
    assert_same_map(backend, got, expected, spacing)


def test_a_halo_one_pixel_short_is_not_enough(backend):
    """R = 3: a pixel 3 inside a class from its edge has phi = -2, unclipped;
    when the edge lies across the block boundary the block must reach it."""
    labels = np.zeros((1, 16), np.uint8)
    labels[0, 6:] = 1  # the pixel at 8, first of its block, is 3 from the outside one at 5
    assert sdf_halo(3.0) == (3, 3)
    expected = np.clip(signed_distance_map(labels, classes=(1,)), -3, 3)
    assert expected[0, 0, 8] == -2
    kwargs = {"classes": (1,), "max_distance": 3.0, "block": True}
    got = blockwise(backend.signed_distance_map, labels, (1, 8), (0, 3), **kwargs)
    np.testing.assert_array_equal(got, expected)
    short = blockwise(backend.signed_distance_map, labels, (1, 8), (0, 2), **kwargs)
    assert short[0, 0, 8] == -3


def test_block_needs_max_distance(backend):
    with pytest.raises(ValueError, match="max_distance"):
        backend.signed_distance_map(np.ones((3, 3), np.uint8), block=True)
    with pytest.raises(ValueError, match="max_distance"):
        backend.signed_distance_map(np.ones((3, 3), np.uint8), max_distance=-1.0)


def test_uint16_masks(backend):
    labels = semantic((20, 20), seed=1).astype(np.uint16)
    np.testing.assert_array_equal(
        backend.signed_distance_map(labels), signed_distance_map(labels.astype(np.uint8))
    )
