"""Reading ``.npy`` masks: the header checked before the array, never unpickling."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from weightmaps.io.header import (
    LIBRARY_ERRORS,
    RGB,
    RGBA,
    MaskReadError,
    Request,
    check_header,
    finish,
    library_reason,
    squeezed,
)

__all__ = ["read_npy"]


def read_npy(request: Request) -> np.ndarray:
    path = request.path
    try:
        with open(path, "rb") as fh:
            shape, dtype = _npy_header(request, fh)
            channels = None
            spatial = shape
            kept = squeezed(shape)
            if request.wants_colour and len(kept) in (3, 4) and kept[-1] in (3, 4):
                channels = RGB if kept[-1] == 3 else RGBA
                spatial = kept[:-1]
            check_header(request, spatial, channels, dtype)

            expected = fh.tell() + math.prod(shape) * dtype.itemsize
            file_size = os.fstat(fh.fileno()).st_size
            if file_size < expected:
                raise MaskReadError(
                    path,
                    f"truncated .npy file: the header promises {expected} bytes, "
                    f"the file has {file_size}",
                )
            # Same handle as the header checks, so a file replaced in between
            # cannot slip past them.
            fh.seek(0)
            data = np.lib.format.read_array(fh, allow_pickle=False)
    except MaskReadError:
        raise
    except LIBRARY_ERRORS as exc:
        raise MaskReadError(path, library_reason("cannot read .npy data", exc)) from exc
    if channels is not None:
        data = data.reshape(kept)
    return finish(request, data, channels)


def _npy_header(request: Request, fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            # Version 3.0 exists only for structured dtypes with non-Latin-1
            # field names, which are refused anyway.
            raise MaskReadError(request.path, f"unsupported .npy format version {version}")
    except MaskReadError:
        raise
    except LIBRARY_ERRORS as exc:
        raise MaskReadError(request.path, library_reason("not a readable .npy file", exc)) from exc
    return tuple(int(n) for n in shape), dtype
