"""Which panels a preview draws, how, and with which parameter line.

The maps by kind become panels by each kind's drawing rule
(:func:`map_panels`); the parameter sets the manifest records (or the settings
give) become each panel's second caption line (:func:`panel_details`).
:mod:`weightmaps.preview` draws them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["TARGET", "map_panels", "panel_details", "parameter_text"]

TARGET = "target"
"""The name of the carved target: the instance labels the maps were computed from."""

# Settings every map of a mask shares (how the mask is read and carved): the
# title and the target's panel say them, not each map's caption.
_SHARED_KEYS = frozenset(
    {
        "kind",
        "mask_type",
        "ignore_value",
        "separate_touching",
        "connectivity",
        "channel",
        "rgb_rule",
    }
)


def map_panels(
    maps: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Maps by kind as preview panels and their styles, by each kind's drawing rule.

    A map with a class axis (a signed distance map, ``(K, *spatial)``) gives
    one panel per class (``"sdf[0]"`` ...; ``"sdf"`` for one); the carved
    target (``"target"``, instance labels) is drawn in label colours; other
    names that are not registered kinds are drawn in viridis.

    Examples
    --------
    >>> panels, styles = map_panels({"unet": np.ones((4, 4)), "sdf": np.zeros((2, 4, 4))})
    >>> list(panels), styles["sdf[1]"]
    (['unet', 'sdf[0]', 'sdf[1]'], 'diverging')
    """
    from weightmaps.kinds import REGISTRY

    panels: dict[str, np.ndarray] = {}
    styles: dict[str, str] = {}
    for name, array in maps.items():
        kind = REGISTRY.get(name)
        if kind is None:
            style = "labels" if name == TARGET else "sequential"
        else:
            style = kind.preview
        if kind is not None and kind.class_axis:
            channels = np.asarray(array)
            for k, channel in enumerate(channels):
                caption = name if len(channels) == 1 else f"{name}[{k}]"
                panels[caption], styles[caption] = channel, style
        else:
            panels[name], styles[name] = array, style
    return panels, styles


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(_value_text(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{_value_text(v)}" for k, v in value.items())
    return str(value)


def parameter_text(params: Mapping[str, Any]) -> str:
    """One short line of the parameters a map was made with.

    ``params`` is a parameter set as the manifest records it
    (:meth:`weightmaps.settings.MapSettings.kind_params`): the kind's own
    parameters are kept, those every map of the mask shares (mask type,
    ignore value, carving, reading) left out, and so are parameters left
    unset (None). The carved target (``kind == "target"``) has no parameter
    of its own: its line names the carving's connectivity.

    Examples
    --------
    >>> parameter_text({"kind": "unet", "mask_type": "auto", "w0": 10.0, "sigma": 5.0,
    ...                 "class_weights": None, "spacing": [2.0, 1.0, 1.0]})
    'w0=10 sigma=5 spacing=2x1x1'
    >>> parameter_text({"kind": "target", "separate_touching": True, "connectivity": 1})
    'carved, connectivity=1'
    """
    if params.get("kind") == TARGET:
        connectivity = params.get("connectivity")
        return f"carved, connectivity={'full' if connectivity is None else connectivity}"
    return " ".join(
        f"{key}={_value_text(value)}"
        for key, value in params.items()
        if key not in _SHARED_KEYS and value is not None
    )


def panel_details(
    panels: Mapping[str, Any], params: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, str]:
    """The parameter line of each panel, from the parameter sets by kind.

    A class of a map with a class axis (``"sdf[1]"``) has its kind's line.

    Examples
    --------
    >>> panel_details({"unet": 0, "sdf[0]": 0}, {"unet": {"w0": 3.0}, "sdf": {"max_distance": 8}})
    {'unet': 'w0=3', 'sdf[0]': 'max_distance=8'}
    """
    details = {}
    for caption in panels:
        recorded = params.get(caption.split("[", 1)[0])
        if recorded:
            text = parameter_text(recorded)
            if text:
                details[caption] = text
    return details
