"""What only the torch distance maps do: their transform against scipy's, batches, devices.

The maps themselves are tested on every backend in ``test_sdf.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_instances
from kernel_backends import device_fixture
from scipy import ndimage as ndi

from weightmaps.kernels.sdf import boundary_distance_map, class_ids, signed_distance_map
from weightmaps.kernels.sdf_torch import (
    boundary_distance_map_torch_batch,
    distance_transform_edt_torch,
    distance_transform_edt_torch_batch,
    signed_distance_map_torch,
    signed_distance_map_torch_batch,
)

device = device_fixture()


def semantic(shape, n_classes=4, seed=0) -> np.ndarray:
    """Class ids from overlapping balls: classes touch each other and the edge."""
    inst = random_instances(shape, 3 * n_classes, radius=(2.0, 9.0), seed=seed)
    return np.where(inst > 0, (inst - 1) % n_classes + 1, 0).astype(np.uint8)


def assert_float32_equal(actual, expected, *, rtol=2e-7) -> None:
    """Equal to float32 rounding: a float64 result rounded once, or one ulp off."""
    actual = np.asarray(actual, np.float32)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-6)


# ----------------------------------------------------------------------------
# The transform
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
# Batches, devices, numpy inputs
# ----------------------------------------------------------------------------


def test_batch_is_the_stack_of_masks(device):
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


def test_numpy_input_on_a_device(device):
    labels = semantic((40, 53), seed=2)
    labels[0, 0] = 255
    expected = signed_distance_map(labels, ignore_index=255)
    got = signed_distance_map_torch(labels, ignore_index=255, device=device)
    assert got.dtype == torch.float32 and got.device.type == device
    np.testing.assert_array_equal(got.cpu().numpy(), expected)


def test_boundary_distance_map_batch(device):
    labels = semantic((36, 29), seed=9)
    classes = class_ids(labels)
    batch = np.stack([labels, np.zeros_like(labels)])
    got = boundary_distance_map_torch_batch(batch, classes=classes, device=device).cpu()
    np.testing.assert_array_equal(got[0].numpy(), boundary_distance_map(labels, classes=classes))
    assert not got[1].any()


def test_input_checks():
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
