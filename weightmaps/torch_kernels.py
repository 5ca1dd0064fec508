"""The torch backend: every map on any torch device, one mask or a batch.

The same maps as the numpy kernels of :mod:`weightmaps`, written as
whole-tensor torch operations so that they run on a GPU (or on the CPU
through torch) and on a stack of same-shape masks at once. Results equal the
numpy kernels within ``1e-5 * w0`` (U-Net) and ``1e-5`` (edge, balance).

Every kernel takes a torch tensor (the result stays on its device) or a
numpy array (the result is on the CPU, or on ``device=``). The names of the
numpy namespace take one mask (``unet_weight_map`` ...); ``*_batch`` take a
``(B, *spatial)`` stack, whose result equals the per-mask results stacked;
``*_torch`` are the names of earlier versions. Results are float32.
A 3-D tensor given to a one-mask kernel is one volume; since a ``(B, H, W)``
batch of 2-D masks looks the same, it warns (:class:`VolumeTensorWarning`).

This module imports torch; ``import weightmaps`` does not. The kernels live
in :mod:`weightmaps.kernels` (``unet_torch``, ``edge_torch`` ...).
"""

from __future__ import annotations

from weightmaps.kernels._torch_common import (
    BYTES_PER_PIXEL,
    VolumeTensorWarning,
    default_max_bytes,
    estimate_bytes,
)
from weightmaps.kernels.balance_torch import (
    balance_weight_map_torch,
    balance_weight_map_torch_batch,
    class_counts_torch_batch,
)
from weightmaps.kernels.edge_torch import edge_weight_map_torch, edge_weight_map_torch_batch
from weightmaps.kernels.unet_torch import unet_weight_map_torch, unet_weight_map_torch_batch

__all__ = [
    "BYTES_PER_PIXEL",
    "VolumeTensorWarning",
    "balance_weight_map",
    "balance_weight_map_batch",
    "balance_weight_map_torch",
    "balance_weight_map_torch_batch",
    "class_counts_batch",
    "class_counts_torch_batch",
    "default_max_bytes",
    "edge_weight_map",
    "edge_weight_map_batch",
    "edge_weight_map_torch",
    "edge_weight_map_torch_batch",
    "estimate_bytes",
    "unet_weight_map",
    "unet_weight_map_batch",
    "unet_weight_map_torch",
    "unet_weight_map_torch_batch",
]

# The names of the numpy and chunked namespaces, so code can swap backends.
unet_weight_map = unet_weight_map_torch
edge_weight_map = edge_weight_map_torch
balance_weight_map = balance_weight_map_torch
unet_weight_map_batch = unet_weight_map_torch_batch
edge_weight_map_batch = edge_weight_map_torch_batch
balance_weight_map_batch = balance_weight_map_torch_batch
class_counts_batch = class_counts_torch_batch
