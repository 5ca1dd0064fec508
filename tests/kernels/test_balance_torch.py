"""What only the torch balance twin does: batches, per-mask counts, uint64 masks.

The map itself is tested on every backend in ``test_balance.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_backends import check_tensor, device_fixture, on

from weightmaps import BALANCE_MODES, ClassCounts, balance_weight_map, class_counts
from weightmaps.torch_kernels import (
    balance_weight_map_torch,
    balance_weight_map_torch_batch,
    class_counts_torch_batch,
)

device = device_fixture()


def semantic_mask(shape=(30, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.choice([0, 1, 2, 5], size=shape, p=[0.6, 0.25, 0.1, 0.05]).astype(np.uint8)
    mask[:3] = 255
    return mask


@pytest.mark.parametrize("mode", BALANCE_MODES)
def test_batch_with_dataset_counts(device, mode):
    masks = np.stack([semantic_mask(seed=s) for s in range(3)])
    counts = sum(class_counts(m, ignore_index=255) for m in masks)
    got = balance_weight_map_torch_batch(
        on(masks, device), mode=mode, ignore_index=255, counts=counts
    )
    for b in range(3):
        want = balance_weight_map(masks[b], mode=mode, ignore_index=255, counts=counts)
        check_tensor(got[b], want, device, 1e-5)


def test_batch_equals_per_mask(device):
    masks = np.stack([semantic_mask(seed=s) for s in range(4)])
    masks[1][masks[1] == 5] = 2  # a class absent from one mask
    masks[3] = 255  # all ignored
    got = balance_weight_map_torch_batch(on(masks, device), mode="median", ignore_index=255)
    for b in range(4):
        want = balance_weight_map(masks[b], mode="median", ignore_index=255)
        check_tensor(got[b], want, device, 1e-5)


def test_class_counts_torch_batch(device):
    masks = np.stack([semantic_mask(seed=s) for s in range(3)])
    got = class_counts_torch_batch(on(masks, device), ignore_index=255)
    assert got == [class_counts(m, ignore_index=255) for m in masks]
    assert isinstance(sum(got), ClassCounts)


def test_refuses_uint64_beyond_int64():
    mask = np.array([[0, 1, 2**63]], np.uint64)
    for given in (mask, torch.from_numpy(mask)):
        with pytest.raises(ValueError, match="beyond the int64 range"):
            balance_weight_map_torch(given)
    # Within the range a uint64 tensor is read as its values.
    fine = torch.from_numpy(np.array([[0, 1, 2**40]], np.uint64))
    np.testing.assert_array_equal(
        balance_weight_map_torch(fine).numpy(),
        balance_weight_map_torch(fine.numpy().astype(np.int64)).numpy(),
    )
