"""Kept so that imports written before the kernels moved keep working: see
:mod:`weightmaps.kernels.instances`."""

from weightmaps.kernels.instances import label_instances, separate_instances

__all__ = ["label_instances", "separate_instances"]
