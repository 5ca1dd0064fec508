"""Kept so that imports written before the recipe moved keep working: see
:mod:`weightmaps.settings`, :mod:`weightmaps.prepare` and :mod:`weightmaps.recipe`."""

from weightmaps.kinds import KINDS
from weightmaps.prepare import PreparedMask, mask_class_counts, mask_instances
from weightmaps.prepare import prepare_array as prepare_mask
from weightmaps.recipe import MaskMaps, compute_maps, compute_maps_batch, compute_prepared
from weightmaps.settings import BALANCE_SCOPES, PARAM_KEYS, MapSettings

__all__ = [
    "BALANCE_SCOPES",
    "KINDS",
    "PARAM_KEYS",
    "MapSettings",
    "MaskMaps",
    "PreparedMask",
    "compute_maps",
    "compute_maps_batch",
    "compute_prepared",
    "mask_class_counts",
    "mask_instances",
    "prepare_mask",
]
