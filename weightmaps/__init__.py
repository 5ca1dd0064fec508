"""weightmaps: per-pixel loss weight maps for segmentation training.

The kernels take arrays and return float32 arrays, 2D or 3D (N-D where the
formula allows), and do no I/O. ``read_mask`` reads masks from disk.
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
from weightmaps.unet import border_cutoff, unet_weight_map

__all__ = [
    "BALANCE_MODES",
    "ClassCounts",
    "MaskReadError",
    "__version__",
    "balance_weight_map",
    "border_cutoff",
    "class_counts",
    "class_weights",
    "edge_weight_map",
    "label_instances",
    "read_mask",
    "separate_instances",
    "unet_weight_map",
]
