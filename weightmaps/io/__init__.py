"""Reading masks and writing maps: the file layer.

``from weightmaps.io import read_mask`` reads a 2D or 3D mask from a TIFF,
PNG, JPEG, BMP, GIF or NPY file (:mod:`weightmaps.io.read`, one module per format);
:mod:`weightmaps.io.writing` writes maps atomically; :mod:`weightmaps.io.volumes`
inspects zarr and big-TIFF volumes from their metadata, and
:mod:`weightmaps.io.zarr_maps` writes a volume's maps as zarr arrays.
"""

from __future__ import annotations

from weightmaps.io.header import DEFAULT_MAX_PIXELS, RGB_RULES, MaskReadError
from weightmaps.io.read import MASK_SUFFIXES, read_mask
from weightmaps.io.tiff import read_spacing, read_spacing_unit

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MASK_SUFFIXES",
    "RGB_RULES",
    "MaskReadError",
    "read_mask",
    "read_spacing",
    "read_spacing_unit",
]
