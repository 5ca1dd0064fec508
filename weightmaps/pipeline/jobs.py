"""One mask's work as a worker process receives it, and what comes back.

A :class:`Job` pickles to a worker (a local process or a Dask worker); the
worker returns one of the small results below: :class:`Failed` (a one-line
reason, ``fatal`` when the next mask would fail the same way), :class:`Counted`
(the first pass of dataset-scope balance), :class:`Written` (the mask's maps
are on disk: its manifest record) or :class:`Prepared` (the device path: the
CPU part done, the maps still to compute).
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Any

from weightmaps.io.header import DEFAULT_MAX_PIXELS
from weightmaps.io.volumes import VolumeLimits
from weightmaps.io.writing import DEFAULT_COMPRESSION
from weightmaps.masktype import MaskTypeError

__all__ = [
    "FATAL_WRITE_ERRORS",
    "Counted",
    "Failed",
    "Job",
    "Prepared",
    "ReadOptions",
    "Source",
    "Written",
    "reason",
    "resolve_spacing",
]

FATAL_WRITE_ERRORS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
)
"""Writing errors that will hit every following file too: they stop the run. EFBIG
is a file size limit (``ulimit -f``, a file system's largest file): the maps of
one dataset have similar sizes."""


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How masks are read: a colour mask's channel or rule, the pixel limit."""

    channel: int | None = None
    rgb_rule: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """One mask's work, sent to a worker process.

    Attributes
    ----------
    path, rel : str
        The mask, and its path relative to MASKS.
    out_root : str
        OUT.
    kinds : tuple of str
        The outputs to write (map kinds, and ``"target"``).
    settings : MapSettings
    read : ReadOptions
    dataset_counts : dict, optional
        Summed class counts (``ClassCounts.to_dict``) for dataset-scope balance.
    chunked : bool
        A volume computed chunk by chunk.
    chunks : int, optional
        A volume's processing chunk edge; None: the zarr's own (a TIFF: 256, 2-D 2048).
    threads : int, optional
        The job's share of this machine's cores (its kernels' and its
        compression's threads); None: every core.
    volume_limits : VolumeLimits
        Checked again in the job: files change.
    compression : str
        Of the TIFF maps (:func:`weightmaps.io.writing.tiff_compression`).
    """

    path: str
    rel: str
    out_root: str
    kinds: tuple[str, ...]
    settings: Any
    read: ReadOptions
    dataset_counts: dict[str, Any] | None = None
    chunked: bool = False
    chunks: int | None = None
    threads: int | None = None
    volume_limits: VolumeLimits = VolumeLimits()
    compression: str = DEFAULT_COMPRESSION


@dataclasses.dataclass(frozen=True)
class Failed:
    """The mask failed: one line; ``fatal`` when the run cannot go on (a full disk)."""

    reason: str
    fatal: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Counted:
    """A mask's type and class counts (``ClassCounts.to_dict``)."""

    mask_type: str
    counts: dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Written:
    """A mask whose maps are written: what its manifest record holds.

    ``spacing`` is the pixel size the distances used (None: pixel units),
    ``file_spacing`` the one the file records (None: it records none).
    ``outputs`` maps each output kind to its file's record (path, bytes,
    digest, shape, dtype, min, max, mean); ``notes`` are said with ``-v``
    (chunks resumed, chunks missing from the source); ``threshold``, where a
    binary mask with noise (a JPEG) was cut into foreground;
    ``compile_seconds`` is the time the job spent compiling kernels (a
    machine's first run); ``warnings`` by kind, settings that made a poor map
    of this mask (:func:`weightmaps.recipe.map_advice`).
    """

    mask_type: str
    shape: list[int]
    dtype: str
    spacing: list[float] | None
    counts: dict[str, Any] | None
    outputs: dict[str, dict[str, Any]]
    notes: tuple[str, ...] = ()
    threshold: float | None = None
    compile_seconds: float = 0.0
    file_spacing: list[float] | None = None
    warnings: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Source:
    """What a worker learnt about a mask besides its pixels."""

    shape: tuple[int, ...]
    dtype: str
    spacing: tuple[float, ...] | None  # used for the distances
    file_spacing: tuple[float, ...] | None
    unit: str | None
    lossy: bool = False  # a JPEG: auto reads it as binary with noise
    threshold: float | None = None  # where a noisy binary mask was cut, once prepared


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prepared:
    """The device path: a mask read and prepared on the CPU (``PreparedMask``)."""

    prepared: Any
    source: Source


def reason(exc: BaseException) -> str:
    """The one line a failed mask is reported with."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def resolve_spacing(
    setting: str | tuple[float, ...] | None, file_spacing: tuple[float, ...] | None, ndim: int
) -> tuple[float, ...] | None:
    """The pixel size the distances use: none, the file's (``"auto"``) or the one given."""
    if setting is None:
        return None
    spacing = file_spacing if setting == "auto" else tuple(setting)
    if spacing is not None and len(spacing) != ndim:
        raise MaskTypeError(f"spacing {spacing} has {len(spacing)} values for a {ndim}-D mask")
    return spacing
