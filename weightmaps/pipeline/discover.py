"""Finding the masks under MASKS: regular files and zarr folders, never OUT's own files.

MASKS is a folder, searched recursively, or one or more mask files (and
folders) named one by one. Only regular files (and zarr folders) are masks:
a FIFO or a device would block a read or never end. Symbolic links are
followed only inside MASKS, and a folder that cannot be listed is a
failure, never a silent skip.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from weightmaps.io.names import is_own_output
from weightmaps.io.read import MASK_SUFFIXES
from weightmaps.io.volumes import zarr_kind
from weightmaps.pipeline.manifest import MANIFEST_NAME
from weightmaps.pipeline.reports import PipelineError

__all__ = [
    "MaskFile",
    "MasksArg",
    "NoMasksError",
    "find_masks",
    "masks_description",
    "require_masks",
]


class NoMasksError(PipelineError):
    """Nothing under MASKS is a mask, or nothing matches the patterns: nothing to do."""


@dataclasses.dataclass
class MaskFile:
    """A mask found under MASKS: its path, its path relative to MASKS, any problem."""

    path: Path
    rel: str
    error: str | None = None


MasksArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""MASKS: a folder, a mask file, or several files and folders."""


def _as_paths(masks: MasksArg) -> list[Path]:
    if isinstance(masks, (str, os.PathLike)):
        return [Path(masks)]
    return [Path(m) for m in masks]


def masks_description(masks: MasksArg) -> str:
    """MASKS as a person named it: the folder, the file, or how many files."""
    paths = _as_paths(masks)
    if len(paths) == 1:
        return str(paths[0])
    return f"{len(paths)} paths ({paths[0]}, ...)"


def find_masks(
    masks_dir: MasksArg,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    patterns: Sequence[str] = (),
) -> list[MaskFile]:
    """Every mask file under ``masks_dir``, sorted by relative path.

    ``masks_dir`` is a folder, a mask file, or a sequence of them. A file
    named so is a mask whatever its suffix (:func:`~weightmaps.read_mask`
    refuses one it cannot read), its relative path its name; the masks of
    each folder are relative to that folder.

    Hidden files and folders are skipped, symlinked folders are not entered,
    and a symlinked file is refused when it leads outside ``masks_dir``.
    A folder named ``*.zarr`` is one mask (a zarr array, or an OME-Zarr
    image) and is not entered. Files and folders inside ``out_dir``, or
    inside any folder holding a manifest (the OUT of an earlier run), named
    like this tool's outputs (``*.unet.tif``, ``*.unet.zarr`` ...) are never
    taken for masks, so OUT may be MASKS.

    Parameters
    ----------
    patterns : sequence of str
        Keep only masks matching one of these shell patterns (fnmatch): a
        pattern with a ``/`` is matched against the path relative to
        ``masks_dir`` (``*`` crosses folders), one without against the name.
    """
    paths = _as_paths(masks_dir)
    found: list[MaskFile] = []
    for path in paths:
        volume = path.name.lower().endswith(".zarr")
        if path.is_dir() and not volume:
            found.extend(_find_in_folder(path, out_dir, patterns))
        elif not patterns or _matches(path.name, path.name, patterns):
            # Named on its own: a mask whatever its suffix, read_mask says if not.
            found.append(MaskFile(path, path.name, _refusal(path, None, is_volume=volume)))
    if len(paths) > 1:
        _refuse_same_names(found)
    found.sort(key=lambda m: m.rel)
    return found


def _refuse_same_names(found: list[MaskFile]) -> None:
    """Masks of several paths under one relative name would write the same maps:
    every one after the first fails, named by its path as given."""
    first: dict[str, MaskFile] = {}
    for mask in found:
        earlier = first.setdefault(mask.rel, mask)
        if earlier is not mask:
            mask.error = f"its maps would overwrite those of {earlier.path}"
            mask.rel = str(mask.path)


def require_masks(found: list[MaskFile], masks_dir: MasksArg, patterns: Sequence[str]) -> None:
    """Refuse a run with nothing to do: no mask under MASKS, or none matching the patterns.

    Raises
    ------
    NoMasksError
        One line naming MASKS and, where given, the patterns.
    """
    if found:
        return
    where = masks_description(masks_dir)
    if patterns:
        shown = " or ".join(repr(p) for p in patterns)
        raise NoMasksError(f"no mask under {where} matches the pattern {shown}")
    suffixes = ", ".join(MASK_SUFFIXES)
    raise NoMasksError(f"no masks ({suffixes}, .zarr) found under {where}")


def _find_in_folder(
    folder_root: Path, out_dir: str | os.PathLike[str] | None, patterns: Sequence[str]
) -> list[MaskFile]:
    root = folder_root.resolve()
    out_roots = [] if out_dir is None else [Path(out_dir).resolve()]
    found: list[MaskFile] = []
    unreadable: list[OSError] = []
    for folder, subdirs, files in os.walk(root, onerror=unreadable.append):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        folder_path = Path(folder)
        if MANIFEST_NAME in files:
            out_roots.append(folder_path)  # the OUT of an earlier run
        in_out = any(folder_path.is_relative_to(r) for r in out_roots)
        volumes = [d for d in subdirs if d.lower().endswith(".zarr")]
        subdirs[:] = [d for d in subdirs if d not in volumes]  # a volume is not entered
        masks = [
            n for n in files if not n.startswith(".") and Path(n).suffix.lower() in MASK_SUFFIXES
        ]
        for name in volumes + masks:
            if in_out and is_own_output(name):
                continue
            path = folder_path / name
            rel = path.relative_to(root).as_posix()
            if not patterns or _matches(rel, name, patterns):
                found.append(MaskFile(path, rel, _refusal(path, root, is_volume=name in volumes)))
    for exc in unreadable:
        # Masks inside may have been missed: a failure, never a silent skip.
        folder_path = Path(exc.filename or root)
        rel = folder_path.relative_to(root).as_posix() if folder_path != root else "."
        found.append(MaskFile(folder_path, rel, f"cannot read folder: {exc.strerror or exc}"))
    found.sort(key=lambda m: m.rel)
    return found


_FILE_TYPES = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _refusal(path: Path, root: Path | None, *, is_volume: bool) -> str | None:
    """Why a mask found under MASKS cannot be read, or None.

    Only regular files (and zarr folders) are masks: reading a FIFO or a
    device would block or never end.
    """
    if path.is_symlink():
        if is_volume:
            return "symbolic link to a folder; refused"
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a loop: RuntimeError before Python 3.13
            return f"symbolic link cannot be followed: {getattr(exc, 'strerror', None) or exc}"
        if root is not None and not target.is_relative_to(root):
            return "symbolic link leads outside MASKS; refused"
    if is_volume:
        if zarr_kind(path) not in ("array", "ome"):
            return "not a zarr array or OME-Zarr image"
        return None
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "a folder, not a mask file"
    if not stat.S_ISREG(mode):
        what = _FILE_TYPES.get(stat.S_IFMT(mode), "a special file")
        return f"not a regular file ({what}); skipped"
    return None


def _matches(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel if "/" in p else name, p) for p in patterns)
