"""napari widget: the weight maps of a Labels layer, computed on the spot.

:func:`compute_maps` is a plain function with annotated parameters; napari
builds its widget with magicgui (``autogenerate`` in the manifest), so
nothing here imports napari, magicgui or Qt. Annotations naming napari's
types are strings, resolved by magicgui when the widget is made.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from weightmaps.kinds import KINDS
from weightmaps.napari.reader import layer_style
from weightmaps.recipe import compute_maps as compute_mask_maps
from weightmaps.settings import MapSettings

__all__ = ["compute_maps"]

_MODES = {"choices": ["inverse", "median", "enet", "beta"]}
_MASK_TYPES = {"choices": ["auto", "binary", "semantic", "instance"]}


def compute_maps(
    labels: napari.layers.Labels,  # noqa: F821 - resolved by magicgui, not imported here
    unet: bool = True,
    edge: bool = True,
    balance: bool = False,
    mask_type: Annotated[str, _MASK_TYPES] = "auto",
    separate_touching: bool = False,
    w0: Annotated[float, {"min": 0.0, "max": 1000.0}] = 10.0,
    sigma: Annotated[float, {"min": 0.1, "max": 1000.0}] = 5.0,
    edge_kernel: Annotated[int, {"min": 1, "max": 1001, "step": 2}] = 31,
    edge_alpha: Annotated[float, {"min": 0.0, "max": 1000.0}] = 5.0,
    balance_mode: Annotated[str, _MODES] = "inverse",
    use_layer_scale: bool = True,
) -> list[napari.types.LayerDataTuple]:  # noqa: F821
    """Compute the chosen maps of a Labels layer with the parameters of ``generate``.

    The same computation as ``weightmaps generate`` on that mask (its mask
    type rule, carving, kernels), with nothing written: for a look at the
    maps before generating a dataset. With ``use_layer_scale`` the layer's
    scale is the spacing of the U-Net distances (sigma then in those units).

    Parameters
    ----------
    labels : napari.layers.Labels
        Anything with ``data`` (a 2D or 3D label array), ``name`` and
        ``scale``.
    unet, edge, balance : bool
        Which maps to compute.
    mask_type, separate_touching, w0, sigma, edge_kernel, edge_alpha, balance_mode
        As the options of ``weightmaps generate``.
    use_layer_scale : bool
        Take the layer's scale as the pixel spacing.

    Returns
    -------
    list of (data, kwargs, layer_type)
        One image layer per map (scale, colormap and contrast as the reader
        gives them), and the carved target as labels with
        ``separate_touching``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> mask = np.zeros((32, 32), np.uint16); mask[4:12, 4:12] = 1; mask[4:12, 14:20] = 2
    >>> layer = SimpleNamespace(data=mask, name="cells", scale=(1.0, 1.0))
    >>> [(kw["name"], kind) for _, kw, kind in compute_maps(layer, edge=False)]
    [('cells unet', 'image')]
    """
    kinds = [k for k, on in (("unet", unet), ("edge", edge), ("balance", balance)) if on]
    kinds = [k for k in KINDS if k in kinds]
    if not kinds:
        raise ValueError("choose at least one map: unet, edge or balance")
    mask = np.asarray(labels.data)
    scale = tuple(float(s) for s in getattr(labels, "scale", ()) or ())
    spacing = scale[-mask.ndim :] if use_layer_scale and len(scale) >= mask.ndim else None
    if spacing is not None and all(s == 1.0 for s in spacing):
        spacing = None
    settings = MapSettings(
        mask_type=mask_type,
        separate_touching=separate_touching,
        w0=w0,
        sigma=sigma,
        edge_kernel=edge_kernel,
        edge_alpha=edge_alpha,
        balance_mode=balance_mode,
    )
    result = compute_mask_maps(mask, settings, kinds=kinds, spacing=spacing)
    layer_scale = list(spacing) if spacing is not None else [1.0] * mask.ndim
    layers: list[Any] = []
    for kind, data in result.maps.items():
        params = settings.kind_params(kind)
        style = layer_style(kind)
        low, high = float(data.min()), float(data.max())
        style["contrast_limits"] = [low, high if high > low else low + 1.0]
        kwargs = {
            "name": f"{labels.name} {kind}",
            "scale": layer_scale,
            "blending": "additive",
            "metadata": {"weightmaps_kind": kind, "weightmaps_params": params},
            **style,
        }
        layers.append((data, kwargs, "image"))
    if result.target is not None:
        kwargs = {"name": f"{labels.name} target", "scale": layer_scale}
        layers.append((np.asarray(result.target), kwargs, "labels"))
    return layers
