"""Joint random transforms for segmentation samples with weight maps, 2D and 3D.

A weight map is only useful if it stays aligned with the mask it was computed
from. Each transform here therefore draws *one* random state per call and
applies it to every array of the sample: image, mask and weight maps.

Calling convention
------------------
The albumentations convention: a transform is a callable ``t(**sample)``
taking keyword numpy arrays and returning a new dict with the same keys.

``mask``
    Integer (or bool) labels of shape ``(*spatial)``. Its number of dimensions
    (2 or 3) sets the number of spatial axes. Resampled with nearest neighbour
    (order 0), so no label is ever invented.
``image``
    ``(*spatial)`` or ``(*spatial, C)``: spatial axes first, an optional
    trailing channel axis (channel-last, as in albumentations). Resampled
    linearly (order 1).
any other key (``weight``, ``weight_unet``, ``weight_sdf``, ``labels``, ...)
    A map of shape ``(*spatial)`` or ``(*spatial, C)`` (a trailing channel
    axis, as a signed distance map's classes). A float map is resampled
    linearly (order 1); an integer or boolean map (a skeleton, instance
    labels) by nearest neighbour, as the mask, keeping its dtype.

Any key may be missing (no image, no maps), but the spatial axes must be
known, so a sample needs a ``mask`` or at least one map (with a map that has
a channel axis, a ``mask``). All arrays must share
the same spatial shape, otherwise ``ValueError`` names the shapes. Dtypes are
kept, except that resampled float16 maps become float32 (integer
images are rounded back to their dtype). Arrays that a transform leaves
unchanged may be returned as they are, not copied; no transform writes into
its input.

Resampling
----------
:class:`RandomRescale` and :class:`Resize` map pixel centres to pixel centres
(``scipy.ndimage.zoom(..., grid_mode=True, mode="nearest")``, the mapping of
``skimage.transform.resize`` with ``mode="edge"``), with the same mapping for
all arrays. There is no anti-aliasing: it costs a Gaussian filter per call,
the mask cannot be anti-aliased anyway, and for the default scales (0.75 to
1.25) aliasing is mild. Values are not rescaled (``preserve_range``).

Resampling a weight map is an approximation of recomputing it at the new size,
and a deformation (:class:`RandomElastic`) more so: a distance map warped with
its mask is not the distance map of the warped mask, since distances stretch
and shrink with the warp (a signed distance map is then no longer a distance:
its gradient leaves 1), and a skeleton resampled by nearest neighbour may
break or thicken. For deformations, compute the maps from the augmented labels
per batch instead (:class:`weightmaps.recompute.RecomputeMaps`). The U-Net
border term depends on distances in pixels, which a rescale stretches, and the
edge map (``edge_weight_map``) depends on resolution in particular: its window
is ``kernel_size`` pixels of the mask it is computed on, as F3Net and PraNet
compute it on the mask already resized to the training size. Flips, 90-degree
rotations and crops move pixels without resampling and are exact. When the
training size is fixed, resize the mask first and compute the edge map at that
size in the generate step, rather than resizing a map computed at the native
size.

Randomness
----------
Every random number comes from torch: ``torch.rand`` / ``torch.randint`` on
the ``generator`` given to the transform, or on torch's default generator when
it is ``None`` (the default). So ``torch.manual_seed`` makes a run
reproducible, and ``DataLoader`` workers, whose torch generator PyTorch seeds
with ``base_seed + worker_id`` (``base_seed`` drawn anew for every epoch),
draw different augmentations. That avoids the classic bug of a random state
forked into every worker: numpy's global RNG used to be copied unchanged into
each worker (recent PyTorch reseeds it), and a generator object stored on a
transform still is. The same holds for an explicit ``torch.Generator`` passed
here: it is copied into every worker with the same state, so workers repeat
each other's augmentations, and with non-persistent workers every epoch
repeats the first. Pass a generator for reproducible single-process use
(tests, previews); leave it ``None`` inside a ``DataLoader``.

Transforms are plain picklable objects (no lambdas stored), as ``DataLoader``
workers started with ``spawn`` or ``forkserver`` need.

With albumentations instead
---------------------------
The maps can go through an albumentations pipeline as additional targets,
under the same keys as here::

    A.Compose([...], additional_targets={"weight": "mask", "weight_edge": "mask"})

albumentations treats an additional target by its declared type. As
``"mask"``, a map gets the same geometric transform as the mask, is padded
with the mask fill value, is skipped by pixel-level (photometric) transforms,
and is resampled with the mask interpolation: nearest by default, so rescaled
or rotated maps become blocky (exact for flips, 90-degree rotations and
crops). Declared as ``"image"`` it would be interpolated linearly, but then
every pixel-level transform in the pipeline (brightness, noise, normalisation)
changes the weights too; that is only safe in a pipeline without such
transforms.

Examples
--------
>>> import numpy as np
>>> import torch
>>> from weightmaps.transforms import Compose, RandomCrop, RandomFlip, RandomRot90
>>> mask = np.zeros((40, 30), np.int32)
>>> mask[5:20, 3:12] = 1
>>> sample = {"image": np.zeros((40, 30, 3), np.float32), "mask": mask,
...           "weight": mask * 10.0 + 1}
>>> aug = Compose([RandomFlip(), RandomRot90(), RandomCrop((16, 16))])
>>> _ = torch.manual_seed(0)
>>> out = aug(**sample)
>>> out["image"].shape, out["mask"].shape, out["weight"].shape
((16, 16, 3), (16, 16), (16, 16))
>>> bool((out["weight"] == out["mask"] * 10 + 1).all())
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

__all__ = [
    "Compose",
    "RandomCrop",
    "RandomElastic",
    "RandomFlip",
    "RandomRescale",
    "RandomRot90",
    "Resize",
]

Sample = dict[str, np.ndarray]

_IMAGE = "image"
_MASK = "mask"


# --------------------------------------------------------------------------
# Sample checks and per-role application


def _spatial_ndim(sample: Sample) -> int:
    if _MASK in sample:
        ndim = sample[_MASK].ndim
        source = "mask"
    else:
        maps = [key for key in sample if key != _IMAGE]
        if not maps:
            # An image alone is ambiguous: (H, W, C) and (Z, Y, X) look alike.
            raise ValueError(
                "cannot tell the spatial axes: the sample needs a 'mask' or a weight map, "
                f"got keys {sorted(sample)}"
            )
        ndim = sample[maps[0]].ndim
        source = repr(maps[0])
    if ndim not in (2, 3):
        raise ValueError(f"{source} must be 2D or 3D, got {ndim} dimensions")
    return ndim


def _check_sample(sample: dict[str, Any]) -> tuple[Sample, int, tuple[int, ...]]:
    """Arrays of the sample, number of spatial axes and spatial shape."""
    arrays = {key: np.asarray(value) for key, value in sample.items()}
    nd = _spatial_ndim(arrays)
    shapes = {}
    for key, arr in arrays.items():
        allowed = (nd,) if key == _MASK else (nd, nd + 1)
        if arr.ndim not in allowed:
            kind = "(*spatial)" if key == _MASK else "(*spatial) or (*spatial, C)"
            raise ValueError(
                f"{key!r} has shape {arr.shape}, expected {kind} with {nd} spatial axes"
            )
        shapes[key] = arr.shape[:nd]
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ValueError(f"spatial shapes differ: {listed}")
    return arrays, nd, next(iter(shapes.values()))


def _role(key: str, arr: np.ndarray | None = None) -> str:
    if key == _IMAGE:
        return "image"
    if key == _MASK:
        return "mask"
    if arr is not None and (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        return "labels"  # an integer map: nearest, as the mask
    return "map"


def _normalize_axes(axes: Sequence[int], nd: int, name: str) -> tuple[int, ...]:
    out = []
    for axis in axes:
        if not -nd <= axis < nd:
            raise ValueError(f"{name} axis {axis} is out of range for {nd} spatial axes")
        out.append(axis % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} axes {tuple(axes)} repeat an axis for {nd} spatial axes")
    return tuple(out)


def _per_axis(value: int | Sequence[int], nd: int, name: str) -> tuple[int, ...]:
    values = (value,) * nd if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != nd:
        raise ValueError(f"{name} {tuple(values)} has {len(values)} axes, the sample has {nd}")
    return tuple(int(v) for v in values)


def _size_arg(size: int | Sequence[int]) -> int | tuple[int, ...]:
    """An int (same for all axes) or a tuple; checked against the sample later."""
    out = int(size) if isinstance(size, int | np.integer) else tuple(int(s) for s in size)
    if min(out if isinstance(out, tuple) else (out,), default=0) < 1:
        raise ValueError(f"size must be positive integers, got {size}")
    return out


def _check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    return float(p)


# --------------------------------------------------------------------------
# Random numbers: always torch, so DataLoader's per-worker seeding applies.


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[0, high]`` (inclusive)."""
    return int(torch.randint(high + 1, (), generator=generator))


# --------------------------------------------------------------------------
# Resampling


def _zoom(arr: np.ndarray, out_shape: tuple[int, ...], role: str) -> np.ndarray:
    """Resample the spatial axes of ``arr`` to ``out_shape``, pixel centres aligned."""
    nd = len(out_shape)
    if arr.shape[:nd] == out_shape:
        return arr
    factors = [o / i for o, i in zip(out_shape, arr.shape[:nd], strict=True)]
    factors += [1.0] * (arr.ndim - nd)  # channel axis untouched
    if role in ("mask", "labels"):
        # Nearest keeps the dtype and never invents a label.
        out = ndi.zoom(arr, factors, order=0, mode="nearest", grid_mode=True)
    else:
        # zoom computes in float64; float16 and integer inputs come out float32.
        float_dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float32
        source = arr.astype(np.float32) if arr.dtype == np.float16 else arr  # zoom has no float16
        out = ndi.zoom(source, factors, order=1, mode="nearest", grid_mode=True, output=float_dtype)
        if role == "image" and not np.issubdtype(arr.dtype, np.floating):
            # Linear interpolation stays within the input range: rounding is enough.
            out = np.rint(out).astype(arr.dtype)
        elif role == "image" and out.dtype != arr.dtype:
            out = out.astype(arr.dtype)
    return out


# --------------------------------------------------------------------------
# Transforms


class Compose:
    """Apply transforms one after the other.

    Parameters
    ----------
    transforms : sequence of callable
        Each is called as ``t(**sample)`` and returns the new sample dict.

    Examples
    --------
    >>> import numpy as np
    >>> aug = Compose([RandomFlip(axes=(0,), p=1.0), Resize((4, 4))])
    >>> out = aug(mask=np.eye(2, dtype=np.uint8))
    >>> out["mask"]
    array([[0, 0, 1, 1],
           [0, 0, 1, 1],
           [1, 1, 0, 0],
           [1, 1, 0, 0]], dtype=uint8)
    """

    def __init__(self, transforms: Sequence[Callable[..., Sample]]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"{t!r} is not callable")

    def __call__(self, **sample: np.ndarray) -> Sample:
        out: Sample = dict(sample)
        for t in self.transforms:
            out = t(**out)
        return out

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class RandomCrop:
    """Crop a random window of fixed size, padding axes that are too short.

    Along an axis at least ``size`` long, the window starts at a uniform
    offset. Along a shorter axis the sample is padded to ``size``, placed at a
    uniform offset inside the window. The padding is ``image_fill`` for the
    image, ``mask_fill`` for the mask and ``weight_fill`` for every map.

    ``weight_fill=0`` (the default) means padded pixels do not count in a
    weighted loss: they add nothing to ``sum(w * loss)`` (a loss that divides
    by ``sum(w)`` ignores them fully; one that divides by the pixel count
    still counts them in the denominator). Their mask label then does not
    matter; for a sample without weight maps, set ``mask_fill`` to the
    loss's ``ignore_index`` instead.

    Parameters
    ----------
    size : int or sequence of int
        Window size per spatial axis (an int for all axes).
    image_fill, mask_fill, weight_fill : scalar
        Padding values for the image, the mask and the maps.
    generator : torch.Generator, optional
        Source of randomness; torch's default generator when ``None``. See the
        module docstring before passing one to a ``DataLoader`` dataset.

    Examples
    --------
    >>> import numpy as np
    >>> crop = RandomCrop((4, 3))
    >>> out = crop(mask=np.ones((2, 5), np.uint8), weight=np.ones((2, 5), np.float32))
    >>> out["mask"].shape, int(out["mask"].sum()), float(out["weight"].sum())
    ((4, 3), 6, 6.0)
    """

    def __init__(
        self,
        size: int | Sequence[int],
        *,
        image_fill: float = 0,
        mask_fill: int = 0,
        weight_fill: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.size = _size_arg(size)
        self.image_fill = image_fill
        self.mask_fill = mask_fill
        self.weight_fill = weight_fill
        self.generator = generator

    def __call__(self, **sample: np.ndarray) -> Sample:
        arrays, nd, shape = _check_sample(sample)
        size = _per_axis(self.size, nd, "size")
        pads: list[tuple[int, int]] = []
        slices: list[slice] = []
        for n, s in zip(shape, size, strict=True):
            offset = _randint(abs(n - s), self.generator)
            if n >= s:
                pads.append((0, 0))
                slices.append(slice(offset, offset + s))
            else:
                pads.append((offset, s - n - offset))
                slices.append(slice(None))
        fills = {"image": self.image_fill, "mask": self.mask_fill, "map": self.weight_fill}
        out = {}
        for key, arr in arrays.items():
            arr = arr[tuple(slices)]
            if any(p != (0, 0) for p in pads):
                width = pads + [(0, 0)] * (arr.ndim - nd)
                arr = np.pad(arr, width, mode="constant", constant_values=fills[_role(key)])
            out[key] = arr
        return out

    def __repr__(self) -> str:
        return (
            f"RandomCrop({self.size}, "
            f"image_fill={self.image_fill}, mask_fill={self.mask_fill}, "
            f"weight_fill={self.weight_fill})"
        )


class RandomFlip:
    """Flip each spatial axis independently with probability ``p``.

    Parameters
    ----------
    axes : sequence of int, optional
        Spatial axes that may be flipped (negative counts from the last
        spatial axis, never the channel axis); all spatial axes when ``None``.
    p : float
        Probability of flipping each axis.
    generator : torch.Generator, optional
        Source of randomness; torch's default generator when ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> out = RandomFlip(axes=(-1,), p=1.0)(mask=np.array([[1, 2, 3]]))
    >>> out["mask"]
    array([[3, 2, 1]])
    """

    def __init__(
        self,
        axes: Sequence[int] | None = None,
        p: float = 0.5,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        self.p = _check_p(p)
        self.generator = generator

    def __call__(self, **sample: np.ndarray) -> Sample:
        arrays, nd, _ = _check_sample(sample)
        axes = tuple(range(nd)) if self.axes is None else _normalize_axes(self.axes, nd, "flip")
        # One draw per axis whatever p is, so p does not shift later draws.
        flipped = tuple(a for a in axes if _rand(self.generator) < self.p)
        if not flipped:
            return arrays
        # A copy: np.flip's negative strides break torch.from_numpy and collate.
        return {k: np.ascontiguousarray(np.flip(a, flipped)) for k, a in arrays.items()}

    def __repr__(self) -> str:
        return f"RandomFlip(axes={self.axes}, p={self.p})"


class RandomRot90:
    """Rotate by ``k`` quarter turns in the plane of two spatial axes.

    With probability ``p`` a ``k`` uniform on {0, 1, 2, 3} is drawn and
    applied (``np.rot90``); otherwise nothing changes. Odd ``k`` swaps the two
    axes' lengths on non-square input.

    Parameters
    ----------
    axes : pair of int
        The rotation plane, as spatial axes (default the last two: (Y, X) of
        a 2D (Y, X) or 3D (Z, Y, X) sample).
    p : float
        Probability of drawing a rotation at all.
    generator : torch.Generator, optional
        Source of randomness; torch's default generator when ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> shapes = {RandomRot90()(mask=np.zeros((2, 5), np.uint8))["mask"].shape
    ...           for _ in range(20)}
    >>> sorted(shapes)
    [(2, 5), (5, 2)]
    """

    def __init__(
        self,
        axes: tuple[int, int] = (-2, -1),
        p: float = 1.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        self.axes = tuple(int(a) for a in axes)
        if len(self.axes) != 2:
            raise ValueError(f"axes must be two spatial axes, got {axes}")
        self.p = _check_p(p)
        self.generator = generator

    def __call__(self, **sample: np.ndarray) -> Sample:
        arrays, nd, _ = _check_sample(sample)
        axes = _normalize_axes(self.axes, nd, "rot90")
        apply = _rand(self.generator) < self.p
        k = _randint(3, self.generator)
        if not apply or k == 0:
            return arrays
        return {key: np.ascontiguousarray(np.rot90(a, k, axes)) for key, a in arrays.items()}

    def __repr__(self) -> str:
        return f"RandomRot90(axes={self.axes}, p={self.p})"


class RandomRescale:
    """Rescale by a random factor: image and maps linearly, mask nearest.

    With probability ``p`` a factor is drawn uniformly from ``scale`` and
    each axis in ``axes`` gets length ``max(1, round(n * factor))`` (one
    factor for all of them: isotropic). See the module docstring on
    resampling, and on resampled weight maps being an approximation.

    Parameters
    ----------
    scale : (float, float)
        Range of the factor.
    p : float
        Probability of rescaling at all.
    axes : sequence of int, optional
        Spatial axes to rescale; all when ``None``. ``(-2, -1)`` rescales
        only in-plane in a 3D (Z, Y, X) stack of anisotropic resolution.
    generator : torch.Generator, optional
        Source of randomness; torch's default generator when ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> out = RandomRescale(scale=(2.0, 2.0))(mask=np.eye(2, dtype=np.uint8),
    ...                                       weight=np.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> out["mask"].shape, sorted(np.unique(out["mask"]).tolist())
    ((4, 4), [0, 1])
    >>> out["weight"][0]
    array([0.  , 0.25, 0.75, 1.  ])
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.75, 1.25),
        p: float = 1.0,
        *,
        axes: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        low, high = (float(s) for s in scale)
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        self.scale = (low, high)
        self.p = _check_p(p)
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        self.generator = generator

    def __call__(self, **sample: np.ndarray) -> Sample:
        arrays, nd, shape = _check_sample(sample)
        axes = tuple(range(nd)) if self.axes is None else _normalize_axes(self.axes, nd, "rescale")
        apply = _rand(self.generator) < self.p
        low, high = self.scale
        factor = low + (high - low) * _rand(self.generator)
        if not apply:
            return arrays
        out_shape = tuple(
            max(1, round(n * factor)) if axis in axes else n for axis, n in enumerate(shape)
        )
        return {k: _zoom(a, out_shape, _role(k, a)) for k, a in arrays.items()}

    def __repr__(self) -> str:
        return f"RandomRescale(scale={self.scale}, p={self.p}, axes={self.axes})"


class Resize:
    """Resize to a fixed spatial size: image and maps linearly, mask nearest.

    The same pixel-centre mapping as :class:`RandomRescale`; see the module
    docstring on resampled weight maps (compute edge maps at the training
    size rather than resizing them).

    Parameters
    ----------
    size : int or sequence of int
        Output length per spatial axis (an int for all axes).

    Examples
    --------
    >>> import numpy as np
    >>> out = Resize((3, 2))(image=np.zeros((6, 4, 3), np.uint8), mask=np.zeros((6, 4), bool))
    >>> out["image"].shape, out["image"].dtype, out["mask"].shape, out["mask"].dtype
    ((3, 2, 3), dtype('uint8'), (3, 2), dtype('bool'))
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size_arg(size)

    def __call__(self, **sample: np.ndarray) -> Sample:
        arrays, nd, _ = _check_sample(sample)
        out_shape = _per_axis(self.size, nd, "size")
        return {k: _zoom(a, out_shape, _role(k, a)) for k, a in arrays.items()}

    def __repr__(self) -> str:
        return f"Resize({self.size})"


def _warp(arr: np.ndarray, coords: np.ndarray, role: str) -> np.ndarray:
    """Sample ``arr`` at ``coords`` (one row per spatial axis), channel by channel."""
    nd = coords.shape[0]
    nearest = role in ("mask", "labels")
    dtype = arr.dtype if nearest or arr.dtype in (np.float32, np.float64) else np.float32
    channels = arr.reshape(*arr.shape[:nd], -1)
    if channels.dtype == np.float16:  # map_coordinates has no float16
        channels = channels.astype(np.float32)
    out = np.empty(coords.shape[1:] + (channels.shape[-1],), dtype)
    for c in range(channels.shape[-1]):
        ndi.map_coordinates(
            channels[..., c], coords, out[..., c], order=0 if nearest else 1, mode="nearest"
        )
    out = out.reshape(coords.shape[1:] + arr.shape[nd:])
    if role == "image" and not np.issubdtype(arr.dtype, np.floating):
        out = np.rint(out).astype(arr.dtype)
    elif role == "image":
        out = out.astype(arr.dtype, copy=False)
    return out


class RandomElastic:
    """A smooth random deformation, as the U-Net paper trained with.

    Random displacement vectors on a coarse ``grid`` (3 x 3 in the paper),
    drawn from a Gaussian of ``std`` pixels, interpolated to every pixel by
    cubic splines; each array is then sampled at the displaced positions
    (image and float maps linearly, mask and integer maps by nearest
    neighbour; positions outside are clamped to the edge).

    The maps are only warped, not recomputed: see the module docstring on
    what that does to a distance map, and
    :class:`weightmaps.recompute.RecomputeMaps` for maps made from the
    warped labels instead.

    Parameters
    ----------
    grid : int
        Coarse grid points per axis (>= 2).
    std : float
        Standard deviation of the coarse displacements, in pixels.
    p : float
        Probability of deforming at all.
    axes : sequence of int, optional
        Spatial axes displaced; all when ``None`` (``(-2, -1)``: in-plane
        only, in a 3D stack).
    generator : torch.Generator, optional
        Source of randomness; torch's default generator when ``None``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> mask = np.zeros((32, 32), np.uint8); mask[8:24, 8:24] = 1
    >>> out = RandomElastic(std=4.0, generator=torch.Generator().manual_seed(0))(mask=mask)
    >>> out["mask"].shape, out["mask"].dtype, sorted(np.unique(out["mask"]).tolist())
    ((32, 32), dtype('uint8'), [0, 1])
    """

    def __init__(
        self,
        grid: int = 3,
        std: float = 10.0,
        p: float = 1.0,
        *,
        axes: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if int(grid) < 2:
            raise ValueError(f"grid must be at least 2, got {grid}")
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.grid = int(grid)
        self.std = float(std)
        self.p = _check_p(p)
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        self.generator = generator

    def __call__(self, **sample: np.ndarray) -> Sample:
        arrays, nd, shape = _check_sample(sample)
        axes = tuple(range(nd)) if self.axes is None else _normalize_axes(self.axes, nd, "elastic")
        apply = _rand(self.generator) < self.p
        # Drawn whether applied or not, so p does not shift later draws.
        coarse = torch.randn((len(axes),) + (self.grid,) * nd, generator=self.generator)
        if not apply:
            return arrays
        coords = np.indices(shape, dtype=np.float64)
        factors = [n / self.grid for n in shape]
        for i, axis in enumerate(axes):
            field = coarse[i].double().numpy() * self.std
            coords[axis] += ndi.zoom(field, factors, order=3, mode="nearest", grid_mode=False)
        return {k: _warp(a, coords, _role(k, a)) for k, a in arrays.items()}

    def __repr__(self) -> str:
        return f"RandomElastic(grid={self.grid}, std={self.std}, p={self.p}, axes={self.axes})"
