"""Writing the maps: compression per map kind, for write time, Dataset read time and size.

Run with ``make bench`` (or ``python benchmarks/bench_write.py``). On 24
generated 512x512 instance masks (~150 nuclei each), the real maps of every
kind are written with each compression ``generate --compression`` offers,
and with two layouts it does not (the floating-point predictor, 256x256
tiles: measured here, and both lose). Per kind and compression:

- write: median milliseconds of one map written as generate writes it
  (``write_tiff_atomic``: a temporary file, renamed);
- read: median milliseconds to decode it as the Dataset does (the file's
  bytes, their SHA-256, then tifffile);
- size: bytes of all maps of that kind, against zlib at level 6 (the
  compression before issue 16).

Then ``WeightMapDataset`` over ``generate`` output for each compression:
seconds per sample (all three maps and the mask). Deflate goes through
libdeflate when imagecodecs is installed (a dependency since issue 16),
else through Python's zlib; ``--no-imagecodecs`` measures the latter.
Orders are interleaved and medians taken: the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

if "--no-imagecodecs" in sys.argv:
    sys.modules["imagecodecs"] = None  # type: ignore[assignment]

import numpy as np
import tifffile
from bench_generate import make_masks
from bench_kernels import report, row

import weightmaps
from weightmaps import MapSettings, compute_maps, read_mask
from weightmaps.io.writing import write_tiff_atomic
from weightmaps.kinds import DEFAULT_KINDS
from weightmaps.pipeline import find_masks, generate

OFFERED = ("zlib:6", "zlib:1", "zlib:9", "zstd:1", "zstd:3", "none")
# Layouts generate does not offer, written with tifffile directly.
VARIANTS = {
    "zlib:1 + float predictor": {
        "compression": "zlib",
        "compressionargs": {"level": 1},
        "predictor": 3,
    },
    "zlib:1, 256x256 tiles": {
        "compression": "zlib",
        "compressionargs": {"level": 1},
        "tile": (256, 256),
    },
}


def _has_imagecodecs() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def _decode(path: Path) -> np.ndarray:
    data = path.read_bytes()
    hashlib.sha256(data).hexdigest()
    return tifffile.imread(io.BytesIO(data))


def per_kind(maps: list[dict[str, np.ndarray]], scratch: Path, repeat: int) -> list[dict]:
    options = [o for o in OFFERED if _has_imagecodecs() or not o.startswith("zstd")]
    names = [*options, *VARIANTS]
    write: dict[tuple[str, str], list[float]] = {}
    read: dict[tuple[str, str], list[float]] = {}
    size: dict[tuple[str, str], int] = {}
    for _ in range(repeat):
        for i, mask_maps in enumerate(maps):
            for kind, array in mask_maps.items():
                for name in names:
                    path = scratch / f"{i}.{kind}.{name.replace(' ', '_')}.tif"
                    start = time.perf_counter()
                    if name in VARIANTS:
                        tifffile.imwrite(path, array, **VARIANTS[name])
                    else:
                        write_tiff_atomic(path, array, compression=name)
                    write.setdefault((kind, name), []).append(time.perf_counter() - start)
                    start = time.perf_counter()
                    back = _decode(path)
                    read.setdefault((kind, name), []).append(time.perf_counter() - start)
                    if not np.array_equal(back, array):
                        raise AssertionError(f"{name} changed the values of a {kind} map")
                    if _ == 0:
                        size[kind, name] = size.get((kind, name), 0) + path.stat().st_size
    rows = []
    for kind in maps[0]:
        base_write = np.median(write[kind, "zlib:6"])
        base_size = size[kind, "zlib:6"]
        for name in names:
            w = np.median(write[kind, name])
            r = np.median(read[kind, name])
            rows.append(
                row(
                    f"{kind}: {name}",
                    f"write {w * 1e3:.1f} ms ({base_write / w:.1f}x zlib:6), "
                    f"read {r * 1e3:.1f} ms, size {size[kind, name] / base_size:.2f}x",
                    "reported",
                    None,
                    f"{size[kind, name] / len(maps) / 1024:.0f} KiB a map",
                )
            )
    return rows


def dataset_rows(masks: Path, scratch: Path, repeat: int) -> list[dict]:
    from weightmaps.data import WeightMapDataset

    options = [o for o in ("zlib:6", "zlib:1", "zstd:3") if _has_imagecodecs() or "zstd" not in o]
    datasets = {}
    for name in options:
        out = scratch / f"ds_{name}"
        generate(masks, out, workers=1, progress=False, compression=name)
        datasets[name] = WeightMapDataset(masks, out, kinds=DEFAULT_KINDS)
    times: dict[str, list[float]] = {name: [] for name in options}
    for _ in range(repeat):
        for name, dataset in datasets.items():
            start = time.perf_counter()
            for i in range(len(dataset)):
                dataset[i]
            times[name].append((time.perf_counter() - start) / len(dataset))
    base = np.median(times["zlib:6"])
    return [
        row(
            f"WeightMapDataset, three maps a sample: {name}",
            f"{np.median(t) * 1e3:.1f} ms a sample ({base / np.median(t):.2f}x zlib:6)",
            "reported",
            None,
            "verify=True: SHA-256 of every map",
        )
        for name, t in times.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="number of masks")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all masks")
    parser.add_argument("--no-imagecodecs", action="store_true", help="deflate by Python's zlib")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    backend = "libdeflate (imagecodecs)" if _has_imagecodecs() else "Python's zlib"
    print(
        f"weightmaps {weightmaps.__version__}: writing maps of {args.count} masks of 512x512; "
        f"deflate by {backend}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        masks = Path(tmp) / "masks"
        masks.mkdir()
        make_masks(masks, args.count)
        maps = [
            compute_maps(read_mask(f.path), MapSettings(), kinds=DEFAULT_KINDS).maps
            for f in find_masks(masks)
        ]
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        rows = per_kind(maps, scratch, args.repeat)
        shutil.rmtree(scratch)
        scratch.mkdir()
        rows += dataset_rows(masks, scratch, args.repeat)
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
