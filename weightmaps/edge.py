"""Kept so that imports written before the kernels moved keep working: see
:mod:`weightmaps.kernels.edge`."""

from weightmaps.kernels.edge import box_sum, edge_weight_map

__all__ = ["box_sum", "edge_weight_map"]
