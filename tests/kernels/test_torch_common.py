"""The torch twins' shared machinery (kernels/_torch_common.py): memory estimates and budgets."""

from __future__ import annotations

import pytest
import torch
from conftest import random_instances

from weightmaps.torch_kernels import (
    BYTES_PER_PIXEL,
    balance_weight_map_torch_batch,
    default_max_bytes,
    edge_weight_map_torch_batch,
    estimate_bytes,
    unet_weight_map_torch_batch,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_estimate_bytes():
    assert estimate_bytes((512, 512), "unet", batch=2) == 2 * 512 * 512 * BYTES_PER_PIXEL["unet"]
    assert estimate_bytes((10, 10), "balance") == 100 * BYTES_PER_PIXEL["balance"]
    assert estimate_bytes((64, 64, 64), "all") == estimate_bytes((64, 64, 64), "unet")
    assert estimate_bytes((100, 100), "edge") > 100 * 100 * BYTES_PER_PIXEL["edge"]
    with pytest.raises(ValueError, match="unknown kind"):
        estimate_bytes((4, 4), "nope")
    assert default_max_bytes("cpu") > 0


@pytest.mark.gpu
@needs_cuda
def test_gpu_memory_stays_within_the_estimate():
    labels = torch.from_numpy(random_instances((512, 512), 300, radius=(4, 12), seed=1)).cuda()
    masks = torch.stack([labels] * 4)
    for kind, run in (
        ("unet", lambda: unet_weight_map_torch_batch(masks)),
        ("edge", lambda: edge_weight_map_torch_batch(masks > 0)),
        ("balance", lambda: balance_weight_map_torch_batch(masks > 0)),
    ):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        assert peak <= estimate_bytes((512, 512), kind, batch=4), kind
    # A budget far below the batch's need: slabs, and still the same map.
    whole = unet_weight_map_torch_batch(masks)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    small = unet_weight_map_torch_batch(masks, max_bytes=8 << 20)
    assert torch.cuda.max_memory_allocated() - before < 64 << 20
    torch.testing.assert_close(small, whole, rtol=0, atol=1e-6)
