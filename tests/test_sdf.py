"""Signed and boundary distance maps, numpy and torch, against the formula with scipy.

Oracle: Kervadec's ``one_hot2dist`` written out per class on the whole array
in float64 (``EDT(~S) * ~S - (EDT(S) - 1) * S``), and MONAI's distance field
``EDT(S) + EDT(~S)``; the torch transform against
``scipy.ndimage.distance_transform_edt`` itself.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import blobs, random_instances
from scipy import ndimage as ndi

from weightmaps.kernels.sdf import boundary_distance_map, class_ids, sdf_halo, signed_distance_map
from weightmaps.kernels.sdf_torch import (
    boundary_distance_map_torch,
    boundary_distance_map_torch_batch,
    distance_transform_edt_torch,
    distance_transform_edt_torch_batch,
    signed_distance_map_torch,
    signed_distance_map_torch_batch,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


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


# ----------------------------------------------------------------------------
# numpy
# ----------------------------------------------------------------------------


def test_hand_computed_line():
    phi = signed_distance_map(np.array([[0, 0, 1, 1, 1, 1, 1, 0]]), classes=(1,))
    # outside: distance to the class; inside: 1 - distance to the outside.
    assert phi[0, 0].tolist() == [2, 1, 0, -1, -2, -1, 0, 1]


@pytest.mark.parametrize("shape", [(40, 53), (12, 17, 15)])
@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 1.25)])
def test_semantic_matches_formula(shape, spacing):
    labels = semantic(shape, seed=len(shape))
    sp = None if spacing is None else spacing[: len(shape)]
    classes = class_ids(labels)
    assert classes == sorted(set(np.unique(labels).tolist()) - {0})
    phi = signed_distance_map(labels, spacing=sp)
    assert phi.dtype == np.float32 and phi.shape == (len(classes), *shape)
    np.testing.assert_array_equal(phi, reference_sdf(labels, classes, sp))


def test_binary_foreground_classes_one():
    mask = blobs((64, 48), seed=3)
    phi = signed_distance_map(mask, classes=(1,))
    np.testing.assert_array_equal(phi, reference_sdf(mask.astype(int), [1]))
    # bool in: the same as 0/1 ints; default classes = (1,)
    np.testing.assert_array_equal(signed_distance_map(mask), phi)


def test_small_objects_use_their_box_but_see_the_edge():
    """The inside transform runs on the class's grown box: objects on the
    array's edge and in a corner must still match the whole-array formula."""
    labels = np.zeros((30, 30), np.uint8)
    labels[0:5, 10:20] = 1  # on the top edge
    labels[25:30, 25:30] = 2  # in a corner
    labels[12:15, 3:4] = 3  # a thin bar
    np.testing.assert_array_equal(signed_distance_map(labels), reference_sdf(labels, [1, 2, 3]))


def test_absent_full_and_ignored():
    labels = np.array([[1, 1, 255], [1, 1, 1]])
    phi = signed_distance_map(labels, classes=(1, 2, 3), ignore_index=255)
    np.testing.assert_array_equal(phi[1:], 0)  # absent classes
    np.testing.assert_array_equal(phi[0], reference_sdf(labels, [1], ignore_index=255)[0])
    assert phi[0, 0, 2] == 0  # ignored pixel
    assert phi[0, 0, 1] == 0  # next to the ignored pixel: on the contour
    full = signed_distance_map(np.ones((4, 5), np.uint8), classes=(1,))
    np.testing.assert_array_equal(full, 0)
    with pytest.raises(ValueError, match="ignore value"):
        signed_distance_map(labels, classes=(1, 255), ignore_index=255)
    with pytest.raises(TypeError, match="integer or boolean"):
        signed_distance_map(np.zeros((3, 3), np.float32))


def test_no_class_present_gives_no_maps():
    assert signed_distance_map(np.zeros((4, 4), np.uint8)).shape == (0, 4, 4)


def test_boundary_distance_map_matches_monai_field():
    labels = semantic((33, 41), seed=5)
    classes = class_ids(labels)
    np.testing.assert_array_equal(boundary_distance_map(labels), reference_field(labels, classes))
    sp = (1.5, 0.75)
    np.testing.assert_array_equal(
        boundary_distance_map(labels, spacing=sp), reference_field(labels, classes, sp)
    )
    # outside |phi|, inside |phi| + 1 (unit spacing)
    phi = signed_distance_map(labels)
    inside = np.stack([labels == c for c in classes])
    np.testing.assert_array_equal(boundary_distance_map(labels), np.abs(phi) + inside)


@pytest.mark.parametrize("radius", [1.0, 3.5, 8.0])
def test_max_distance_is_the_clipped_map(radius):
    labels = semantic((50, 37), seed=2)
    full = signed_distance_map(labels, spacing=(1.0, 0.7))
    clipped = signed_distance_map(labels, spacing=(1.0, 0.7), max_distance=radius)
    np.testing.assert_array_equal(clipped, np.clip(full, -radius, radius))


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


@pytest.mark.parametrize("radius,spacing", [(3.0, None), (5.5, (2.0, 1.0, 0.8))])
def test_blocks_grown_by_the_halo_give_the_whole_map(radius, spacing):
    """A halo of sdf_halo(R) makes each block's clipped map exact, including
    blocks where a class is absent or that a class fills."""
    labels = semantic((24, 30, 28), n_classes=3, seed=7)
    labels[:, :12, :12] = 2  # a class filling some blocks entirely
    classes = class_ids(labels)
    expected = np.clip(signed_distance_map(labels, spacing=spacing), -radius, radius)
    halo = sdf_halo(radius, spacing, ndim=3)
    got = blockwise(
        signed_distance_map,
        labels,
        (8, 10, 9),
        halo,
        classes=classes,
        spacing=spacing,
        max_distance=radius,
        block=True,
    )
    np.testing.assert_array_equal(got, expected)


def test_a_halo_one_pixel_short_is_not_enough():
    """R = 3: a pixel 3 inside a class from its edge has phi = -2, unclipped;
    when the edge lies across the block boundary the block must reach it."""
    labels = np.zeros((1, 16), np.uint8)
    labels[0, 6:] = 1  # the pixel at 8, first of its block, is 3 from the outside one at 5
    assert sdf_halo(3.0) == (3, 3)
    expected = np.clip(signed_distance_map(labels, classes=(1,)), -3, 3)
    assert expected[0, 0, 8] == -2
    kwargs = {"classes": (1,), "max_distance": 3.0, "block": True}
    got = blockwise(signed_distance_map, labels, (1, 8), (0, 3), **kwargs)
    np.testing.assert_array_equal(got, expected)
    short = blockwise(signed_distance_map, labels, (1, 8), (0, 2), **kwargs)
    assert short[0, 0, 8] == -3


def test_block_needs_max_distance():
    with pytest.raises(ValueError, match="max_distance"):
        signed_distance_map(np.ones((3, 3), np.uint8), block=True)
    with pytest.raises(ValueError, match="max_distance"):
        signed_distance_map(np.ones((3, 3), np.uint8), max_distance=-1.0)


# ----------------------------------------------------------------------------
# torch: the transform
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,density,spacing",
    [
        ((1,), 0.5, None),
        ((57,), 0.05, None),
        ((31, 47), 0.02, None),
        ((31, 47), 0.5, None),
        ((40, 40), 0.001, None),
        ((23, 35), 0.05, (2.0, 0.6)),
        ((9, 14, 11), 0.03, None),
        ((9, 14, 11), 0.1, (3.0, 1.0, 0.5)),
        ((5, 70, 3), 0.01, None),
    ],
)
def test_edt_matches_scipy(shape, density, spacing, device):
    rng = np.random.default_rng(len(shape) * 100 + int(density * 1000))
    masks = rng.random((3, *shape)) >= density  # False pixels are the sites
    got = distance_transform_edt_torch_batch(masks, spacing=spacing, device=device)
    assert got.dtype == torch.float32 and got.device.type == device
    for b in range(3):
        if masks[b].all():
            continue
        assert_float32_equal(got[b].cpu(), ndi.distance_transform_edt(masks[b], sampling=spacing))


def test_edt_single_site_far_corner():
    """The pass must reach the whole image when the only site is far away."""
    mask = np.ones((60, 45), bool)
    mask[59, 44] = False
    np.testing.assert_array_equal(
        distance_transform_edt_torch(mask).numpy(),
        ndi.distance_transform_edt(mask).astype(np.float32),
    )


def test_edt_empty_rows_and_slabs():
    """Lines and whole slabs without sites must not stop or fool the passes."""
    mask = np.ones((7, 30, 20), bool)
    mask[3, 2, 5] = False
    mask[3, 27, 19] = False
    np.testing.assert_array_equal(
        distance_transform_edt_torch(mask).numpy(),
        ndi.distance_transform_edt(mask).astype(np.float32),
    )


def test_edt_without_sites_is_inf():
    out = distance_transform_edt_torch_batch(np.stack([np.ones((3, 4), bool), np.eye(3, 4) == 0]))
    assert torch.isinf(out[0]).all()
    assert torch.isfinite(out[1]).all()


@pytest.mark.parametrize("radius", [1.0, 2.5, 6.0])
def test_edt_max_distance_is_exact_within(radius):
    rng = np.random.default_rng(4)
    masks = rng.random((2, 40, 33)) > 0.004
    sp = (1.0, 1.3)
    got = distance_transform_edt_torch_batch(masks, spacing=sp, max_distance=radius).numpy()
    for b in range(2):
        expected = np.minimum(ndi.distance_transform_edt(masks[b], sampling=sp), radius)
        assert_float32_equal(got[b], expected)


# ----------------------------------------------------------------------------
# torch: the maps
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 53), (12, 17, 15)])
@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 1.25)])
def test_torch_sdf_matches_numpy(shape, spacing, device):
    labels = semantic(shape, seed=len(shape))
    labels[0, 0] = 255
    sp = None if spacing is None else spacing[: len(shape)]
    expected = signed_distance_map(labels, spacing=sp, ignore_index=255)
    got = signed_distance_map_torch(labels, spacing=sp, ignore_index=255, device=device)
    assert got.dtype == torch.float32 and got.device.type == device
    assert_float32_equal(got.cpu(), expected)
    if spacing is None:  # whole-number squared distances: the same float64 result
        np.testing.assert_array_equal(got.cpu().numpy(), expected)


def test_torch_batch_is_the_stack_of_masks(device):
    labels = np.stack([semantic((30, 26), seed=s) for s in range(3)])
    labels[1] = 0  # no class: every map 0
    labels[2] = 2  # one class fills it
    classes = [1, 2, 3, 4]
    got = signed_distance_map_torch_batch(labels, classes=classes, device=device).cpu()
    for b in range(3):
        np.testing.assert_array_equal(
            got[b].numpy(), signed_distance_map(labels[b], classes=classes)
        )
    # default classes: those of the whole batch
    assert signed_distance_map_torch_batch(labels).shape[1] == len(class_ids(labels))


@pytest.mark.parametrize("radius", [2.0, 4.5])
def test_torch_max_distance_and_blocks(radius, device):
    labels = semantic((20, 26, 24), n_classes=3, seed=11)
    labels[:, :10, :10] = 1
    sp = (1.5, 1.0, 1.0)
    expected = np.clip(signed_distance_map(labels, spacing=sp), -radius, radius)
    got = signed_distance_map_torch(labels, spacing=sp, max_distance=radius, device=device)
    assert_float32_equal(got.cpu(), expected)

    def on_device(part, **kwargs):
        return signed_distance_map_torch(part, device=device, **kwargs).cpu()

    got_blocks = blockwise(
        on_device,
        labels,
        (7, 9, 8),
        sdf_halo(radius, sp, ndim=3),
        classes=class_ids(labels),
        spacing=sp,
        max_distance=radius,
        block=True,
    )
    assert_float32_equal(got_blocks, expected)


def test_torch_boundary_distance_map(device):
    labels = semantic((36, 29), seed=9)
    classes = class_ids(labels)
    got = boundary_distance_map_torch(labels, device=device).cpu().numpy()
    np.testing.assert_array_equal(got, reference_field(labels, classes))
    batch = np.stack([labels, np.zeros_like(labels)])
    got = boundary_distance_map_torch_batch(batch, classes=classes, device=device).cpu()
    np.testing.assert_array_equal(got[0].numpy(), reference_field(labels, classes))
    assert not got[1].any()


def test_torch_input_checks():
    with pytest.raises(TypeError, match="integer or boolean"):
        signed_distance_map_torch(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(B, \*spatial\)"):
        signed_distance_map_torch_batch(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="max_distance"):
        signed_distance_map_torch(np.ones((3, 3), np.uint8), block=True)
    # uint16 masks are widened
    labels = semantic((20, 20), seed=1).astype(np.uint16)
    np.testing.assert_array_equal(
        signed_distance_map_torch(labels).numpy(), signed_distance_map(labels)
    )
