"""Compute the three weight maps for every mask under MASKS and write them to OUT.

A stop-gap for ``make demo`` until ``weightmaps generate`` exists: it shows
the kernels on the sample data and writes ``OUT/<rel>.<kind>.tif`` (float32,
zlib) for every mask. The mask kind is guessed by a simple rule: two values
are binary, more than 16 distinct ids are instances, anything else is
semantic with 255 as the ignore value.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from weightmaps import (
    MaskReadError,
    balance_weight_map,
    edge_weight_map,
    label_instances,
    read_mask,
    unet_weight_map,
)
from weightmaps.io import MASK_SUFFIXES

IGNORE = 255


def maps_for(mask: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    values = np.unique(mask)
    if len(values) <= 2:
        kind = "binary"
        instances = label_instances(mask)
        edge = edge_weight_map(mask)
        balance = balance_weight_map(mask != 0)
    elif len(values) > 16:
        kind = "instance"
        instances = mask
        edge = edge_weight_map(mask)
        balance = balance_weight_map(mask != 0)
    else:
        kind = "semantic"
        classes = [int(v) for v in values if v != IGNORE]
        instances = label_instances(mask, ignore_value=IGNORE)
        edge = edge_weight_map(mask, classes=classes, ignore_index=IGNORE)
        balance = balance_weight_map(mask, ignore_index=IGNORE)
    ignore = mask == IGNORE if kind == "semantic" else None
    unet = unet_weight_map(instances, ignore_mask=ignore)
    return kind, {"unet": unet, "edge": edge, "balance": balance}


def write_atomic(path: Path, array: np.ndarray) -> None:
    """Write to a temporary file in the same folder, then rename: never a partial TIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        tifffile.imwrite(tmp, array, compression="zlib", metadata=None)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: demo.py MASKS OUT", file=sys.stderr)
        return 2
    masks_dir, out_dir = Path(argv[0]), Path(argv[1])
    paths = sorted(p for p in masks_dir.rglob("*") if p.suffix.lower() in MASK_SUFFIXES)
    failed = 0
    start = time.perf_counter()
    for path in paths:
        rel = path.relative_to(masks_dir)
        try:
            kind, maps = maps_for(read_mask(path))
        except (MaskReadError, ValueError, TypeError) as exc:
            print(f"FAILED {rel}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for name, array in maps.items():
            write_atomic(out_dir / rel.parent / f"{rel.stem}.{name}.tif", array)
        summary = ", ".join(f"{n} max {a.max():.2f}" for n, a in maps.items())
        print(f"{rel} ({kind}, {'x'.join(map(str, maps['unet'].shape))}): {summary}")
    elapsed = time.perf_counter() - start
    print(f"{len(paths) - failed} masks done, {failed} failed, {elapsed:.1f} s -> {out_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
