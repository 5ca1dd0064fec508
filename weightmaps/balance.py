"""Kept so that imports written before the kernels moved keep working: see
:mod:`weightmaps.kernels.balance` and :mod:`weightmaps.kernels.class_balance`."""

from weightmaps.kernels.balance import balance_weight_map, class_counts, paint_class_weights
from weightmaps.kernels.class_balance import BALANCE_MODES, ClassCounts, class_weights

__all__ = [
    "BALANCE_MODES",
    "ClassCounts",
    "balance_weight_map",
    "class_counts",
    "class_weights",
    "paint_class_weights",
]
