"""``MapSettings``: the parameters of every map kind, as ``weightmaps generate`` takes them.

Its fields are the shared parameters below followed by those each kind of
:mod:`weightmaps.kinds` declares, in registry order; each field's
normalisation and check come with its declaration. A kind's recorded
parameters (:meth:`MapSettings.kind_params`) are the fields it ``uses``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from weightmaps.kinds import REGISTRY
from weightmaps.kinds.balance import BALANCE_SCOPES
from weightmaps.kinds.spec import Param, jsonable
from weightmaps.masktype import MASK_TYPES

__all__ = [
    "BALANCE_SCOPES",
    "PARAMS",
    "PARAM_KEYS",
    "SHARED_PARAMS",
    "MapSettings",
    "settings_from_record",
]


def _check_mask_type(value: str) -> None:
    if value not in MASK_TYPES:
        raise ValueError(f"mask type must be one of {MASK_TYPES}")


def _check_connectivity(value: int | None) -> None:
    if value is not None and not value >= 1:
        raise ValueError("connectivity must be >= 1")


SHARED_PARAMS: tuple[Param, ...] = (
    Param(
        name="mask_type",
        default="auto",
        help="How to read label values [default: auto; see README for the auto rule]",
        check=_check_mask_type,
        choices=MASK_TYPES,
    ),
    Param(
        name="ignore_value",
        default=None,
        help="Label of unlabelled pixels: weight 0",
        cli_type=int,
    ),
    Param(
        name="connectivity",
        default=None,
        help="Connected-components connectivity, 1..ndim [default: ndim, full]",
        check=_check_connectivity,
        cli_type=int,
    ),
    Param(
        name="separate_touching",
        default=False,
        help="Carve a gap between touching instances; write <name>.target.tif",
        flag=True,
    ),
    Param(
        name="allow_empty",
        default=False,
        help="Accept masks without foreground [default: refuse them]",
        flag=True,
    ),
)
"""Parameters every kind shares: how the mask is read, carved and labelled."""

PARAMS: dict[str, Param] = {
    param.name: param
    for param in (*SHARED_PARAMS, *(p for kind in REGISTRY.values() for p in kind.params))
}
"""Every settings field's declaration, by field name, in field order."""

PARAM_KEYS: dict[str, str] = {
    name: param.key for name, param in PARAMS.items() if param.key is not None
}
"""Settings field -> its key in :meth:`MapSettings.kind_params`, where the two differ."""


def _post_init(self: Any) -> None:
    # 4 and 4.0 must give the same parameters (and the same digest).
    for name, param in PARAMS.items():
        value = getattr(self, name)
        if param.normalize is not None and value is not None:
            try:
                object.__setattr__(self, name, param.normalize(value))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}: {exc}") from exc
    for name, param in PARAMS.items():
        if param.check is not None:
            param.check(getattr(self, name))
    for kind in REGISTRY.values():
        if kind.check_settings is not None:
            kind.check_settings(self)


def kind_params(self: Any, kind: str) -> dict[str, Any]:
    """The settings a map kind depends on (JSON-ready), for staleness checks.

    ``"target"`` (the carved mask) depends on the shared settings only. A
    parameter declared ``omit_at_default`` is left out while at its default,
    so maps made before it existed keep their digest.
    """
    shared = {
        "mask_type": self.mask_type,
        "ignore_value": self.ignore_value,
        "separate_touching": self.separate_touching,
    }
    if self.separate_touching:
        shared["connectivity"] = self.connectivity
    if kind == "target":
        uses: tuple[str, ...] = ()
    elif kind in REGISTRY:
        uses = REGISTRY[kind].uses
    else:
        raise ValueError(f"unknown map kind {kind!r}")
    own = {
        PARAMS[name].record_key: jsonable(getattr(self, name))
        for name in uses
        if not (PARAMS[name].omit_at_default and getattr(self, name) == PARAMS[name].default)
    }
    return {"kind": kind, **shared, **own}


def _docstring() -> str:
    lines = [
        "Parameters of every map kind, as ``weightmaps generate`` takes them.",
        "",
        "Built from the declarations of :mod:`weightmaps.settings` (shared) and",
        "of each kind in :mod:`weightmaps.kinds`; frozen, compared by value.",
        "",
        "Attributes",
        "----------",
    ]
    for name, param in PARAMS.items():
        lines.append(f"{name} : default {param.default!r}")
        lines.append(f"    {param.help}.")
    return "\n".join(lines) + "\n"


MapSettings = dataclasses.make_dataclass(
    "MapSettings",
    [(name, Any, dataclasses.field(default=param.default)) for name, param in PARAMS.items()],
    namespace={"__post_init__": _post_init, "kind_params": kind_params, "__doc__": _docstring()},
    frozen=True,
)
# Pickled settings (sent to worker processes) are found here by name.
MapSettings.__module__ = __name__


def settings_from_record(recorded: Mapping[str, Any], **given: Any) -> Any:
    """``MapSettings`` from a manifest's recorded settings, with ``given`` on top.

    Keys that are not settings fields (the kinds, reading options) are left
    out; JSON lists become tuples again.

    Examples
    --------
    >>> settings_from_record({"sigma": 3, "kinds": ["unet"], "edge_size": [64, 64]}, w0=2)
    ... # doctest: +ELLIPSIS
    MapSettings(mask_type='auto', ..., w0=2.0, sigma=3.0, ..., edge_size=(64, 64), ...)
    """
    values = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in recorded.items()
        if name in PARAMS
    }
    values.update(given)
    return MapSettings(**values)
