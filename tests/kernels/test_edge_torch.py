"""What only the torch edge twin does: batches, slabs, exact integer sums, uint64 masks.

The map itself is tested on every backend in ``test_edge.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import blobs
from kernel_backends import check_tensor, device_fixture, on

from weightmaps import edge_weight_map
from weightmaps.kernels.edge_torch import _exact_int_dtype
from weightmaps.torch_kernels import (
    BYTES_PER_PIXEL,
    edge_weight_map_torch,
    edge_weight_map_torch_batch,
)

device = device_fixture()


def test_batch_equals_per_mask_and_slabs(device):
    masks = np.stack([blobs((40, 44), seed=s) for s in range(3)])
    got = edge_weight_map_torch_batch(on(masks, device), kernel_size=15)
    for b in range(3):
        check_tensor(got[b], edge_weight_map(masks[b], kernel_size=15), device, 1e-5)
    for budget in (2 * masks[0].size, masks[0].size // 3, 1):
        slabbed = edge_weight_map_torch_batch(
            on(masks, device), kernel_size=15, max_bytes=budget * BYTES_PER_PIXEL["edge"]
        )
        torch.testing.assert_close(slabbed, got, rtol=0, atol=1e-6)


def test_running_sums_widen_before_they_could_overflow():
    assert _exact_int_dtype((2048, 2048), 31) == torch.int32
    assert _exact_int_dtype((512, 512, 512), 31) == torch.int32
    assert _exact_int_dtype((4096, 4096, 4096), 31) == torch.int32
    assert _exact_int_dtype((2, 2, 3_000_000), 31) == torch.int64


def test_refuses_uint64_beyond_int64():
    mask = np.array([[0, 1, 2**63]], np.uint64)
    for given in (mask, torch.from_numpy(mask)):
        with pytest.raises(ValueError, match="beyond the int64 range"):
            edge_weight_map_torch(given, classes=[0, 1])
