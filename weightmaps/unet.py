"""Kept so that imports written before the kernels moved keep working: see
:mod:`weightmaps.kernels.unet`."""

from weightmaps.kernels.border import BORDER_TOLERANCE, border_cutoff, explicit_class_weights
from weightmaps.kernels.unet import unet_weight_map

__all__ = ["BORDER_TOLERANCE", "border_cutoff", "explicit_class_weights", "unet_weight_map"]
