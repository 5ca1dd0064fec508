"""What only the torch U-Net twin does: batches, memory budgets, devices, its transform.

The map itself is tested on every backend in ``test_unet.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_instances, reference_two_nearest
from huge_ids import HUGE_2D, HUGE_3D, SMALL_2D, huge, ranked
from kernel_backends import check_tensor, device_fixture, on
from scipy import ndimage as ndi

from weightmaps import unet_weight_map
from weightmaps.kernels.nearest import axis_order
from weightmaps.kernels.unet_torch import _pair_keys, _squared_distance
from weightmaps.torch_kernels import (
    BYTES_PER_PIXEL,
    unet_weight_map_torch,
    unet_weight_map_torch_batch,
)

device = device_fixture()

# These tests hand single volumes to the one-mask function on purpose.
VOLUMES_ON_PURPOSE = "ignore::weightmaps.torch_kernels.VolumeTensorWarning"


@pytest.mark.parametrize(
    "shape, spacing",
    [((40, 50), (1.0, 1.0)), ((40, 50), (1.5, 0.8)), ((9, 20, 17), (1.5, 1.0, 0.8))],
)
def test_pair_transform_equals_per_instance_reference(shape, spacing):
    """With a cut-off beyond the image the separable transform is the full one."""
    labels = random_instances(shape, 12, seed=9)
    spacing_ = np.asarray(spacing)
    reach_all = float(np.sqrt(np.sum((np.asarray(shape) * spacing_) ** 2))) + 1
    k1, k2 = _pair_keys(
        torch.from_numpy(labels).long()[None], spacing_, reach_all, axis_order(spacing_)
    )
    d1 = _squared_distance(k1)[0].double().sqrt().numpy()
    d2 = _squared_distance(k2)[0].double().sqrt().numpy()
    r1, r2 = reference_two_nearest(labels, spacing)
    np.testing.assert_allclose(d1, r1, rtol=1e-6)
    np.testing.assert_allclose(d2, r2, rtol=1e-6)
    l1 = (k1 & 0xFFFFFFFF)[0].numpy()
    l2 = (k2 & 0xFFFFFFFF)[0].numpy()
    assert np.all(l1 != l2) and np.all(l1 > 0) and np.all(l2 > 0)
    for label in np.unique(labels[labels > 0]):  # each label lies at its distance
        d = ndi.distance_transform_edt(labels != label, sampling=spacing)
        np.testing.assert_allclose(d[l1 == label], d1[l1 == label], rtol=1e-6)
        np.testing.assert_allclose(d[l2 == label], d2[l2 == label], rtol=1e-6)


def test_batch_equals_per_mask(device):
    masks = np.stack([random_instances((30, 34), 9, seed=s) for s in range(4)])
    masks[2] = 0  # an empty mask in the batch
    ignore = np.zeros(masks.shape, bool)
    ignore[1, :5] = True
    kwargs = dict(sigma=3.0, spacing=(1.2, 0.9), class_weights="balanced")
    got = unet_weight_map_torch_batch(on(masks, device), ignore_mask=on(ignore, device), **kwargs)
    assert got.shape == masks.shape and got.dtype == torch.float32
    for b in range(len(masks)):
        want = unet_weight_map(masks[b], ignore_mask=ignore[b], **kwargs)
        check_tensor(got[b], want, device, 1e-4)


@pytest.mark.filterwarnings(VOLUMES_ON_PURPOSE)
@pytest.mark.parametrize("shape", [(90, 40), (30, 20, 18)])
def test_groups_and_slabs_change_nothing(device, shape):
    masks = np.stack([random_instances(shape, 20, seed=13 + s) for s in range(3)])
    whole = unet_weight_map_torch_batch(on(masks, device), sigma=2.0)
    pixels = masks[0].size
    for budget in (2 * pixels, pixels // 2, 1):  # groups of 2, slabs, one-row slabs
        got = unet_weight_map_torch_batch(
            on(masks, device), sigma=2.0, max_bytes=budget * BYTES_PER_PIXEL["unet"]
        )
        torch.testing.assert_close(got, whole, rtol=0, atol=1e-6)
    single = unet_weight_map_torch(on(masks[0], device), sigma=2.0, max_bytes=1)
    torch.testing.assert_close(single, whole[0], rtol=0, atol=1e-6)


def test_numpy_input_and_device_keyword(device):
    labels = random_instances((24, 24), 5, seed=1).astype(np.uint16)
    got = unet_weight_map_torch(labels, device=device)
    check_tensor(got, unet_weight_map(labels), device, 1e-4)
    assert unet_weight_map_torch(labels).device.type == "cpu"
    assert unet_weight_map_torch(labels.astype(bool)).dtype == torch.float32


def test_rejects_numpy_inputs_and_a_batch_without_batch_axis():
    # The backend suite hands tensors over; numpy inputs take their own path.
    with pytest.raises(TypeError, match="label_instances"):
        unet_weight_map_torch(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="ignore_mask shape"):
        unet_weight_map_torch(torch.zeros(4, 4, dtype=torch.int32), ignore_mask=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="batch"):
        unet_weight_map_torch_batch(torch.zeros(4, dtype=torch.int32))


# ----------------------------------------------------------------------------
# Ids at the ends of the integer range (see huge_ids.py)
# ----------------------------------------------------------------------------


@pytest.mark.filterwarnings(VOLUMES_ON_PURPOSE)
def test_renumbers_uint64_arrays_batches_and_slabs():
    small = ranked(HUGE_2D)
    reference = unet_weight_map_torch(small)
    for given in (HUGE_2D, torch.from_numpy(HUGE_2D)):
        w = unet_weight_map_torch(given)
        assert w.numpy().tobytes() == reference.numpy().tobytes()
    np.testing.assert_allclose(reference.numpy(), unet_weight_map(small), atol=1e-5 * 10)
    # A batch whose masks hold different huge ids, ids repeated across masks.
    other = huge(SMALL_2D[::-1].copy(), seed=3)
    batch = np.stack([HUGE_2D, other])
    expected = unet_weight_map_torch_batch(np.stack([small, ranked(other)]))
    for given in (batch, torch.from_numpy(batch)):
        w = unet_weight_map_torch_batch(given)
        assert w.numpy().tobytes() == expected.numpy().tobytes()
    # 3-D, through slabs (a tiny budget) as well.
    small3 = ranked(HUGE_3D)
    for max_bytes in (None, 20_000):
        w = unet_weight_map_torch(torch.from_numpy(HUGE_3D), max_bytes=max_bytes)
        ref = unet_weight_map_torch(small3, max_bytes=max_bytes)
        assert w.numpy().tobytes() == ref.numpy().tobytes()


def test_uint64_tensor_within_int64_is_read_as_is():
    ids = np.array([0, 3, 2**40, 2**63 - 1], np.uint64)[np.array([[1, 0, 2, 0, 3]])]
    w = unet_weight_map_torch(torch.from_numpy(ids))
    assert w.numpy().tobytes() == unet_weight_map_torch(ids.astype(np.int64)).numpy().tobytes()
