"""Finding the masks under MASKS: regular files and zarr folders, never OUT's own files.

Only regular files (and zarr folders) are masks: a FIFO or a device would
block a read or never end. Symbolic links are followed only inside MASKS,
and a folder that cannot be listed is a failure, never a silent skip.
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

__all__ = ["MaskFile", "find_masks"]


@dataclasses.dataclass
class MaskFile:
    """A mask found under MASKS: its path, its path relative to MASKS, any problem."""

    path: Path
    rel: str
    error: str | None = None


def find_masks(
    masks_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    patterns: Sequence[str] = (),
) -> list[MaskFile]:
    """Every mask file under ``masks_dir``, sorted by relative path.

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
    root = Path(masks_dir).resolve()
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


def _refusal(path: Path, root: Path, *, is_volume: bool) -> str | None:
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
        if not target.is_relative_to(root):
            return "symbolic link leads outside MASKS; refused"
    if is_volume:
        if zarr_kind(path) not in ("array", "ome"):
            return "not a zarr array or OME-Zarr image"
        return None
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        what = _FILE_TYPES.get(stat.S_IFMT(mode), "a special file")
        return f"not a regular file ({what}); skipped"
    return None


def _matches(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel if "/" in p else name, p) for p in patterns)
