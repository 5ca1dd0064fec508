"""A PyTorch Dataset of image + mask + precomputed weight maps.

:class:`WeightMapDataset` pairs every mask under MASKS with the maps that
``weightmaps generate MASKS MAPS`` wrote (same relative path), and with an
image of the same stem under IMAGES when given. It checks the generate
step's manifest first, so a training run never silently reads maps made
from an older mask or with other parameters, and checks each map's bytes
against the SHA-256 recorded when generate wrote them as it reads them, so
it never trains on a file put in a map's place either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import shlex
import stat
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from weightmaps._shared.text import printable
from weightmaps.io import DEFAULT_MAX_PIXELS, read_mask
from weightmaps.io.names import output_name
from weightmaps.kinds import KINDS, REGISTRY, kind_names
from weightmaps.map_files import read_tiff_checked
from weightmaps.masktype import MaskTypeError, infer_mask_type
from weightmaps.pipeline.discover import find_masks
from weightmaps.pipeline.manifest import MANIFEST_NAME, Manifest, file_sha256
from weightmaps.settings import PARAM_KEYS, PARAMS, MapSettings

__all__ = ["IMAGE_SUFFIXES", "StaleMapsError", "WeightMapDataset"]

IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")
"""Image files looked for beside a mask's stem, in this order."""

_SHOWN_PROBLEMS = 5


class StaleMapsError(RuntimeError):
    """Maps are missing, older than their masks, made with other parameters, or
    not the files generate wrote."""


@dataclasses.dataclass(frozen=True)
class _Written:
    """What the manifest says generate wrote: the file's size and SHA-256."""

    size: int | None
    sha256: str | None  # None for maps recorded before digests were


@dataclasses.dataclass(frozen=True)
class _Item:
    rel: str
    mask: str
    maps: dict[str, str]
    image: str | None
    mask_type: str | None
    written: dict[str, _Written] = dataclasses.field(default_factory=dict)  # when verifying
    threshold: float | None = None  # where generate cut a noisy (JPEG) mask


class WeightMapDataset(Dataset):
    """Masks with their precomputed weight maps (and images), as tensors.

    Parameters
    ----------
    masks_dir : path-like
        The MASKS folder given to ``weightmaps generate``.
    maps_dir : path-like
        Its OUT folder (may be ``masks_dir``).
    images_dir : path-like, optional
        Images at the same relative paths as the masks, with the same stem
        and any of :data:`IMAGE_SUFFIXES`.
    kinds : sequence of {"unet", "edge", "balance", "sdf", "skeleton"}
        Maps to load. One kind gives the item key ``"weight"``, several give
        ``"weights"`` (a dict by kind). May be empty with ``labels=True``
        (maps recomputed per batch, :class:`weightmaps.recompute.RecomputeMaps`).
    transform : callable, optional
        ``transform(image=..., mask=..., weight=...) -> dict`` on numpy
        arrays before they become tensors: image channel-last
        ``(*spatial, C)``, mask ``(*spatial)`` in its stored integer dtype
        (with ``mask_values="classes"``: the narrowest that also holds
        ``ignore_index`` where a pixel is ignored; never widened to int64,
        which some libraries resample otherwise), maps ``(*spatial)``
        float32 under ``"weight"`` (one kind) or ``"weight_<kind>"``
        (several), a signed distance map channel-last ``(*spatial, K)`` as
        the image, a skeleton as uint8 (the joint transforms resample it by
        nearest neighbour), and with ``labels`` the raw labels under
        ``"labels"`` (int64). It must return numpy arrays in the same
        layout, all of one spatial shape: a transform that resamples the mask
        but not a map raises a ValueError naming the keys and their shapes.
        The joint transforms of :mod:`weightmaps.transforms` follow this
        signature, and so does an albumentations pipeline that declares the
        map keys (and ``"labels"``) as ``additional_targets`` (see the
        albumentations how-to).
    labels : bool
        Also give the labels as stored (instance ids, class ids; the carved
        target when it is read), transformed with the mask, as ``"labels"``:
        what :class:`weightmaps.recompute.RecomputeMaps` computes maps from.
    verify : bool
        Read ``MAPS/weightmaps.json`` and refuse (``StaleMapsError``) maps
        that are missing, whose mask changed since they were made, or whose
        parameters differ from ``settings``. Masks are hashed once here, and
        each map's size is compared with the recorded one; each time a map is
        read, the bytes read are hashed and compared with the SHA-256 that
        generate recorded when it wrote them, so a map replaced by another
        file (another mask's map, or other content of the same size) is
        refused rather than trained on.
    settings : MapSettings or mapping, optional
        The parameters the caller expects the maps to have been made with
        (e.g. ``{"sigma": 5, "w0": 10}``); checked when ``verify``.
    target : {"auto", "mask", "carved"}
        Which labels become ``"mask"``: the carved target of
        ``--separate-touching`` (``"carved"``), the mask file (``"mask"``),
        or the carved one when it exists (``"auto"``).
    mask_values : {"classes", "raw"}
        ``"classes"``: binary and instance masks become 0/1 foreground,
        semantic masks keep their class ids, and ignored pixels (the
        ignore value used by generate) become ``ignore_index``. ``"raw"``:
        labels as stored.
    ignore_index : int
        Label of ignored pixels with ``mask_values="classes"`` (the default
        of ``F.cross_entropy``).
    glob : str or sequence of str
        Only masks matching (as ``weightmaps generate --glob``).
    max_pixels : int
        Refuse a mask, map or TIFF image whose header claims more pixels
        (ValueError), before anything is allocated.

    Notes
    -----
    An item is a dict: ``"image"`` ``(C, *spatial)`` float32 (values as
    stored, not rescaled), ``"mask"`` ``(*spatial)`` int64, ``"weight"`` or
    ``"weights"`` ``(*spatial)`` float32 (a signed distance map
    ``(K, *spatial)``, a skeleton 0/1), ``"labels"`` ``(*spatial)`` int64
    with ``labels``, and ``"path"`` (the mask's path relative to MASKS).
    Edge maps made at a training size (``--edge-size``) have another shape
    than the mask: the mask (nearest) and the image (linear) are resized to
    the maps' shape first.

    The dataset holds paths only, so it pickles into DataLoader workers and
    keeps no file open.

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> ds = WeightMapDataset("masks/", "out/", images_dir="images/")  # doctest: +SKIP
    >>> batch = next(iter(DataLoader(ds, batch_size=4)))  # doctest: +SKIP
    >>> batch["mask"].shape, batch["weight"].shape  # doctest: +SKIP
    (torch.Size([4, 256, 256]), torch.Size([4, 256, 256]))
    """

    def __init__(
        self,
        masks_dir: str | os.PathLike[str],
        maps_dir: str | os.PathLike[str],
        *,
        images_dir: str | os.PathLike[str] | None = None,
        kinds: Sequence[str] = ("unet",),
        transform: Callable[..., Mapping[str, Any]] | None = None,
        verify: bool = True,
        settings: MapSettings | Mapping[str, Any] | None = None,
        target: str = "auto",
        mask_values: str = "classes",
        ignore_index: int = -100,
        glob: Sequence[str] | str = (),
        max_pixels: int = DEFAULT_MAX_PIXELS,
        labels: bool = False,
    ) -> None:
        kinds = kind_names(kinds)
        if (not kinds and not labels) or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty selection of {KINDS}, got {kinds}")
        if target not in ("auto", "mask", "carved"):
            raise ValueError(f"target must be 'auto', 'mask' or 'carved', got {target!r}")
        if mask_values not in ("classes", "raw"):
            raise ValueError(f"mask_values must be 'classes' or 'raw', got {mask_values!r}")
        self.masks_dir = Path(masks_dir)
        self.maps_dir = Path(maps_dir)
        self.images_dir = None if images_dir is None else Path(images_dir)
        self.kinds = kinds
        self.labels = labels
        self.transform = transform
        self.target = target
        self.mask_values = mask_values
        self.ignore_index = ignore_index
        self.max_pixels = max_pixels
        self._asked = settings
        if not self.masks_dir.is_dir():
            raise FileNotFoundError(f"masks folder {masks_dir} does not exist")
        manifest = Manifest.load(self.maps_dir / MANIFEST_NAME) if self.maps_dir.is_dir() else None
        self.manifest_settings = dict(manifest.settings) if manifest else {}
        if verify and manifest is None:
            raise StaleMapsError(
                f"no manifest {self.maps_dir / MANIFEST_NAME}: run "
                f"{self._command()} first (or pass verify=False)"
            )
        patterns = (glob,) if isinstance(glob, str) else tuple(glob)
        masks = find_masks(self.masks_dir, out_dir=self.maps_dir, patterns=patterns)
        problems: list[str] = []
        self._items = []
        for mask in masks:
            if mask.error is None and mask.path.is_dir():
                # A zarr volume: its maps are zarr arrays, too large to be one item.
                warnings.warn(
                    f"skipped {printable(mask.rel)}: a zarr volume; read its maps with zarr "
                    "or exclude it with glob=",
                    stacklevel=2,
                )
            elif mask.error is None:
                self._items.append(self._pair(mask.rel, mask.path, manifest, verify, problems))
            elif verify:
                problems.append(f"{printable(mask.rel)}: {mask.error}")
            else:
                warnings.warn(f"skipped {printable(mask.rel)}: {mask.error}", stacklevel=2)
        if verify and settings is not None and manifest is not None:
            problems.extend(self._parameter_problems(manifest, settings))
        if problems:
            shown = "; ".join(problems[:_SHOWN_PROBLEMS])
            hidden = len(problems) - _SHOWN_PROBLEMS
            more = f" (and {hidden} more)" if hidden > 0 else ""
            raise StaleMapsError(
                f"{len(problems)} problems with the maps in {self.maps_dir}: {shown}{more}. "
                f"Regenerate with: {self._command()}"
            )
        if not self._items:
            raise FileNotFoundError(f"no masks found under {masks_dir}")

    def _command(self) -> str:
        """The generate command that remakes the maps: the manifest's last settings with
        the caller's ``settings`` on top, so running it changes no other parameter."""
        recorded = self.manifest_settings
        kinds = [k for k in KINDS if k in self.kinds or k in (recorded.get("kinds") or ())]
        merged = {k: v for k, v in recorded.items() if k in PARAMS}
        if isinstance(self._asked, MapSettings):
            merged = dataclasses.asdict(self._asked)
        elif self._asked is not None:
            merged.update(self._asked)
        try:
            wanted = dataclasses.asdict(MapSettings(**merged))
        except (TypeError, ValueError):  # a manifest of another version: flags as recorded
            wanted = merged
        default = dataclasses.asdict(MapSettings())
        words = ["weightmaps", "generate", str(self.masks_dir), str(self.maps_dir)]
        words += ["--kinds", ",".join(kinds)]
        for name, value in wanted.items():
            if value != default.get(name):
                words += _flag(name, value)
        for name in ("channel", "rgb_rule"):
            if recorded.get(name) is not None:
                words += _flag(name, recorded[name])
        return shlex.join(words)

    def _pair(
        self,
        rel: str,
        path: Path,
        manifest: Manifest | None,
        verify: bool,
        problems: list[str],
    ) -> _Item:
        record = manifest.masks.get(rel) if manifest else None
        outputs = (record or {}).get("outputs", {})
        wanted = list(self.kinds)
        carved = "target" in outputs or (
            not verify and (self.maps_dir / output_name(rel, "target")).exists()
        )
        if self.target == "carved" or (self.target == "auto" and carved):
            wanted.append("target")
        maps: dict[str, str] = {}
        for kind in wanted:
            if kind in outputs and manifest is not None:
                maps[kind] = str(manifest.output_path(self.maps_dir, outputs[kind]["path"]))
            else:
                maps[kind] = str(self.maps_dir / output_name(rel, kind))
        written: dict[str, _Written] = {}
        if verify:
            if record is None:
                problems.append(f"{rel}: no maps recorded")
            elif record.get("sha256") != file_sha256(path):
                problems.append(f"{rel}: mask changed since its maps were made")
            else:
                for kind in wanted:
                    if kind not in outputs:
                        problems.append(f"{rel}: no {kind} map")
                        continue
                    output = outputs[kind]
                    written[kind] = _Written(output.get("bytes"), output.get("sha256"))
                    problem = _size_problem(maps[kind], written[kind])
                    if problem is not None:
                        problems.append(f"{rel}: {kind} map {problem}")
        image = self._find_image(rel) if self.images_dir is not None else None
        if self.images_dir is not None and image is None:
            raise FileNotFoundError(f"no image for mask {rel} under {self.images_dir}")
        record = record or {}
        threshold = record.get("threshold")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            threshold = None
        return _Item(rel, str(path), maps, image, record.get("mask_type"), written, threshold)

    def _find_image(self, rel: str) -> str | None:
        assert self.images_dir is not None
        stem = Path(rel).with_suffix("")
        for suffix in IMAGE_SUFFIXES:
            for candidate in (suffix, suffix.upper()):
                path = self.images_dir / f"{stem}{candidate}"
                if path.is_file():
                    return str(path)
        return None

    def _parameter_problems(
        self, manifest: Manifest, settings: MapSettings | Mapping[str, Any]
    ) -> list[str]:
        if isinstance(settings, MapSettings):
            given = None  # a full MapSettings: every parameter counts
        else:
            given = {PARAM_KEYS.get(name, name) for name in settings}
            settings = MapSettings(**settings)
        problems = []
        for kind in self.kinds:
            asked = settings.kind_params(kind)
            asked.pop("kind")
            if given is not None:
                asked = {k: v for k, v in asked.items() if k in given}
            by_digest: dict[str, list[str]] = {}
            for rel in self.paths:
                output = (manifest.masks.get(rel) or {}).get("outputs", {}).get(kind)
                if output is not None and output.get("params") is not None:
                    by_digest.setdefault(output["params"], []).append(rel)
            for digest, rels in sorted(by_digest.items()):
                made = manifest.parameter_sets.get(digest, {})
                differ = sorted(k for k, v in asked.items() if made.get(k, v) != v)
                if differ:
                    values = ", ".join(f"{k}={made.get(k)!r} (asked {asked[k]!r})" for k in differ)
                    names = ", ".join(rels[:3]) + (f" and {len(rels) - 3} more" * (len(rels) > 3))
                    problems.append(f"{kind} maps of {names} were made with {values}")
        return problems

    def __len__(self) -> int:
        return len(self._items)

    @property
    def paths(self) -> list[str]:
        """Masks' paths relative to MASKS, in item order."""
        return [item.rel for item in self._items]

    def file_dicts(self) -> list[dict[str, str]]:
        """The pairing as MONAI's data list: one dict of file paths per item.

        ``{"image": ..., "label": ..., "weight": ..., "path": ...}`` (several
        kinds: ``"weight_<kind>"``), for ``monai.data.Dataset`` with
        ``LoadImaged(reader=weightmaps.monai.WeightMapReader())``. The label
        is the carved target when the item uses it, else the mask, as stored
        (``mask_values`` does not apply). The manifest was checked when this
        dataset was made; MONAI's loader then reads the files without the
        per-read SHA-256 check of ``__getitem__``.

        Examples
        --------
        >>> ds = WeightMapDataset("masks/", "out/", images_dir="images/")  # doctest: +SKIP
        >>> ds.file_dicts()[0]["weight"]  # doctest: +SKIP
        'out/a.unet.tif'
        """
        files = []
        for item in self._items:
            entry = {} if item.image is None else {"image": item.image}
            entry["label"] = item.maps.get("target", item.mask)
            if len(self.kinds) == 1:
                entry["weight"] = item.maps[self.kinds[0]]
            else:
                entry.update({f"weight_{kind}": item.maps[kind] for kind in self.kinds})
            entry["path"] = item.rel
            files.append(entry)
        return files

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self._items[index]
        raw = self._raw_labels(item)
        labels = (
            raw
            if self.mask_values == "raw"
            else self._as_classes(raw, item.mask_type, item.threshold)
        )
        maps = {kind: _map_array(self._read_map(item, kind), kind) for kind in self.kinds}
        image = (
            None if item.image is None else _read_image(item.image, labels.ndim, self.max_pixels)
        )
        shape = labels.shape
        labels, image = _match_map_shape(labels, image, maps, item.rel)
        sample: dict[str, Any] = {"mask": labels}
        if image is not None:
            sample["image"] = image
        if self.labels:
            sample["labels"] = _resized_labels(raw, labels.shape) if shape != labels.shape else raw
            sample["labels"] = sample["labels"].astype(np.int64)
        if len(self.kinds) == 1:
            sample["weight"] = maps[self.kinds[0]]
        elif self.kinds:
            sample.update({f"weight_{kind}": array for kind, array in maps.items()})
        if self.transform is not None:
            keys = list(sample)
            sample = dict(self.transform(**sample))
            _check_transformed(sample, keys, self._channel_keys(), item.rel)
        return self._to_tensors(sample, item.rel)

    def _read_map(self, item: _Item, kind: str) -> np.ndarray:
        path = item.maps[kind]
        written = item.written.get(kind)
        if written is None:  # not verifying
            return _read_map(path, self.max_pixels)
        # The bytes are read once: hashed, then decoded from memory, so the map
        # returned is exactly the one checked.
        data = _read_regular(path, limit=None if written.size is None else written.size + 1)
        if data is None:
            problem = "is not a regular file"
        elif written.size is not None and len(data) != written.size:
            problem = f"is not the {written.size} bytes generate wrote"
        elif written.sha256 is not None and hashlib.sha256(data).hexdigest() != written.sha256:
            problem = "is not the file generate wrote (its SHA-256 differs from the manifest's)"
        else:
            return _read_map(io.BytesIO(data), self.max_pixels)
        raise StaleMapsError(
            f"{kind} map {path} of mask {item.rel} {problem}: delete it. "
            f"Regenerate with: {self._command()}"
        )

    def _channel_keys(self) -> set[str]:
        """Sample keys whose last axis is channels: the image, maps with classes."""
        named = {self.kinds[0]: "weight"} if len(self.kinds) == 1 else {}
        return {"image"} | {
            named.get(kind, f"weight_{kind}") for kind in self.kinds if REGISTRY[kind].class_axis
        }

    def _raw_labels(self, item: _Item) -> np.ndarray:
        if "target" in item.maps:
            return self._read_map(item, "target")
        return read_mask(item.mask, max_pixels=self.max_pixels)

    def _as_classes(
        self, labels: np.ndarray, mask_type: str | None, threshold: float | None = None
    ) -> np.ndarray:
        ignore_value = self.manifest_settings.get("ignore_value")
        ignore = None if ignore_value is None else labels == ignore_value
        if mask_type is None:  # no manifest record: decide as generate's auto rule does
            try:
                mask_type = infer_mask_type(labels, ignore_value=ignore_value)
            except MaskTypeError:
                mask_type = "semantic"
        ignored = ignore is not None and bool(ignore.any())
        if mask_type in ("binary", "instance"):
            valid = labels if ignore is None else labels[~ignore]
            top = float(valid.max()) if valid.size else 0.0
            # Binary masks are cut where generate cut them: at the threshold it
            # recorded (a JPEG's noise), else at half their maximum.
            cut = top / 2 if threshold is None else threshold
            foreground = labels > cut if mask_type == "binary" else labels != 0
            dtype = labels.dtype if labels.dtype.kind in "iu" else np.dtype(np.uint8)
            classes = foreground.astype(_holding(dtype, self.ignore_index if ignored else 0))
        else:
            dtype = labels.dtype if labels.dtype.kind in "iu" else np.dtype(np.int64)
            classes = labels.astype(_holding(dtype, self.ignore_index if ignored else 0))
        if ignored:
            classes[ignore] = self.ignore_index
        return classes

    def _to_tensors(self, sample: Mapping[str, Any], rel: str) -> dict[str, Any]:
        out: dict[str, Any] = {"path": rel}
        if "image" in sample:
            image = np.asarray(sample["image"], dtype=np.float32)
            out["image"] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))
        out["mask"] = torch.from_numpy(np.ascontiguousarray(sample["mask"], dtype=np.int64))
        if self.labels:
            out["labels"] = torch.from_numpy(np.ascontiguousarray(sample["labels"], np.int64))
        if len(self.kinds) == 1:
            out["weight"] = _map_tensor(sample["weight"], self.kinds[0])
        elif self.kinds:
            out["weights"] = {k: _map_tensor(sample[f"weight_{k}"], k) for k in self.kinds}
        return out


def _holding(dtype: np.dtype, value: int) -> np.dtype:
    """``dtype``, widened just enough to hold ``value`` (uint8 and -100 give int16)."""
    if np.can_cast(np.min_scalar_type(value), dtype):
        return np.dtype(dtype)
    return np.promote_types(dtype, np.min_scalar_type(value))


def _check_transformed(
    sample: Mapping[str, Any], keys: Sequence[str], channel_keys: set[str], rel: str
) -> None:
    """Every array the transform was given comes back, all of one spatial shape
    (``channel_keys``: the arrays whose last axis is channels, not space)."""
    missing = [key for key in keys if key not in sample]
    if missing:
        raise ValueError(f"{rel}: the transform returned no {', '.join(missing)}")
    shapes = {
        key: tuple(np.shape(sample[key]))[: -1 if key in channel_keys else None] for key in keys
    }
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ValueError(
            f"{rel}: after the transform the spatial shapes differ ({listed}; image without "
            "its channel axis): a transform must resample the image, the mask and every map "
            "alike (albumentations: declare the maps in additional_targets)"
        )


def _flag(name: str, value: Any) -> list[str]:
    """``weightmaps generate`` option words for a setting."""
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [option if value else option.replace("--", "--no-", 1)]
    if isinstance(value, list | tuple):
        return [option, ",".join(_number(v) for v in value)]
    return [option, _number(value)]


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _float_tensor(array: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _map_array(array: np.ndarray, kind: str) -> np.ndarray:
    """A map as the transforms take it: float32 (an integer map, a skeleton, in its
    own dtype), and a ``(K, *spatial)`` map channel-last, ``(*spatial, K)``."""
    if np.dtype(REGISTRY[kind].dtype).kind == "f":
        array = array.astype(np.float32, copy=False)
    return np.moveaxis(array, 0, -1) if REGISTRY[kind].class_axis else array


def _map_tensor(array: Any, kind: str) -> torch.Tensor:
    """A map as a float32 tensor, a class axis first again: ``(K, *spatial)``."""
    if REGISTRY[kind].class_axis:
        array = np.moveaxis(np.asarray(array), -1, 0)
    return _float_tensor(array)


def _resized_labels(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from skimage.transform import resize

    resized = resize(labels, shape, order=0, preserve_range=True, anti_aliasing=False)
    return resized.astype(labels.dtype)


def _read_regular(path: str, limit: int | None) -> bytes | None:
    """Up to ``limit`` bytes of ``path``; None unless it is a regular file.

    Opened without blocking, so a FIFO put in a map's place is refused rather
    than waited on; the limit stops a larger file swapped in from being read
    whole.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fh.read() if limit is None else fh.read(limit)


def _size_problem(path: str, written: _Written) -> str | None:
    """Why the map file at ``path`` cannot be the one recorded, from its size alone."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "file missing"
    if not stat.S_ISREG(info.st_mode):
        return "file missing"
    if written.size is not None and info.st_size != written.size:
        return f"{path} changed since generate wrote it ({info.st_size} bytes, not {written.size})"
    return None


def _read_map(source: str | io.BytesIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return read_tiff_checked(source, max_pixels)[0]


def _read_image(path: str, ndim: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image as ``(*spatial, C)``: grey images get a channel axis of 1."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        # Mapped first: the header's shape is checked before any pixel is read.
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        pixels = math.prod(mapped.shape[:ndim])
        if pixels > max_pixels:
            raise ValueError(
                f"{path}: has {pixels} pixels, more than the limit of {max_pixels} (max_pixels)"
            )
        image = np.array(mapped)
    elif suffix in (".tif", ".tiff"):
        image = read_tiff_checked(path, max_pixels)[0]
    else:
        from PIL import Image

        with Image.open(path) as img:
            # A palette image's pixels are indices into its palette: read the colours.
            if img.mode in ("P", "PA"):
                alpha = img.mode == "PA" or "transparency" in img.info
                img = img.convert("RGBA" if alpha else "RGB")
            image = np.asarray(img)
    if image.ndim == ndim:
        image = image[..., None]
    return image


def _match_map_shape(
    labels: np.ndarray,
    image: np.ndarray | None,
    maps: Mapping[str, np.ndarray],
    rel: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    # Spatial shapes: a signed distance map's classes are its last axis here.
    shapes = {array.shape[: labels.ndim] for array in maps.values()}
    if len(shapes) > 1:
        raise ValueError(f"{rel}: maps of different shapes {sorted(shapes)}; load them apart")
    if image is not None and image.shape[:-1] != labels.shape:
        raise ValueError(f"{rel}: image shape {image.shape[:-1]} differs from mask {labels.shape}")
    (shape,) = shapes or {labels.shape}
    if shape == labels.shape:
        return labels, image
    from skimage.transform import resize

    resized = resize(labels, shape, order=0, preserve_range=True, anti_aliasing=False)
    labels = resized.astype(labels.dtype)
    if image is not None:
        image = resize(
            image, (*shape, image.shape[-1]), order=1, preserve_range=True, anti_aliasing=False
        )
    return labels, image
