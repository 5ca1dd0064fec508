"""Preview of a mask and its weight maps as one RGB picture, for eyeballing.

Pure computation: ``render_preview`` returns an ``(H, W, 3)`` uint8 array and
writes nothing; saving it (``PIL.Image.fromarray(rgb).save(path)``) is the
caller's business.

Layout, left to right: the image (if given), the mask, then one panel per
map in the mapping's order. Every panel has its caption above it (and, when
given, a second line under the caption: the parameters the map was made
with); each map panel has a vertical colour bar on its right with the map's
maximum written at the top and its minimum at the bottom. An optional title
line (which also names the slice of a 3-D input) runs across the top.

Each map kind says how it is drawn (:attr:`weightmaps.kinds.MapKind.preview`,
gathered by :func:`map_panels`): weights in viridis, a signed distance map in
a diverging map that is white at 0 (on the contour), a skeleton over the mask;
the carved target (instance labels) in the mask's label colours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from weightmaps.preview_panels import map_panels, panel_details, parameter_text

__all__ = [
    "DIVERGING_ANCHORS",
    "NAN_COLOUR",
    "OVERLAY_COLOUR",
    "VIRIDIS_ANCHORS",
    "label_colours",
    "STYLES",
    "map_panels",
    "panel_details",
    "parameter_text",
    "render_preview",
]

STYLES: tuple[str, ...] = ("sequential", "diverging", "overlay", "labels")
"""How a map panel can be drawn; see :func:`render_preview`."""

# Image channels: (H, W, 2) is grey and alpha, (H, W, 4) RGB and alpha.
_IMAGE_CHANNELS = (2, 3, 4)
_AXES = "zyx"

# viridis (matplotlib) sampled at 10 evenly spaced points. Linear
# interpolation between these stays within a few RGB units of the full
# 256-entry table, so no plotting library is needed.
VIRIDIS_ANCHORS = np.array(
    [
        [0x44, 0x01, 0x54],
        [0x48, 0x28, 0x78],
        [0x3E, 0x49, 0x89],
        [0x31, 0x68, 0x8E],
        [0x26, 0x82, 0x8E],
        [0x1F, 0x9E, 0x89],
        [0x35, 0xB7, 0x79],
        [0x6E, 0xCE, 0x58],
        [0xB5, 0xDE, 0x2B],
        [0xFD, 0xE7, 0x25],
    ],
    dtype=np.uint8,
)
VIRIDIS_ANCHORS.flags.writeable = False

# Blue below 0, white at 0, red above (ColorBrewer's RdBu ends and middle):
# a signed distance map's contour is the white line between the two.
DIVERGING_ANCHORS = np.array([[0x21, 0x66, 0xAC], [0xF7, 0xF7, 0xF7], [0xB2, 0x18, 0x2B]], np.uint8)
DIVERGING_ANCHORS.flags.writeable = False

# A skeleton drawn over the mask: a colour no label gets (labels are
# saturated and bright, this is pure yellow) and not the NaN magenta.
OVERLAY_COLOUR = (255, 255, 0)

# NaN in a weight map is a bug upstream; magenta is in neither viridis nor
# the grey scale, so it cannot pass for a legitimate value.
NAN_COLOUR = (255, 0, 255)

_BACKGROUND = (40, 40, 40)  # not black, so the mask's black background shows its extent
_TEXT = (230, 230, 230)
_MARGIN = 8  # around the whole picture
_TILE_GAP = 16  # between one panel (with its colour bar) and the next
_BAR_GAP = 6  # between a map panel and its colour bar
_BAR_WIDTH = 12
_LABEL_GAP = 4  # between the colour bar and its min/max labels
_LINE_GAP = 4  # below a caption or the title


def label_colours(ids: np.ndarray) -> np.ndarray:
    """Colour of each label id: a fixed function of the id alone.

    Id 0 is black and id 1 white; any other id gets a saturated, bright
    colour from a hash of its value, so an id keeps its colour from one
    mask, slice or run to the next.

    Parameters
    ----------
    ids : array_like of int
        Label ids, any shape.

    Returns
    -------
    ndarray of uint8
        ``ids.shape + (3,)``.

    Examples
    --------
    >>> label_colours([0, 1]).tolist()
    [[0, 0, 0], [255, 255, 255]]
    >>> bool(np.array_equal(label_colours([7]), label_colours([7])))
    True
    """
    ids = np.asarray(ids)
    shape = ids.shape
    flat = ids.reshape(-1)
    # Same bits for a signed id and its unsigned reading; only equality of
    # ids matters, so the wrap-around of huge uint64 ids is harmless.
    if flat.dtype.kind == "u":
        key = flat.astype(np.uint64)
    else:
        key = flat.astype(np.int64).view(np.uint64)
    # splitmix64 finaliser: neighbouring ids (3, 4, 5, ...) land far apart in
    # colour, and unlike Python's hash() it is the same on every platform.
    z = key + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    hue = (z & np.uint64(0xFFFF)).astype(np.float64) / 65536.0
    # Saturation and value kept high: a dull colour would read as the black
    # background, the white of id 1 or the grey canvas.
    sat = 0.55 + 0.45 * ((z >> np.uint64(16)) & np.uint64(0xFF)).astype(np.float64) / 255.0
    val = 0.80 + 0.20 * ((z >> np.uint64(24)) & np.uint64(0xFF)).astype(np.float64) / 255.0
    rgb = _hsv_to_rgb(hue, sat, val)
    rgb[flat == 0] = 0
    rgb[flat == 1] = 255
    return rgb.reshape(shape + (3,))


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    sector = sector.astype(np.int64) % 6
    r = np.choose(sector, [v, q, p, p, t, v])
    g = np.choose(sector, [t, v, v, q, p, p])
    b = np.choose(sector, [p, p, t, v, v, q])
    return np.round(np.stack([r, g, b], axis=-1) * 255.0).astype(np.uint8)


def _colours(t: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """RGB of values in [0, 1] between ``anchors``; NaN becomes ``NAN_COLOUR``."""
    xp = np.linspace(0.0, 1.0, len(anchors))
    nan = np.isnan(t)
    t = np.where(nan, 0.0, t)
    rgb = np.stack([np.interp(t, xp, anchors[:, c].astype(np.float64)) for c in range(3)], -1)
    rgb = np.round(rgb).astype(np.uint8)
    rgb[nan] = NAN_COLOUR
    return rgb


def _viridis(t: np.ndarray) -> np.ndarray:
    """RGB of values in [0, 1]; NaN becomes ``NAN_COLOUR``."""
    return _colours(t, VIRIDIS_ANCHORS)


def _diverging(t: np.ndarray) -> np.ndarray:
    """RGB of values in [0, 1], white at 0.5; NaN becomes ``NAN_COLOUR``."""
    return _colours(t, DIVERGING_ANCHORS)


def _symmetric(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Values mapped to [0, 1] with 0 at 0.5, from their largest finite magnitude."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    reach = float(np.abs(v[finite]).max()) if finite.any() else 0.0
    if reach > 0:
        norm = np.clip(0.5 + 0.5 * (v / reach), 0.0, 1.0)  # -inf and +inf at the ends
    else:
        norm = np.where(v > 0, 1.0, np.where(v < 0, 0.0, 0.5))
    norm[np.isnan(v)] = np.nan
    return norm, -reach if reach else 0.0, reach


def _overlay(mask_rgb: np.ndarray, on: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The mask (dimmed) with the map's nonzero pixels over it; a thin line
    survives shrinking (any of its pixels under a screen pixel shows)."""
    shown = _resize_smooth((on != 0).astype(np.float64), size) > 0
    panel = (mask_rgb // 2).astype(np.uint8)
    panel[shown] = OVERLAY_COLOUR
    return panel


def _normalise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Values mapped to [0, 1] from their finite min and max.

    -inf and +inf clip to 0 and 1; NaN stays NaN. A constant map (or one
    with no finite value) maps to 0 instead of dividing by a zero span.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.where(np.isnan(v), np.nan, np.where(v > 0, 1.0, 0.0)), np.nan, np.nan
    vmin = float(v[finite].min())
    vmax = float(v[finite].max())
    with np.errstate(over="ignore", invalid="ignore"):
        span = vmax - vmin
        if span == 0.0:
            norm = np.where(np.isnan(v), np.nan, np.where(v == np.inf, 1.0, 0.0))
        elif np.isfinite(span):
            norm = (v - vmin) / span
        else:
            # The span of e.g. [-1e308, 1e308] overflows; halving cannot.
            norm = (v / 2 - vmin / 2) / (vmax / 2 - vmin / 2)
    return np.clip(norm, 0.0, 1.0), vmin, vmax


def _fit(shape: tuple[int, int], panel_size: int | None) -> tuple[int, int]:
    """Panel size for a 2-D slice, aspect ratio kept, longest side <= panel_size."""
    h, w = shape
    if panel_size is None:
        return h, w
    longest = max(h, w)
    if longest <= panel_size:
        # Whole-number factor: every input pixel becomes an equal square
        # block, so a 16 x 16 mask is magnified without distortion.
        k = panel_size // longest
        return h * k, w * k
    scale = panel_size / longest
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Index arithmetic instead of Pillow: works for any dtype (uint64 ids,
    # RGB) and never blends two labels into a third.
    h, w = a.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.intp), w - 1)
    return a[rows[:, None], cols[None, :]]


def _resize_smooth(norm: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize values in [0, 1] (NaN allowed): bilinear when shrinking."""
    if norm.shape == size:
        return norm
    if size[0] >= norm.shape[0] and size[1] >= norm.shape[1]:
        # Magnified by a whole number: bilinear would only blur the pixels.
        return _resize_nearest(norm, size)
    nan = np.isnan(norm)
    # Pillow's bilinear averages over the shrink footprint (no aliasing);
    # NaN would poison every output pixel it touches, so it is filled for
    # the averaging and put back where the nearest source pixel was NaN.
    img = Image.fromarray(np.where(nan, 0.0, norm).astype(np.float32))
    out = np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float64)
    out = np.clip(out, 0.0, 1.0)
    if nan.any():
        out = np.where(_resize_nearest(nan, size), np.nan, out)
    return out


def _mask_mode(mask: np.ndarray) -> str:
    """How the whole mask is coloured: "binary", "labels" or "soft".

    Decided on the whole mask, not the shown slice, so that every slice of
    a volume is drawn the same way.
    """
    if mask.dtype == bool:
        return "binary"
    if mask.dtype.kind == "f":
        finite = mask[np.isfinite(mask)]
        if not np.array_equal(finite, np.round(finite)):
            return "soft"
        values = finite
    else:
        values = mask
    if values.size == 0:
        return "binary"
    top = values.max()
    fg = top if top != 0 else values.min()
    # A single foreground value (0/1, 0/255, ...) is a binary mask whatever
    # the value; only two or more ids need telling apart.
    return "binary" if np.all((values == 0) | (values == fg)) else "labels"


def _colour_mask(mask2d: np.ndarray, mode: str) -> np.ndarray:
    rgb = np.zeros(mask2d.shape + (3,), np.uint8)
    nan = np.isnan(mask2d) if mask2d.dtype.kind == "f" else np.zeros(mask2d.shape, bool)
    if mode == "binary":
        rgb[(mask2d != 0) & ~nan] = 255
    elif mode == "soft":
        grey = np.round(np.clip(np.where(nan, 0.0, mask2d), 0.0, 1.0) * 255.0).astype(np.uint8)
        rgb[...] = grey[..., None]
    else:
        ids = np.where(nan, 0, mask2d).astype(np.int64) if mask2d.dtype.kind == "f" else mask2d
        # One hash per distinct id, not per pixel.
        uniq, inverse = np.unique(ids, return_inverse=True)
        rgb = label_colours(uniq)[inverse.reshape(mask2d.shape)]
    rgb[nan] = NAN_COLOUR
    return rgb


def _image_panel(image2d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Channels share one min..max so an RGB image keeps its colour balance.
    norm, _, _ = _normalise(image2d)
    if norm.ndim == 2:
        norm = norm[..., None]
    channels = [_resize_smooth(norm[..., c], size) for c in range(norm.shape[-1])]
    stacked = np.stack(channels, axis=-1)
    nan = np.isnan(stacked).any(axis=-1)
    rgb = np.round(np.nan_to_num(stacked) * 255.0).astype(np.uint8)
    rgb = np.broadcast_to(rgb, size + (3,)).copy()
    rgb[nan] = NAN_COLOUR
    return rgb


def _as_image(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The image as grey ``shape`` or RGB ``shape + (3,)``: an alpha channel
    (RGBA, grey and alpha) is dropped, a trailing axis of 1 squeezed."""
    if image.shape == shape:
        return image
    if image.shape[:-1] == shape:
        channels = image.shape[-1]
        if channels == 1:
            return image[..., 0]
        if channels in _IMAGE_CHANNELS:
            return image[..., 0] if channels == 2 else image[..., :3]
    raise ValueError(
        f"image has shape {image.shape}; expected the mask's {shape}"
        f" or {shape + (3,)} (RGB; with alpha {shape + (4,)})"
    )


def _format(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.4g}"


class _Text:
    """Measures and places text with Pillow's built-in font."""

    def __init__(self) -> None:
        try:
            # 12 px rather than the default 10, whose 2 px space all but
            # vanishes between words.
            self.font = ImageFont.load_default(size=12)
        except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
            self.font = ImageFont.load_default()
        self._draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        # One height for every line, so captions line up whatever letters
        # (ascenders, descenders) they happen to contain.
        _, top, _, bottom = self._draw.textbbox((0, 0), "Agjy|0", font=self.font)
        self.top = top
        self.height = bottom - top

    def width(self, text: str) -> int:
        if not text:
            return 0
        left, _, right, _ = self._draw.textbbox((0, 0), text, font=self.font)
        return right - min(left, 0)

    def draw(self, draw: ImageDraw.ImageDraw, x: int, y: int, text: str) -> None:
        """Draw ``text`` with the top of its line box at ``y``."""
        draw.text((x, y - self.top), text, fill=_TEXT, font=self.font)


def _as_array(name: str, value: np.ndarray) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    return a


def render_preview(
    mask: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    image: np.ndarray | None = None,
    title: str | None = None,
    panel_size: int | None = 256,
    slice_index: int | None = None,
    styles: Mapping[str, str] | None = None,
    axis: int = 0,
    details: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Draw a mask and its weight maps side by side as one RGB picture.

    Panels, left to right: ``image`` if given, the mask, then each map in
    the order of ``maps``. Each panel has a caption above it. The mask is
    drawn black where 0; a mask with one foreground value (bool, 0/1,
    0/255, ...) is white there; a mask with several ids draws each id in the
    colour ``label_colours`` gives it, the same in every call; a float mask
    with fractional values is drawn as grey levels of its values clipped to
    [0, 1]. Each map is drawn in viridis from its own finite minimum (first
    anchor, dark purple) to maximum (last anchor, yellow), with a vertical
    colour bar on its right labelled with both values; +inf and -inf are
    drawn as the maximum and minimum, NaN in ``NAN_COLOUR`` (magenta), and
    the caption then says ``[NaN]`` or ``[inf]``. A constant map is drawn
    in the first anchor colour. The image is drawn from its minimum (black)
    to its maximum (white), in colour if it has three channels.

    Parameters
    ----------
    mask : ndarray
        2-D ``(H, W)`` or 3-D ``(D, H, W)``; bool, integer or float.
    maps : mapping of str to ndarray
        Weight maps by caption, each of the mask's shape. May be empty.
    image : ndarray, optional
        The mask's shape, or that shape plus a trailing axis of 3 (RGB), 4
        (RGBA: the alpha is not drawn) or 2 (grey and alpha).
    title : str, optional
        A line written across the top.
    panel_size : int or None
        Longest side of each panel in pixels; the aspect ratio is kept.
        Larger slices are shrunk (nearest neighbour for the mask, bilinear
        for maps and image); smaller ones are magnified by the largest whole
        number that fits, nearest neighbour, so a 16 x 16 mask at 256 shows
        every pixel as a 16 x 16 block. ``None`` draws one screen pixel per
        array pixel.
    slice_index : int, optional
        3-D only: the index along ``axis`` of the slice drawn for mask, image
        and maps alike (negative counts from the end). Default: the middle
        one, ``D // 2`` of the ``D`` slices. The title line says
        ``z=<index>/<D>`` (``y=`` or ``x=`` along axis 1 or 2; the index
        counted from 0).
    axis : int
        3-D only: the axis the slice is cut across, 0 (z, default), 1 (y)
        or 2 (x).
    styles : mapping of str to str, optional
        How a map is drawn, by caption (default ``"sequential"``, as above):
        ``"diverging"`` from blue (``-m``) through white (0) to red (``+m``),
        ``m`` its largest finite magnitude, with the bar labelled ``-m`` and
        ``+m`` (a signed distance map: white on the contour);
        ``"overlay"`` its nonzero pixels in ``OVERLAY_COLOUR`` over the mask
        drawn at half brightness, no bar (a skeleton); ``"labels"`` its ids
        in the colours the mask's ids get, no bar (the carved target).
        :func:`map_panels` gives them by kind.
    details : mapping of str to str, optional
        A second caption line by map caption (the parameters the map was made
        with, :func:`panel_details`). When any is given, every caption takes
        two lines.

    Returns
    -------
    ndarray of uint8
        ``(height, width, 3)``. The height depends only on ``panel_size``,
        the slice shape and whether there is a title line; each panel adds
        to the width.

    Raises
    ------
    ValueError
        If the mask is not 2-D or 3-D, a map or the image does not have the
        mask's shape, ``panel_size`` is below 1, ``slice_index`` or ``axis``
        is given for 2-D input or is out of range.
    TypeError
        If an array is not real numeric (bool, integer or float).

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((16, 16), np.uint8)
    >>> mask[4:12, 4:12] = 1
    >>> ramp = np.tile(np.linspace(1.0, 3.0, 16), (16, 1))
    >>> rgb = render_preview(mask, {"ramp": ramp}, title="demo")
    >>> rgb.dtype, rgb.shape[2]
    (dtype('uint8'), 3)
    >>> rgb.shape[1] > 2 * 256  # the mask and the map panel, 256 wide each
    True

    Save it with ``PIL.Image.fromarray(rgb).save("preview.png")``.
    """
    mask = _as_array("mask", mask)
    if mask.ndim not in (2, 3) or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D or 3-D array, got shape {mask.shape}")
    arrays: dict[str, np.ndarray] = {}
    for name, value in maps.items():
        m = _as_array(f"map {name!r}", value)
        if m.shape != mask.shape:
            raise ValueError(f"map {name!r} has shape {m.shape}, but the mask has {mask.shape}")
        arrays[str(name)] = m
    if image is not None:
        image = _as_image(_as_array("image", image), mask.shape)
    if panel_size is not None and panel_size < 1:
        raise ValueError(f"panel_size must be at least 1 or None, got {panel_size}")
    styles = dict(styles or {})
    unknown = sorted(set(styles.values()) - set(STYLES))
    if unknown:
        raise ValueError(f"unknown preview styles {unknown}: {', '.join(STYLES)}")
    details = {name: text for name, text in (details or {}).items() if text}

    header = [title] if title else []
    if mask.ndim == 3:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 for 3-D input, got {axis}")
        depth = mask.shape[axis]
        z = depth // 2 if slice_index is None else int(slice_index)
        if not -depth <= z < depth:
            raise ValueError(f"slice_index {slice_index} is out of range for depth {depth}")
        z %= depth
        header.append(f"{_AXES[axis]}={z}/{depth}")
        mask2d = np.take(mask, z, axis=axis)
        arrays = {name: np.take(m, z, axis=axis) for name, m in arrays.items()}
        image2d = None if image is None else np.take(image, z, axis=axis)
    else:
        if slice_index is not None or axis != 0:
            raise ValueError("slice_index and axis apply to 3-D input only")
        mask2d, image2d = mask, image

    size = _fit(mask2d.shape, panel_size)
    text = _Text()

    # Each tile: caption, panel, and for a map its bar's labels and colours.
    tiles: list[tuple[str, np.ndarray, tuple[str, str] | None, Any]] = []
    if image2d is not None:
        tiles.append(("image", _image_panel(image2d, size), None, None))
    mask_rgb = _resize_nearest(_colour_mask(mask2d, _mask_mode(mask)), size)
    tiles.append(("mask", mask_rgb, None, None))
    for name, m in arrays.items():
        style = styles.get(name, "sequential")
        if style == "overlay":
            tiles.append((name, _overlay(mask_rgb, m, size), None, None))
            continue
        if style == "labels":
            labels_rgb = _resize_nearest(_colour_mask(m, "labels"), size)
            tiles.append((name, labels_rgb, None, None))
            continue
        colour = _diverging if style == "diverging" else _viridis
        norm, vmin, vmax = _symmetric(m) if style == "diverging" else _normalise(m)
        notes = []
        if m.dtype.kind == "f":
            if np.isnan(m).any():
                notes.append("NaN")
            if np.isinf(m).any():
                notes.append("inf")
        caption = f"{name} [{', '.join(notes)}]" if notes else name
        labels = (_format(vmin), _format(vmax))
        tiles.append((caption, colour(_resize_smooth(norm, size)), labels, colour))

    # The bar must fit both labels even when the panel is only a few pixels
    # tall (panel_size=None on a tiny slice, or a very flat slice).
    content_h = max(size[0], 2 * text.height + _LINE_GAP)
    # The tile's map name (its caption may have a note appended) finds its details.
    names = [None] * (len(tiles) - len(arrays)) + list(arrays)
    widths = []
    for (caption, panel, labels, _), name in zip(tiles, names, strict=True):
        w = panel.shape[1]
        if labels is not None:
            w += _BAR_GAP + _BAR_WIDTH + _LABEL_GAP + max(text.width(s) for s in labels)
        widths.append(max(w, text.width(caption), text.width(details.get(name or "", ""))))

    header_text = "  |  ".join(header)
    header_h = text.height + 2 * _LINE_GAP if header_text else 0
    caption_lines = 2 if details else 1
    panels_top = _MARGIN + header_h + caption_lines * (text.height + _LINE_GAP)
    height = panels_top + content_h + _MARGIN
    width = max(
        2 * _MARGIN + sum(widths) + _TILE_GAP * (len(tiles) - 1),
        2 * _MARGIN + text.width(header_text),
    )

    canvas = np.empty((height, width, 3), np.uint8)
    canvas[...] = _BACKGROUND
    t = np.linspace(1.0, 0.0, content_h)  # maximum at the top of the bar
    labels_at: list[tuple[int, int, str]] = []
    captions_at: list[tuple[int, str]] = []
    details_at: list[tuple[int, str]] = []
    x = _MARGIN
    for (caption, panel, labels, colour), w, name in zip(tiles, widths, names, strict=True):
        ph, pw = panel.shape[:2]
        canvas[panels_top : panels_top + ph, x : x + pw] = panel
        captions_at.append((x, caption))
        if name in details:
            details_at.append((x, details[name]))
        if labels is not None:
            bx = x + pw + _BAR_GAP
            bar = np.broadcast_to(colour(t)[:, None, :], (content_h, _BAR_WIDTH, 3))
            canvas[panels_top : panels_top + content_h, bx : bx + _BAR_WIDTH] = bar
            lx = bx + _BAR_WIDTH + _LABEL_GAP
            labels_at.append((lx, panels_top + content_h - text.height, labels[0]))
            labels_at.append((lx, panels_top, labels[1]))
        x += w + _TILE_GAP

    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    if header_text:
        text.draw(draw, _MARGIN, _MARGIN, header_text)
    for cx, caption in captions_at:
        text.draw(draw, cx, _MARGIN + header_h, caption)
    for cx, line in details_at:
        text.draw(draw, cx, _MARGIN + header_h + text.height + _LINE_GAP, line)
    for lx, ly, label in labels_at:
        text.draw(draw, lx, ly, label)
    return np.array(picture, dtype=np.uint8)
