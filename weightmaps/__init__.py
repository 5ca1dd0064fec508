"""weightmaps: per-pixel loss weight maps for segmentation training.

The kernels take arrays and return float32 arrays, 2D or 3D (N-D where the
formula allows), and do no I/O; a torch tensor is handed to the torch kernel
of the same name (:mod:`weightmaps.torch_kernels`), a dask array belongs to
:mod:`weightmaps.chunked`. ``read_mask`` reads masks from disk;
``generate`` runs the whole offline pipeline (``weightmaps generate``).

Names are loaded on first use: ``import weightmaps`` imports neither numba,
torch nor dask, so the command line starts at once.
"""

from __future__ import annotations

import importlib
from typing import Any

from weightmaps._version import __version__

# Public name -> the module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "BALANCE_MODES": "weightmaps.kernels.class_balance",
    "ClassCounts": "weightmaps.kernels.class_balance",
    "class_weights": "weightmaps.kernels.class_balance",
    "class_counts": "weightmaps.kernels.balance",
    "balance_weight_map": "weightmaps.kernels.balance",
    "border_cutoff": "weightmaps.kernels.border",
    "edge_weight_map": "weightmaps.kernels.edge",
    "label_instances": "weightmaps.kernels.instances",
    "separate_instances": "weightmaps.kernels.instances",
    "signed_distance_map": "weightmaps.kernels.sdf",
    "skeleton_map": "weightmaps.kernels.skeleton",
    "unet_weight_map": "weightmaps.kernels.unet",
    "MaskReadError": "weightmaps.io",
    "read_mask": "weightmaps.io",
    "MapSettings": "weightmaps.settings",
    "compute_maps": "weightmaps.recipe",
    "check": "weightmaps.pipeline",
    "generate": "weightmaps.pipeline",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'weightmaps' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
