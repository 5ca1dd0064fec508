"""The recipe: a prepared mask and the settings in, every requested map out.

One loop over the registry of map kinds (:mod:`weightmaps.kinds`), run three
ways: :func:`compute_prepared` on one mask in memory (numpy), by
:func:`compute_maps_batch` on masks of one shape stacked on a torch device,
and by :func:`compute_volume_maps` on a chunked volume (lazy dask arrays).
Preparing the mask is :mod:`weightmaps.prepare`; reading and writing files
is the pipeline's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from weightmaps.kernels.class_balance import ClassCounts
from weightmaps.kinds import DEFAULT_KINDS, KINDS, REGISTRY, MapContext, kind_names
from weightmaps.masktype import MaskTypeError
from weightmaps.prepare import PreparedMask, prepare_array, prepare_volume

__all__ = [
    "MaskMaps",
    "compute_maps",
    "compute_maps_batch",
    "compute_prepared",
    "compute_volume_maps",
    "map_advice",
    "VolumeHalo",
    "volume_halos",
    "volume_refusal",
]


@dataclasses.dataclass
class MaskMaps:
    """What :func:`compute_maps` returns for one mask.

    Attributes
    ----------
    mask_type : str
        As read (binary, semantic or instance).
    maps : dict
        One map per requested kind, in registry order.
    target : array, optional
        The carved mask, when touching instances were separated.
    counts : ClassCounts, optional
        This mask's class counts.
    warnings : dict
        By kind, why these settings made a poor map of this mask (an edge
        window larger than its objects; :func:`map_advice`).
    """

    mask_type: str
    maps: dict[str, Any]
    target: Any = None
    counts: ClassCounts | None = None
    warnings: dict[str, str] = dataclasses.field(default_factory=dict)


def _ordered(kinds: str | Sequence[str]) -> list[str]:
    kinds = kind_names(kinds)
    unknown = [k for k in kinds if k not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown map kinds {unknown}; choose from {KINDS}")
    return [k for k in KINDS if k in kinds]


def compute_maps(
    mask: np.ndarray,
    settings: Any,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    spacing: Sequence[float] | None = None,
    dataset_counts: ClassCounts | None = None,
    lossy: bool = False,
) -> MaskMaps:
    """Compute the requested maps of one mask.

    Parameters
    ----------
    mask : ndarray
        2-D or 3-D label mask as read from disk.
    settings : MapSettings
        Parameters of every kind.
    kinds : str or sequence of str
        Which maps to compute (names of :data:`weightmaps.kinds.KINDS`;
        default :data:`~weightmaps.kinds.DEFAULT_KINDS`); a string is one
        name or several, comma-separated.
    spacing : sequence of float, optional
        Pixel size per axis for the distance-based maps (already resolved
        from ``settings.spacing``).
    dataset_counts : ClassCounts, optional
        Counts summed over the dataset, required when
        ``settings.balance_scope == "dataset"``.
    lossy : bool
        The mask was read from a JPEG: ``auto`` reads it as binary, its noise
        cut away (see :func:`weightmaps.prepare.prepare_array`).

    Returns
    -------
    MaskMaps
        The mask type, a map per kind (its kind's dtype and shape: float32
        ``(*spatial)`` but for ``(K, *spatial)`` signed distance maps and
        uint8 skeletons), the carved target when
        touching instances were separated, and this mask's class counts.

    Examples
    --------
    >>> import numpy as np
    >>> from weightmaps import MapSettings
    >>> mask = np.zeros((32, 32), np.uint16); mask[4:12, 4:12] = 7; mask[4:12, 14:20] = 9
    >>> result = compute_maps(mask, MapSettings())
    >>> result.mask_type, sorted(result.maps), result.maps["unet"].dtype
    ('instance', ['balance', 'edge', 'unet'], dtype('float32'))
    """
    _ordered(kinds)
    return compute_prepared(
        prepare_array(mask, settings, lossy=lossy),
        settings,
        kinds=kinds,
        spacing=spacing,
        dataset_counts=dataset_counts,
    )


def compute_prepared(
    prepared: PreparedMask,
    settings: Any,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    spacing: Sequence[float] | None = None,
    dataset_counts: ClassCounts | None = None,
) -> MaskMaps:
    """:func:`compute_maps` from a :func:`~weightmaps.prepare.prepare_array` result, on the CPU."""
    counts = prepared.class_counts()
    context = MapContext(
        spacing=None if spacing is None else tuple(spacing),
        counts=counts,
        dataset_counts=dataset_counts,
    )
    maps: dict[str, Any] = {}
    for name in _ordered(kinds):
        premade = prepared.premade.get(name)
        maps[name] = (
            premade if premade is not None else REGISTRY[name].compute(prepared, settings, context)
        )
    warnings = map_advice(prepared, settings, maps)
    return MaskMaps(prepared.mask_type, maps, prepared.target, counts, warnings)


def _family(prepared: PreparedMask) -> str:
    # Binary and instance masks share one class space (0/1, ignore 2).
    return "semantic" if prepared.mask_type == "semantic" else "foreground"


def compute_maps_batch(
    prepared: Sequence[PreparedMask],
    settings: Any,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    spacing: Sequence[float] | None = None,
    dataset_counts: ClassCounts | None = None,
    device: Any = None,
    max_bytes: int | None = None,
) -> list[MaskMaps]:
    """The maps of many prepared masks, computed in batches on a torch device.

    Masks of one shape and class space are stacked and computed together by
    each kind's torch kernel; results are numpy arrays equal to those of
    :func:`compute_maps` within ``1e-5 * w0`` (U-Net) and ``1e-5``. A kind
    without a torch kernel, or made on the CPU while preparing (an edge map
    at another size), is computed per mask on the CPU.

    Parameters
    ----------
    prepared : sequence of PreparedMask
        From :func:`~weightmaps.prepare.prepare_array` with the same
        ``settings`` and ``kinds``.
    settings, kinds, dataset_counts
        As for :func:`compute_maps`.
    spacing : sequence of float, optional
        One pixel size for all these masks.
    device : torch device or str, optional
        Where to compute (default: CPU through torch).
    max_bytes : int, optional
        Memory budget of the kernels on the device; larger batches are split
        and larger masks done in overlapping slabs (default: half the free
        GPU memory).

    Examples
    --------
    >>> import numpy as np
    >>> from weightmaps import MapSettings
    >>> from weightmaps.prepare import prepare_array
    >>> mask = np.zeros((32, 32), np.uint16); mask[4:12, 4:12] = 7; mask[4:12, 14:20] = 9
    >>> ready = [prepare_array(mask, MapSettings()), prepare_array(mask.T, MapSettings())]
    >>> out = compute_maps_batch(ready, MapSettings(), device="cpu")
    >>> [sorted(m.maps) for m in out]
    [['balance', 'edge', 'unet'], ['balance', 'edge', 'unet']]
    """
    names = _ordered(kinds)
    results = [MaskMaps(p.mask_type, {}, p.target, p.class_counts()) for p in prepared]
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prepared):
        groups.setdefault((p.values.shape, _family(p)), []).append(i)
    spacing_ = None if spacing is None else tuple(spacing)
    for members in groups.values():
        batch = [prepared[i] for i in members]
        context = MapContext(
            spacing=spacing_, dataset_counts=dataset_counts, device=device, max_bytes=max_bytes
        )
        for name in names:
            kind = REGISTRY[name]
            on_cpu = kind.on_cpu is not None and kind.on_cpu(settings)
            if kind.compute_batch is None or on_cpu:
                for i in members:
                    done = prepared[i].premade.get(name)
                    if done is None:
                        mask_context = dataclasses.replace(context, counts=results[i].counts)
                        done = kind.compute(prepared[i], settings, mask_context)
                    results[i].maps[name] = done
                continue
            computed = kind.compute_batch(batch, settings, context)
            # One (B, ...) tensor, or one tensor per mask where maps differ in shape.
            host = computed.cpu().numpy() if hasattr(computed, "cpu") else computed
            for j, i in enumerate(members):
                done = host[j]
                results[i].maps[name] = done if isinstance(done, np.ndarray) else done.cpu().numpy()
    for p, result in zip(prepared, results, strict=True):
        result.maps = {k: result.maps[k] for k in names}
        result.warnings = map_advice(p, settings, result.maps)
    return results


def map_advice(prepared: PreparedMask, settings: Any, maps: dict[str, Any]) -> dict[str, str]:
    """Warnings about settings that made poor maps of this mask, by kind.

    Each kind's :attr:`~weightmaps.kinds.spec.MapKind.advice` on its map (an
    edge window larger than the objects); the maps are what they are.

    Examples
    --------
    >>> import numpy as np
    >>> from weightmaps import MapSettings
    >>> mask = np.zeros((64, 64), np.uint8); mask[10:20, 10:20] = 1
    >>> compute_maps(mask, MapSettings()).warnings["edge"][:44]
    'the edge window k = 31 covers 1 of 1 objects'
    """
    said: dict[str, str] = {}
    for name, array in maps.items():
        advice = REGISTRY[name].advice if name in REGISTRY else None
        text = None if advice is None else advice(prepared, settings, array)
        if text:
            said[name] = text
    return said


def volume_refusal(settings: Any, kinds: Sequence[str]) -> str | None:
    """Why these settings cannot make these maps of a chunked volume, or None."""
    for name in _ordered(kinds):
        kind = REGISTRY[name]
        if kind.volume_refusal is not None:
            reason = kind.volume_refusal(settings)
            if reason is not None:
                return reason
        if kind.compute_volume is None:
            return f"{name} maps are not computed for chunked volumes"
    return None


class VolumeHalo(NamedTuple):
    """A halo the chunked computation of a volume grows its blocks by."""

    name: str  # "the unet map", "the carving of touching instances" (as refusals name it)
    depth: tuple[int, ...]  # pixels per axis
    options: tuple[str, ...]  # the command-line options that set it


def volume_halos(
    settings: Any, kinds: Sequence[str], spacing: Sequence[float] | None, ndim: int
) -> list[VolumeHalo]:
    """Every halo that making these maps of an ``ndim``-D volume grows blocks by.

    The kinds' own halos (``MapKind.halo``, the ones their chunked kernels use),
    and first the carving of touching instances when the settings may ask for
    it (``separate_touching`` on a mask that may be read as instances: the
    mask's type is not known before it is read). Kinds without a halo are left
    out; their blocks are the processing chunks. Needs the ``[dask]`` extra.
    """
    halos = []
    if settings.separate_touching and settings.mask_type in ("auto", "instance"):
        from weightmaps.kernels.instances_dask import SEPARATE_HALO

        halos.append(VolumeHalo("the carving of touching instances", (SEPARATE_HALO,) * ndim, ()))
    for name in _ordered(kinds):
        kind = REGISTRY[name]
        if kind.halo is not None:
            depth = tuple(int(d) for d in kind.halo(settings, spacing, ndim))
            halos.append(VolumeHalo(f"the {name} map", depth, kind.halo_options))
    return halos


def compute_volume_maps(
    volume: Any,
    settings: Any,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    spacing: Sequence[float] | None = None,
    dataset_counts: ClassCounts | None = None,
) -> tuple[PreparedMask, dict[str, Any]]:
    """The maps of a chunked volume, as lazy dask arrays with the volume's chunks.

    Reads the volume for its type, value range and class counts; the maps
    stay lazy (store them chunk by chunk). Returns the prepared volume (its
    ``mask_type``, ``counts`` and carved ``target``) and the maps by kind.

    Raises
    ------
    MaskTypeError
        For settings no chunked kernel can apply (see :func:`volume_refusal`),
        and as :func:`~weightmaps.prepare.prepare_volume`.
    """
    reason = volume_refusal(settings, kinds)
    if reason is not None:
        raise MaskTypeError(reason)
    prepared = prepare_volume(volume, settings)
    context = MapContext(
        spacing=None if spacing is None else tuple(spacing),
        counts=prepared.counts,
        dataset_counts=dataset_counts,
    )
    maps = {
        name: REGISTRY[name].compute_volume(prepared, settings, context)  # type: ignore[misc]
        for name in _ordered(kinds)
    }
    return prepared, maps
