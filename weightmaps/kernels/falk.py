"""The U-Net authors' full weight map (Falk et al., Nature Methods 2019).

Falk, T. et al. "U-Net: deep learning for cell counting, detection, and
morphometry." Nature Methods 16, 67-70 (2019), and its Fiji plugin
(lmb-freiburg/Unet-Segmentation). On every background pixel, with ``d1`` and
``d2`` the distances to the nearest and second-nearest instance *of class c*::

    w(x) = v_bal + sum_c [ w0 * exp(-(d1 + d2)^2 / (2 sigma^2))
                           + (1 - v_bal) * exp(-d1^2 / (2 sigma_1^2)) ]

Foreground pixels keep their class weight (1 in the plugin). ``v_bal`` is the
weight of background far from every object, so the background weight falls
smoothly from about 1 at an object's edge to ``v_bal`` (the plugin's
"foreground/background ratio"); the first term is Ronneberger et al.'s
separation border (eq. 2 of the 2015 paper), counted per class.

It is the ``unet`` map kind with ``v_bal`` below 1 (``--v-bal``,
``--sigma-bal``); the chunked twin is :mod:`weightmaps.kernels.falk_dask`.

Defaults
--------
``w0 = 10`` and ``sigma = 5`` are those of :func:`weightmaps.unet_weight_map`
(the options the two maps share keep their values); ``sigma_1 = 10`` and
``v_bal = 0.1`` are the plugin's (``sigma1`` 5 um and foreground/background
ratio 0.1 at its 0.5 um element size). The plugin's own border defaults
are ``w0 = 50`` and ``sigma = 3`` um (6 pixels at 0.5 um); pass them to
reproduce it. Distances are in the units of ``spacing`` (the plugin works in
micrometres from the element size).

The plain U-Net map is the special case ``v_bal = 1`` with one class
(``classes=None``): the ``sigma_1`` term vanishes and
``unet_weight_map_falk(instances, w0=w0, sigma=sigma, v_bal=1.0,
class_weights=cw, spacing=s, ignore_mask=m)`` is byte for byte
``unet_weight_map(instances, w0=w0, sigma=sigma, class_weights=cw, spacing=s,
ignore_mask=m)`` for ``cw`` None or ``{1: b}`` (``{0: 1.0, 1: b}`` there).

Exactness: the border term is the U-Net kernel's own
(:func:`weightmaps.kernels.nearest.add_border_term`, dropped where below ``1e-6 * w0``)
and ``d1`` for the ``sigma_1`` term comes from
:func:`weightmaps.kernels.nearest.nearest_two_instances` up to the distance where
the term falls below ``1e-6 * (1 - v_bal)``, and is dropped beyond; so the
map equals the formula within ``1e-6 * (w0 + |1 - v_bal|)`` per class, and
is decided by the instances within ``max(border_cutoff(sigma),
border_cutoff(sigma_1))`` of each pixel.

The plugin also carves a one-pixel gap where instances of one class touch;
do that first with :func:`weightmaps.separate_instances` (both sides).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from weightmaps.kernels.border import border_cutoff
from weightmaps.kernels.nearest import add_border_term, nearest_two_instances

__all__ = ["unet_weight_map_falk"]


def _label_array(instances: np.ndarray, name: str) -> np.ndarray:
    """C-contiguous int32 (int64 for wide ids) labels, as the U-Net kernel takes them."""
    instances = np.asarray(instances)
    if instances.dtype == bool:
        return np.ascontiguousarray(instances, dtype=np.int32)
    if not np.issubdtype(instances.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label array, got dtype {instances.dtype}")
    if instances.ndim == 0 or instances.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {instances.shape}")
    if instances.min() < 0:
        raise ValueError(f"{name} must be >= 0 (0 is background)")
    wide = int(instances.max()) > np.iinfo(np.int32).max
    return np.ascontiguousarray(instances, dtype=np.int64 if wide else np.int32)


def _check_parameters(w0: float, sigma: float, sigma_1: float, v_bal: float) -> None:
    if not (w0 >= 0 and math.isfinite(w0)):
        raise ValueError(f"w0 must be finite and >= 0, got {w0}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    if not (sigma_1 > 0 and math.isfinite(sigma_1)):
        raise ValueError(f"sigma_1 must be finite and > 0, got {sigma_1}")
    if not (v_bal >= 0 and math.isfinite(v_bal)):
        raise ValueError(f"v_bal must be finite and >= 0, got {v_bal}")


def _class_layers(
    labels: np.ndarray, classes: np.ndarray | None
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """The class of every foreground pixel, and the instances of every class."""
    foreground = labels != 0
    if classes is None:
        return foreground.astype(np.int64), [(1, labels)]
    classes = np.asarray(classes)
    if classes.shape != labels.shape:
        raise ValueError(f"classes shape {classes.shape} differs from instances {labels.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise TypeError(f"classes must hold integer class ids, got dtype {classes.dtype}")
    of_foreground = classes[foreground]
    if of_foreground.size and of_foreground.min() <= 0:
        raise ValueError("every instance pixel needs a class id >= 1 in classes")
    pixel_class = np.where(foreground, classes, 0).astype(np.int64)
    layers = [
        (int(c), np.ascontiguousarray(np.where(pixel_class == c, labels, 0), labels.dtype))
        for c in np.unique(of_foreground)
    ]
    return pixel_class, layers


def _foreground_weights(
    class_weights: Mapping[int, float] | None, present: Sequence[int]
) -> dict[int, float]:
    weights = {int(c): 1.0 for c in present}
    if class_weights is None:
        return weights
    given = {int(k): float(v) for k, v in class_weights.items()}
    if 0 in given:
        raise ValueError(
            "class_weights are the foreground classes' weights; the background's is v_bal"
        )
    weights.update({c: w for c, w in given.items() if c in weights})
    return weights


def unet_weight_map_falk(
    instances: np.ndarray,
    *,
    classes: np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    sigma_1: float = 10.0,
    v_bal: float = 0.1,
    class_weights: Mapping[int, float] | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Falk et al.'s U-Net weight: per-class separation borders and a falling background.

    Parameters
    ----------
    instances : ndarray of int
        2-D or 3-D instance labels, 0 = background, ids need not be
        contiguous.
    classes : ndarray of int, optional
        The class id (>= 1) of every instance pixel, same shape (a semantic
        mask; its values on background are not read). Borders are measured
        between instances of one class. Default: every instance is class 1.
    w0 : float
        Height of the separation border term.
    sigma : float
        Width of the border term (``sigma_sep`` / ``sigma_b``), in the units
        of ``spacing``.
    sigma_1 : float
        Width of the fall from 1 at an object's edge to ``v_bal``.
    v_bal : float
        Weight of background far from every object.
    class_weights : mapping, optional
        Weight of the foreground of each class, ``{class id: weight}``;
        classes not listed get 1. The background's weight is ``v_bal`` (key 0
        is refused).
    spacing : float or sequence of float, optional
        Pixel size along each axis; distances, ``sigma`` and ``sigma_1`` are
        in its units.
    ignore_mask : ndarray of bool, optional
        Pixels that get weight 0.

    Returns
    -------
    ndarray of float32
        ``v_bal + sum_c [w0 exp(-(d1_c + d2_c)^2 / 2 sigma^2) + (1 - v_bal)
        exp(-d1_c^2 / 2 sigma_1^2)]`` on background (the first term only
        where class ``c`` has two instances, the second where it has one),
        the class weight on foreground, 0 on ignored pixels. See the module
        notes for the defaults, exactness, and the plain U-Net map as the
        case ``v_bal = 1``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 0, 2] + [0] * 19])
    >>> w = unet_weight_map_falk(labels, w0=10, sigma=5, sigma_1=10, v_bal=0.1)
    >>> float(w[0, 0]), round(float(w[0, 1]), 4), round(float(w[0, -1]), 4)
    (1.0, 10.2267, 0.248)
    >>> from weightmaps import unet_weight_map
    >>> np.array_equal(unet_weight_map_falk(labels, v_bal=1.0), unet_weight_map(labels))
    True
    """
    _check_parameters(w0, sigma, sigma_1, v_bal)
    labels = _label_array(instances, "instances")
    if ignore_mask is not None:
        ignore_mask = np.asarray(ignore_mask, dtype=bool)
        if ignore_mask.shape != labels.shape:
            raise ValueError(
                f"ignore_mask shape {ignore_mask.shape} differs from instances {labels.shape}"
            )
    pixel_class, layers = _class_layers(labels, classes)
    weights = _foreground_weights(class_weights, [c for c, _ in layers])
    out = np.full(labels.shape, np.float32(v_bal), np.float32)
    fall = 1.0 - v_bal
    fall_reach = border_cutoff(sigma_1)
    for _, layer in layers:
        # Added on the layer's background, which holds other classes'
        # foreground too; that is painted over below.
        if w0 > 0:
            add_border_term(
                layer, out, w0=w0, sigma=sigma, cutoff=border_cutoff(sigma), spacing=spacing
            )
        if fall != 0:
            d1 = nearest_two_instances(layer, spacing=spacing, max_distance=fall_reach)[0]
            # Cut at the reach, as the border term is: the map is then decided
            # by instances within it (what makes a chunk with a halo exact).
            d1[d1 >= fall_reach] = np.inf
            np.add(out, fall * np.exp(-(d1**2) / (2.0 * sigma_1**2)), out=out, casting="unsafe")
    for c, weight in weights.items():
        out[pixel_class == c] = np.float32(weight)
    if ignore_mask is not None:
        out[ignore_mask] = 0.0
    return out
