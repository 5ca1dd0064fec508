"""weightmaps: per-pixel loss weight maps for segmentation training.

The kernels take arrays and return float32 arrays, 2D or 3D (N-D where the
formula allows), and do no I/O. ``read_mask`` reads masks from disk;
``generate`` runs the whole offline pipeline (``weightmaps generate``).
"""

from weightmaps._version import __version__
from weightmaps.balance import (
    BALANCE_MODES,
    ClassCounts,
    balance_weight_map,
    class_counts,
    class_weights,
)
from weightmaps.edge import edge_weight_map
from weightmaps.instances import label_instances, separate_instances
from weightmaps.io import MaskReadError, read_mask
from weightmaps.maps import MapSettings, compute_maps
from weightmaps.pipeline import check, generate
from weightmaps.unet import border_cutoff, unet_weight_map

__all__ = [
    "BALANCE_MODES",
    "ClassCounts",
    "MapSettings",
    "MaskReadError",
    "__version__",
    "balance_weight_map",
    "border_cutoff",
    "check",
    "class_counts",
    "class_weights",
    "compute_maps",
    "edge_weight_map",
    "generate",
    "label_instances",
    "read_mask",
    "separate_instances",
    "unet_weight_map",
]
