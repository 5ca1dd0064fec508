"""A MONAI ``ImageReader`` for weight maps, masks and images, with their spacing.

``LoadImaged(keys=["image", "label", "weight"], reader=WeightMapReader())``
gives ``MetaTensor``\\ s whose affine carries the spacing the files record
(ImageJ spacing and resolution tags, or the manifest's record for a zarr
map), so ``pixdim`` is right without ITK (which reads a 3D TIFF's spacing as
1, 1, 1), and 3D TIFFs are read whole (a PIL reader gives their first
slice). A map's kind and parameters are in the metadata:
``weightmaps_kind`` (``"unet"``, ``"edge"`` ...) and ``weightmaps_params``
(a JSON string, so that MONAI's collation can batch it).

Axes are as stored, ``(H, W)`` or ``(D, H, W)`` (like MONAI's
``NumpyReader``, unlike its ``PILReader``, which swaps H and W): read the
image, the label and the maps with this reader so that they share one axis
order; ``reverse_indexing=True`` gives ITK's and nibabel's order (x, y, z)
to match images read by those readers.

Needs the ``[monai]`` extra; ``import weightmaps`` does not import MONAI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys

from weightmaps.io import DEFAULT_MAX_PIXELS
from weightmaps.map_files import READ_SUFFIXES, MapFile, read_map_file

__all__ = ["WeightMapReader"]


def _names(data: Sequence[Any] | Any) -> list[str]:
    if isinstance(data, str | os.PathLike):
        return [os.fspath(data)]
    return [os.fspath(name) for name in data]


class _Refused:
    """What ``read`` gives for a file it refuses: the error, raised by ``get_data``."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class WeightMapReader(ImageReader):
    """Read weightmaps' TIFF and zarr maps, masks and images for ``LoadImage(d)``.

    Parameters
    ----------
    reverse_indexing : bool
        Reverse the spatial axes (and the spacing) to ITK's and nibabel's
        x, y, z order; False (default) keeps the stored order.
    max_pixels : int
        Refuse a file whose header claims more pixels (a zarr map is read
        whole here).

    Examples
    --------
    >>> from monai.transforms import LoadImaged
    >>> load = LoadImaged(["image", "label", "weight"], reader=WeightMapReader(),
    ...                   ensure_channel_first=True)  # doctest: +SKIP
    >>> item = load({"image": "images/a.tif", "label": "masks/a.tif",
    ...              "weight": "out/a.unet.tif"})  # doctest: +SKIP
    >>> item["weight"].pixdim, item["weight"].meta["weightmaps_kind"]  # doctest: +SKIP
    (tensor([2.0000, 0.5000, 0.5000], dtype=torch.float64), 'unet')
    """

    def __init__(
        self, *, reverse_indexing: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        super().__init__()
        self.reverse_indexing = reverse_indexing
        self.max_pixels = max_pixels

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        """Whether every name ends with a suffix this reader reads."""
        return all(
            name.rstrip("/\\").lower().endswith(READ_SUFFIXES) for name in _names(filename)
        )

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        """Read one file or several (several are stacked as channels by ``get_data``).

        A file refused here (over ``max_pixels``, unreadable) is refused for
        good: ``LoadImage`` falls back to its other readers when ``read``
        raises, and PIL would read a 3D TIFF's first slice, so the error is
        kept and raised by ``get_data``.
        """
        try:
            files = [read_map_file(name, max_pixels=self.max_pixels) for name in _names(data)]
        except (OSError, ValueError) as exc:
            return _Refused(exc)
        return files[0] if len(files) == 1 else files

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """The array (channel, if any, last) and MONAI's metadata: spatial shape,
        channel axis, affine from the spacing, and the map's kind and parameters."""
        if isinstance(img, _Refused):
            raise img.error
        arrays: list[np.ndarray] = []
        headers: list[dict[str, Any]] = []
        for file in [img] if isinstance(img, MapFile) else list(img):
            array = np.asarray(file.data)
            spacing = file.spacing or (1.0,) * len(file.spatial_shape)
            if self.reverse_indexing:
                n = len(file.spatial_shape)
                order = [*reversed(range(n)), *range(n, array.ndim)]
                array = array.transpose(order)
                spacing = tuple(reversed(spacing))
            affine = np.diag([*map(float, spacing), 1.0])
            header: dict[str, Any] = {
                MetaKeys.SPATIAL_SHAPE: np.asarray(array.shape[: len(spacing)]),
                MetaKeys.ORIGINAL_CHANNEL_DIM: (
                    float("nan") if file.channel_axis is None else file.channel_axis
                ),
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPACE: SpaceKeys.RAS,
                "spacing": np.asarray(spacing, dtype=np.float64),
            }
            if file.unit is not None:
                header["spacing_unit"] = file.unit
            if file.kind is not None:
                header["weightmaps_kind"] = file.kind
                header["weightmaps_params"] = json.dumps(file.params or {}, sort_keys=True)
                header["weightmaps_mask"] = file.mask or ""
            arrays.append(array)
            headers.append(header)
        meta = headers[0]  # several files: the first one's metadata, as MONAI's readers
        if len(arrays) == 1:
            return arrays[0], meta
        if {a.shape for a in arrays} != {arrays[0].shape}:
            raise ValueError(f"files of different shapes {[a.shape for a in arrays]}")
        if meta[MetaKeys.ORIGINAL_CHANNEL_DIM] == -1:  # colour images: their channels side by side
            return np.concatenate(arrays, axis=-1), meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0  # one channel per file
        return np.stack(arrays, axis=0), meta

    def __repr__(self) -> str:
        return f"WeightMapReader(reverse_indexing={self.reverse_indexing})"

