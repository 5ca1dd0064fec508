"""Where a mask's maps go: ``MASKS/a/b.png`` gives ``OUT/a/b.unet.tif`` ...

Maps of a mask in memory are TIFFs, ``<stem>.<kind>.tif``; those of a
chunked volume zarr arrays, ``<stem>.<kind>.zarr``. The outputs are the map
kinds of the registry and ``"target"``, the carved mask.
"""

from __future__ import annotations

from weightmaps.kinds import KINDS

__all__ = ["OUTPUT_KINDS", "is_own_output", "map_name", "output_name", "volume_output_name"]

OUTPUT_KINDS: tuple[str, ...] = (*KINDS, "target")
"""Every kind of output file: the maps and the carved target."""


def map_name(rel: str, kind: str, suffix: str) -> str:
    """Where a mask's map goes, relative to OUT: the mask's stem, the kind, ``suffix``.

    The stem drops the mask's extension and an ``.ome`` before it, so an
    OME-TIFF or OME-Zarr mask's maps are named like any other's.

    Examples
    --------
    >>> map_name("a/b.png", "edge", ".tif")
    'a/b.edge.tif'
    >>> map_name("cells.ome.zarr", "unet", ".zarr")
    'cells.unet.zarr'
    """
    parent, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if stem.lower().endswith(".ome"):
        stem = stem[: -len(".ome")]
    return f"{parent}/{stem}.{kind}{suffix}" if parent else f"{stem}.{kind}{suffix}"


def output_name(rel: str, kind: str) -> str:
    """Output path (relative to OUT) of a mask's map: ``a/b.png`` -> ``a/b.unet.tif``.

    Examples
    --------
    >>> output_name("a/b.png", "edge")
    'a/b.edge.tif'
    """
    return map_name(rel, kind, ".tif")


def volume_output_name(rel: str, kind: str) -> str:
    """Output folder (relative to OUT) of a volume's map: ``a/b.zarr`` -> ``a/b.unet.zarr``.

    Examples
    --------
    >>> volume_output_name("a/b.zarr", "edge")
    'a/b.edge.zarr'
    >>> volume_output_name("big.tif", "unet")
    'big.unet.zarr'
    """
    return map_name(rel, kind, ".zarr")


def is_own_output(name: str) -> bool:
    """Whether a file or folder name is one of this tool's outputs."""
    return any(name.endswith((f".{kind}.tif", f".{kind}.zarr")) for kind in OUTPUT_KINDS)
