"""The registry of map kinds: one :class:`~weightmaps.kinds.spec.MapKind` per module.

To add a kind, write ``weightmaps/kinds/<name>.py`` declaring ``KIND`` (its
parameters, the labels it reads, its halo and its numpy, torch and chunked
kernels; see :mod:`weightmaps.kinds.spec`) and add it to :data:`REGISTRY`
below. The settings, the command line, the manifest and every recipe read
this registry; nothing else names a kind.
"""

from __future__ import annotations

from collections.abc import Iterable

from weightmaps.kinds import balance, distance, edge, sdf, skeleton, unet
from weightmaps.kinds.spec import MapContext, MapKind, Param

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "REGISTRY",
    "MapContext",
    "MapKind",
    "Param",
    "get_kind",
    "kind_names",
]

# Order is the order of the settings' fields, of --kinds and of the outputs.
REGISTRY: dict[str, MapKind] = {
    kind.name: kind
    for kind in (unet.KIND, edge.KIND, balance.KIND, sdf.KIND, distance.KIND, skeleton.KIND)
}

KINDS: tuple[str, ...] = tuple(REGISTRY)
"""Names of the map kinds, in registry order."""

DEFAULT_KINDS: tuple[str, ...] = tuple(name for name, kind in REGISTRY.items() if kind.default)
"""The kinds made when none are named (``generate`` without ``--kinds``)."""


def get_kind(name: str) -> MapKind:
    """The registered kind called ``name`` (ValueError for an unknown one)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown map kind {name!r}; choose from {', '.join(KINDS)}") from None


def kind_names(kinds: str | Iterable[str]) -> tuple[str, ...]:
    """Kinds as a tuple of names: a string is one name or several, comma-separated.

    A plain ``tuple("unet")`` would be the letters ``('u', 'n', 'e', 't')``;
    ``kinds="unet"`` means the U-Net map, as ``--kinds unet`` does.

    Examples
    --------
    >>> kind_names("unet"), kind_names("unet, edge"), kind_names(["edge"])
    (('unet',), ('unet', 'edge'), ('edge',))
    """
    if isinstance(kinds, str):
        return tuple(k.strip() for k in kinds.split(",") if k.strip())
    return tuple(kinds)
