"""What defines a map kind: its parameters and their checks, the labels it reads,
its halo, its output, and its numpy, torch and chunked kernels.

A kind is one :class:`MapKind`, declared in a module of :mod:`weightmaps.kinds`
and listed in its registry. Everything else (the settings, the command-line
options, the manifest's parameter records, the file, device and volume
recipes) reads the registry, so a new kind is one module and a registry line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "PREVIEW_STYLES",
    "MapContext",
    "MapKind",
    "Param",
    "jsonable",
    "numbers_from_text",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Param:
    """One field of :class:`~weightmaps.settings.MapSettings`.

    Attributes
    ----------
    name : str
        The field's name, also the command-line option's (``--edge-kernel``).
    default : object
        Its default.
    help : str
        One line for ``--help`` and the settings' docstring.
    key : str, optional
        Its name among a kind's recorded parameters (default ``name``):
        ``edge_kernel`` is recorded as ``kernel_size``.
    normalize : callable, optional
        Turns a given value into its canonical form (``4`` into ``4.0``), so
        equal settings have equal digests. Raises ``TypeError`` or
        ``ValueError`` on a value of the wrong type.
    check : callable, optional
        Raises ``ValueError`` for a value out of range.
    choices : tuple of str, optional
        The values allowed (a choice on the command line).
    flag : bool
        A ``--name/--no-name`` switch on the command line.
    cli_type : type, optional
        ``int`` or ``float`` for the command line.
    parse : callable, optional
        Turns the command line's text into the value (``"2,0.5,0.5"``);
        raises ``ValueError`` with a message for the user.
    omit_at_default : bool
        Left out of the kind's recorded parameters while at its default: a
        parameter added to a kind after maps were made with it, whose
        default keeps the map as it was, so those maps stay current.
    """

    name: str
    default: Any
    help: str
    key: str | None = None
    normalize: Callable[[Any], Any] | None = None
    check: Callable[[Any], None] | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False
    cli_type: type | None = None
    parse: Callable[[str], Any] | None = None
    omit_at_default: bool = False

    @property
    def record_key(self) -> str:
        """The parameter's name in a kind's recorded parameters."""
        return self.key or self.name


@dataclasses.dataclass(frozen=True, kw_only=True)
class MapContext:
    """What a kernel needs besides the prepared mask and the settings.

    Attributes
    ----------
    spacing : tuple of float, optional
        Pixel size per axis, already resolved from the settings and the file.
    counts : ClassCounts, optional
        This mask's class counts (the prepared mask's ``classes``).
    dataset_counts : ClassCounts, optional
        Counts summed over the dataset (``balance_scope="dataset"``).
    device : torch device or str, optional
        Where a batch is computed.
    max_bytes : int, optional
        Working-memory budget of the torch kernels.
    """

    spacing: tuple[float, ...] | None = None
    counts: Any = None
    dataset_counts: Any = None
    device: Any = None
    max_bytes: int | None = None


# compute(prepared, settings, context) -> the map (numpy, or dask for volumes)
Compute = Callable[[Any, Any, MapContext], Any]
# compute_batch(prepared masks of one shape, settings, context) -> a (B, *map shape)
# tensor, or one tensor per mask where their maps differ in shape (an sdf's classes)
ComputeBatch = Callable[[Sequence[Any], Any, MapContext], Any]

PREVIEW_STYLES: tuple[str, ...] = ("sequential", "diverging", "overlay")
"""How a preview draws a map: viridis from its minimum to its maximum, a
diverging map white at 0, or drawn over the mask."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MapKind:
    """One map kind: everything the pipeline, the CLI and the manifest need of it.

    Attributes
    ----------
    name : str
        ``"unet"``: the file suffix (``<stem>.unet.tif``) and ``--kinds`` value.
    summary : str
        One line: what the map is for.
    params : tuple of Param
        The settings this kind declares (they become ``MapSettings`` fields).
    uses : tuple of str
        The settings fields its maps depend on, in the order they are recorded
        in the manifest; a change to one makes its maps stale.
    needs_instances : bool
        Whether its kernels read instance labels (connected components or the
        mask's ids), computed on the CPU before any device batch.
    default : bool
        Made when no kinds are named (``generate`` without ``--kinds``, and
        :func:`~weightmaps.recipe.compute_maps`); the kinds added after the
        first release are made only when asked for, so a run that named no
        kinds writes the same files as before.
    dtype : str
        The map's dtype (the TIFF's and the zarr array's). An integer map
        (a skeleton) is resampled by nearest neighbour in the joint
        transforms, as a mask is.
    class_axis : bool
        The map has a leading class axis, ``(K, *spatial)``: one channel
        per class (a signed distance map). Written as a multi-channel TIFF
        (ImageJ hyperstack in 2-D) or a zarr array with that axis first,
        handed to the joint transforms channel-last and to a model
        channel-first by the Dataset, and drawn one panel per class.
    preview : str
        How a preview draws it (one of :data:`PREVIEW_STYLES`).
    compute : callable
        ``(prepared, settings, context) -> ndarray``: the numpy kernel.
    compute_batch : callable, optional
        ``(prepared masks, settings, context) -> Tensor``: the torch kernel on
        a batch of one shape, ``(B, *map shape)``, or a list of one tensor
        per mask where the masks' maps differ in shape; None computes each
        mask with ``compute``.
    compute_volume : callable, optional
        ``(prepared volume, settings, context) -> dask array``: the chunked
        kernel; None refuses chunked volumes.
    on_cpu : callable, optional
        ``settings -> bool``: computed with ``compute`` while the mask is
        prepared, off the device (an edge map at another size).
    volume_refusal : callable, optional
        ``settings -> str | None``: why these settings cannot be applied to a
        chunked volume.
    halo : callable, optional
        ``(settings, spacing, ndim) -> pixels per axis`` a chunk needs around it
        to come out exact (the chunked kernels grow their blocks by it, and
        ``--max-chunk-bytes`` limits the grown blocks).
    halo_options : tuple of str
        The command-line options that set ``halo`` (``--sigma``), named when
        a volume is refused because its blocks grown by the halo are too big.
    check_settings : callable, optional
        ``settings -> None``: raises ``ValueError`` for values of its
        parameters that are each valid but not together.
    advice : callable, optional
        ``(prepared, settings, map) -> str | None``: a warning when these
        settings made a poor map of this mask (an edge window larger than its
        objects), said by ``generate``; ``map`` is the map made (a lazy array
        for a chunked volume, not to be read).
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    uses: tuple[str, ...]
    compute: Compute
    needs_instances: bool = False
    default: bool = True
    dtype: str = "float32"
    class_axis: bool = False
    preview: str = "sequential"
    compute_batch: ComputeBatch | None = None
    compute_volume: Compute | None = None
    on_cpu: Callable[[Any], bool] | None = None
    volume_refusal: Callable[[Any], str | None] | None = None
    halo: Callable[[Any, Sequence[float] | None, int], tuple[int, ...]] | None = None
    halo_options: tuple[str, ...] = ()
    check_settings: Callable[[Any], None] | None = None
    advice: Callable[[Any, Any, Any], str | None] | None = None


def jsonable(value: Any) -> Any:
    """A settings value as JSON holds it (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def numbers_from_text(text: str, kind: type = float) -> tuple:
    """``"2,0.5,0.5"`` or ``"352x352"`` as a tuple of numbers (ValueError otherwise).

    Examples
    --------
    >>> numbers_from_text("352x352", int)
    (352, 352)
    """
    parts = text.replace("x", ",").split(",")
    try:
        return tuple(kind(p) for p in parts if p.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
