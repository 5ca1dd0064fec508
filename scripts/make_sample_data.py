"""Make the small synthetic sample dataset that ships in ``sample_data/``.

The examples, the demo and the tests need label masks of every kind the library
handles, small enough to keep in the repository and free of any licence
question. This script draws them from a fixed random seed, so the output is the
same, byte for byte, on every run:

* ``masks/nuclei/nuclei_NN.tif``: 2D instance masks (256x256, uint16) of
  nuclei-like ellipses, some touching each other and some cut by the image
  border, with non-contiguous instance ids in all but the first file;
* ``masks/binary/polyp_NN.png``: binary 0/255 masks (288x352) of smooth blobs;
* ``masks/semantic/street_00.png``: a 4-class street-scene mask (240x320) with
  an ignore region of value 255;
* ``masks/volume/nuclei3d_00.tif``: a 3D instance volume (24x96x96, uint16) of
  ellipsoidal nuclei, written as an ImageJ stack with its voxel spacing;
* ``images/<kind>/...``: a matching grayscale uint8 image for every mask, under
  the same relative path, so a dataset can pair them by name;
* ``README.md``: what each folder holds.

Usage::

    python scripts/make_sample_data.py OUTDIR      # the Makefile: sample_data
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

SEED = 20240611

NUCLEI_SHAPE = (256, 256)
NUCLEI_COUNT = 4
POLYP_SHAPE = (288, 352)
STREET_SHAPE = (240, 320)
VOLUME_SHAPE = (24, 96, 96)
VOXEL_SIZE_UM = (2.0, 0.5, 0.5)  # (z, y, x)
IGNORE = 255
STREET_CLASSES = {0: "road", 1: "building", 2: "car", 3: "sky"}

# Our own output files, by folder; anything else in OUTDIR is left alone.
OWN_FILES = {
    "masks/nuclei": re.compile(r"nuclei_\d+\.tif"),
    "images/nuclei": re.compile(r"nuclei_\d+\.tif"),
    "masks/binary": re.compile(r"polyp_\d+\.png"),
    "images/binary": re.compile(r"polyp_\d+\.png"),
    "masks/semantic": re.compile(r"street_\d+\.png"),
    "images/semantic": re.compile(r"street_\d+\.png"),
    "masks/volume": re.compile(r"nuclei3d_\d+\.tif"),
    "images/volume": re.compile(r"nuclei3d_\d+\.tif"),
}


# --------------------------------------------------------------------------- shapes


def random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """A uniformly random rotation matrix (QR of a Gaussian matrix, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def blob_mask(
    shape: Sequence[int],
    center: np.ndarray,
    radii: np.ndarray,
    rotation: np.ndarray,
    rng: np.random.Generator,
    *,
    spacing: Sequence[float] | None = None,
    wobble: float = 0.08,
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """An ellipsoid with a slightly irregular outline, clipped to ``shape``.

    ``center`` is in pixels; ``radii`` and ``spacing`` are in physical units, so
    the rotation acts in physical space. The outline radius is modulated by a
    few low-frequency waves over the direction from the centre. Returns the
    bounding-box slices and the boolean mask inside them, or None if the blob
    lies entirely outside the image.
    """
    ndim = len(shape)
    spacing_ = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=float)
    reach = radii.max() * (1.0 + 3.0 * wobble) / spacing_
    lo = np.maximum(np.floor(center - reach).astype(int), 0)
    hi = np.minimum(np.ceil(center + reach).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    grids = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    offsets = np.stack([(g - c) * s for g, c, s in zip(grids, center, spacing_, strict=True)], -1)
    local = offsets @ rotation / radii  # coordinates in the unit-sphere frame
    rho = np.linalg.norm(local, axis=-1)
    unit = local / np.maximum(rho, 1e-9)[..., None]
    outline = np.ones_like(rho)
    for freq in (2.0, 3.0, 5.0):
        direction = rng.normal(size=ndim)
        direction /= np.linalg.norm(direction)
        amplitude = wobble * rng.uniform(0.3, 1.0) / (freq / 2.0)
        outline += amplitude * np.sin(freq * np.pi * (unit @ direction) + rng.uniform(0, 2 * np.pi))
    mask = rho <= outline
    if not mask.any():
        return None
    return box, mask


def paint_instances(
    shape: tuple[int, ...],
    count: int,
    radius_range: tuple[float, float],
    rng: np.random.Generator,
    *,
    spacing: Sequence[float] | None = None,
    touch_fraction: float = 0.4,
    aspect_range: tuple[float, float] = (0.65, 1.0),
) -> np.ndarray:
    """Paint ``count`` non-overlapping instances labelled 1..count (fewer if it runs out of room).

    Some instances are placed against an earlier one so that they overlap; the
    overlap stays with the earlier instance, so the pair ends up sharing a
    boundary with no background between them. The others go where they
    overlap nothing. The first one is centred on the image border.
    """
    ndim = len(shape)
    spacing_ = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=float)
    labels = np.zeros(shape, dtype=np.int32)
    centers: list[np.ndarray] = []
    sizes: list[float] = []
    tries = 0
    while len(centers) < count and tries < 200 * count:
        tries += 1
        base = rng.uniform(*radius_range)
        radii = base * np.concatenate([[1.0], rng.uniform(*aspect_range, size=ndim - 1)])
        radii = np.maximum(radii, radius_range[0])  # every semi-axis within the range
        rng.shuffle(radii)
        rotation = random_rotation(rng, ndim)
        touching = bool(centers) and rng.random() < touch_fraction
        if not centers:
            center = rng.uniform(0, np.asarray(shape) - 1)
            axis = int(rng.integers(1, ndim)) if ndim > 2 else int(rng.integers(ndim))
            center[axis] = rng.choice([1.0, shape[axis] - 2.0])
        elif touching:
            k = int(rng.integers(len(centers)))
            direction = rng.normal(size=ndim)
            if ndim == 3:  # thin in z: push neighbours mostly sideways
                direction[0] *= 0.3
            direction /= np.linalg.norm(direction)
            distance = (sizes[k] + radii.mean()) * rng.uniform(0.75, 0.9)
            center = centers[k] + direction * distance / spacing_
        else:
            center = rng.uniform(-2, np.asarray(shape) + 1)
        blob = blob_mask(shape, center, radii, rotation, rng, spacing=spacing_)
        if blob is None:
            continue
        box, mask = blob
        region = labels[box]
        overlap = np.count_nonzero(region[mask])
        if touching:
            if overlap == 0 or overlap > 0.3 * mask.sum():
                continue
        elif overlap:
            continue
        free = mask & (region == 0)
        parts, n_parts = ndi.label(free)
        if n_parts > 1:
            largest = 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
            free = parts == largest
        if free.sum() < 0.6 * mask.sum() or free.sum() < 4:
            continue
        region[free] = len(centers) + 1
        centers.append(center)
        sizes.append(float(radii.mean()))
    return labels


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of distinct nonzero labels that are face-adjacent (4- / 6-connectivity)."""
    pairs: set[tuple[int, int]] = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)[:-1].ravel()
        b = np.moveaxis(labels, axis, 0)[1:].ravel()
        hit = (a != b) & (a > 0) & (b > 0)
        for x, y in zip(a[hit].tolist(), b[hit].tolist(), strict=True):
            pairs.add((min(x, y), max(x, y)))
    return pairs


def relabel(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Map labels 1..n to ``ids`` (0 stays 0), as uint16."""
    table = np.zeros(int(labels.max()) + 1, dtype=np.uint16)
    table[1:] = ids[: int(labels.max())]
    return table[labels]


# --------------------------------------------------------------------------- images


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def fluorescence(
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    blur: Sequence[float],
    texture_sigma: Sequence[float],
    rim: float,
) -> np.ndarray:
    """Bright textured nuclei on a dark background, blurred, with shot and read noise."""
    n = int(labels.max())
    brightness = np.concatenate([[0.0], rng.uniform(110, 200, size=n)])
    texture = ndi.gaussian_filter(rng.normal(size=labels.shape), texture_sigma)
    texture /= texture.std()
    inside = labels > 0
    depth = ndi.distance_transform_edt(inside & ~find_boundaries(labels, mode="inner"))
    signal = brightness[labels] * (1.0 + 0.18 * texture) * (1.0 - 0.45 * np.exp(-depth / rim))
    haze = ndi.gaussian_filter(rng.normal(size=labels.shape), 12)
    background = 14.0 + 3.0 * haze / haze.std()
    image = ndi.gaussian_filter(np.where(inside, signal, 0.0), blur) + background
    gain = 0.5  # photons per grey level
    image = rng.poisson(np.clip(image, 0, None) * gain) / gain + rng.normal(0, 2.0, labels.shape)
    return to_uint8(image)


def nuclei_2d(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    count = int(rng.integers(28, 44))
    labels = paint_instances(NUCLEI_SHAPE, count, (6.0, 14.0), rng, touch_fraction=0.35)
    n = int(labels.max())
    if index == 0:
        ids = np.arange(1, n + 1)  # one file keeps contiguous ids
    else:
        ids = rng.permutation(np.arange(1, 301))[:n]
    mask = relabel(labels, ids)
    image = fluorescence(labels, rng, blur=(1.2, 1.2), texture_sigma=(1.5, 1.5), rim=2.5)
    return mask, image


def nuclei_3d(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # radii in micrometres: about 8-11 px in xy and 2-3 slices in z
    labels = paint_instances(
        VOLUME_SHAPE,
        30,
        (3.8, 5.5),
        rng,
        spacing=VOXEL_SIZE_UM,
        touch_fraction=0.4,
        aspect_range=(0.7, 1.0),
    )
    ids = rng.permutation(np.arange(1, 301))[: int(labels.max())]
    mask = relabel(labels, ids)
    image = fluorescence(labels, rng, blur=(0.5, 1.2, 1.2), texture_sigma=(0.4, 1.5, 1.5), rim=2.0)
    return mask, image


def smooth_blob(
    shape: tuple[int, int], center: tuple[float, float], radius: float, rng: np.random.Generator
) -> np.ndarray:
    """A star-shaped blob with a smooth, low-harmonic outline."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    dy, dx = yy - center[0], xx - center[1]
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(theta)
    for k in (2, 3, 4):
        outline += rng.uniform(0.03, 0.12) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    stretch = rng.uniform(0.75, 1.0)
    return np.hypot(dy, dx * stretch) <= radius * outline


def polyp(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = POLYP_SHAPE
    if index == 0:  # one large blob, well inside
        mask = smooth_blob(POLYP_SHAPE, (h * 0.52, w * 0.45), 78.0, rng)
    else:  # a medium blob, and a small one cut by the bottom edge
        mask = smooth_blob(POLYP_SHAPE, (h * 0.4, w * 0.62), 52.0, rng)
        mask |= smooth_blob(POLYP_SHAPE, (h - 12.0, w * 0.2), 34.0, rng)
    yy, xx = np.mgrid[:h, :w].astype(float)
    # mucosa: bright centre, dark vignette, folds; the polyp slightly brighter and smoother
    vignette = 1.0 - 0.55 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2) * 4
    folds = ndi.gaussian_filter(rng.normal(size=POLYP_SHAPE), 9) * 300
    tissue = (105 + folds) * vignette
    inside = ndi.gaussian_filter(mask.astype(float), 3)
    image = tissue + 55 * inside * (0.5 + 0.5 * vignette)
    highlights = ndi.gaussian_filter((rng.random(POLYP_SHAPE) > 0.9997).astype(float), 2) * 2500
    image += highlights * (inside > 0.5)
    image = ndi.gaussian_filter(image, 1.0) + rng.normal(0, 3.0, POLYP_SHAPE)
    return (mask * 255).astype(np.uint8), to_uint8(image)


def street(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = STREET_SHAPE
    horizon = 120
    mask = np.full(STREET_SHAPE, 0, dtype=np.uint8)  # road
    # skyline: buildings of random widths and heights, sky above
    x = 0
    skyline = np.zeros(w, dtype=int)
    while x < w:
        width = int(rng.integers(25, 70))
        skyline[x : x + width] = int(rng.integers(25, 95))
        x += width
    rows, cols = np.mgrid[:h, :w]
    mask[rows < horizon] = 1
    mask[rows < skyline[cols]] = 3
    # cars: small rectangles with a rounded roof on the road
    cars: list[tuple[int, int, int, int]] = []
    for cy, cx, ch, cw in ((135, 60, 14, 30), (142, 210, 20, 42), (128, 150, 9, 18)):
        cy, cx = cy + int(rng.integers(-3, 4)), cx + int(rng.integers(-10, 11))
        mask[cy - ch // 2 : cy + ch // 2, cx - cw // 2 : cx + cw // 2] = 2
        roof = ch // 3
        mask[cy - ch // 2 - roof : cy - ch // 2, cx - cw // 4 : cx + cw // 4] = 2
        cars.append((cy, cx, ch, cw))
    # ignore: the ego vehicle's bonnet, a curved band along the bottom edge
    bonnet_top = h - 22 + 0.0009 * (cols - w / 2) ** 2 - 6 * np.exp(-(((cols - w / 2) / 60) ** 2))
    mask[rows >= bonnet_top] = IGNORE

    yy, xxf = np.mgrid[:h, :w].astype(float)
    image = np.zeros(STREET_SHAPE)
    image[mask == 3] = (215 - 0.5 * yy)[mask == 3]
    facade = 95 + 25 * ((np.floor(xxf / 9) % 2 == 0) & (np.floor(yy / 11) % 2 == 0))
    image[mask == 1] = facade[mask == 1]
    image[mask == 0] = (55 + 0.15 * (yy - horizon))[mask == 0]
    lane = (np.abs(xxf - w / 2 - (yy - horizon) * 0.05) < 1 + (yy - horizon) * 0.02) & (
        (yy // 8) % 2 == 0
    )
    image[(mask == 0) & lane & (yy > horizon)] = 170
    for cy, cx, ch, cw in cars:
        body = (mask == 2) & (np.abs(yy - cy) < ch) & (np.abs(xxf - cx) < cw)
        image[body] = rng.uniform(25, 150)
    image[mask == IGNORE] = 22
    image = ndi.gaussian_filter(image, 0.8) + rng.normal(0, 4.0, STREET_SHAPE)
    return mask, to_uint8(image)


# --------------------------------------------------------------------------- writing


def write_tiff(path: Path, array: np.ndarray) -> None:
    """A zlib-compressed TIFF without a description, date or other varying metadata."""
    tifffile.imwrite(path, array, compression="zlib", photometric="minisblack", metadata=None)


def write_imagej_stack(path: Path, volume: np.ndarray) -> None:
    """A zlib-compressed ImageJ hyperstack (ZYX) carrying the voxel size in micrometres."""
    z, y, x = VOXEL_SIZE_UM
    tifffile.imwrite(
        path,
        volume,
        imagej=True,
        compression="zlib",
        resolution=(1.0 / x, 1.0 / y),
        metadata={"spacing": z, "unit": "um", "axes": "ZYX"},
    )


def write_png(path: Path, array: np.ndarray) -> None:
    assert array.dtype == np.uint8 and array.ndim == 2  # saved as mode "L"
    Image.fromarray(array).save(path, optimize=True)


README = """\
# Sample data

Small **synthetic** segmentation data for the examples, the demo and the tests.
Everything here is made by `scripts/make_sample_data.py` from a fixed random
seed (byte-identical on every run); regenerate it with

    make sample-data            # or: python scripts/make_sample_data.py sample_data

Each mask under `masks/<kind>/` has a grayscale uint8 image with the same
relative path under `images/<kind>/`, so a dataset can pair them by name.

| mask folder | files | shape (H, W) | dtype | values |
|---|---|---|---|---|
| `nuclei/` | `nuclei_00.tif` ... `nuclei_03.tif` | 256 x 256 | uint16 | 0 bg, >0 instance id |
| `binary/` | `polyp_00.png`, `polyp_01.png` | 288 x 352 | uint8 | 0 bg, 255 object |
| `semantic/` | `street_00.png` | 240 x 320 | uint8 | classes 0-3, 255 ignore |
| `volume/` | `nuclei3d_00.tif` | 24 x 96 x 96 (Z, Y, X) | uint16 | 0 bg, >0 instance id |

Images are uint8 with the same shape as their mask. Street classes: 0 road,
1 building, 2 car, 3 sky.

- **nuclei**: 2D instance masks of nucleus-like ellipses (radii 6-14 px,
  slightly irregular outlines). Some nuclei touch each other (they share a
  boundary with no background between them), some are cut by the image border.
  Instance ids are 1..n in `nuclei_00.tif` and non-contiguous (drawn from
  1..300) in the others. Images: fluorescence-like, bright textured nuclei on a
  dark background, blurred, with noise. zlib-compressed TIFF.
- **binary**: polyp-like smooth blobs; `polyp_00` has one blob, `polyp_01` two,
  one of them cut by the bottom edge. Images: endoscopy-like grayscale. PNG
  (mode L).
- **semantic**: a street scene with 4 classes, car being the small, rare one.
  The ego vehicle's bonnet along the bottom edge is 255, the **ignore** value.
  PNG (mode L).
- **volume**: a 3D instance volume of ellipsoidal nuclei, some touching, with
  non-contiguous ids, stored as an ImageJ hyperstack (axes ZYX) with voxel size
  0.5 x 0.5 um in Y, X and 2.0 um in Z (`spacing` in the ImageJ metadata,
  the X/Y resolution tags in pixels per um), so its spacing is (2.0, 0.5, 0.5).
  zlib-compressed.
"""


def clean_old(outdir: Path) -> None:
    """Delete earlier output of this script (its own file patterns only)."""
    for folder, pattern in OWN_FILES.items():
        directory = outdir / folder
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                if path.is_file() and pattern.fullmatch(path.name):
                    path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="output folder, e.g. sample_data")
    args = parser.parse_args(argv)
    outdir: Path = args.outdir

    clean_old(outdir)
    for folder in OWN_FILES:
        (outdir / folder).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(relative: str, array: np.ndarray, writer: Callable[[Path, np.ndarray], None]) -> None:
        path = outdir / relative
        writer(path, array)
        written.append(path)
        print(f"wrote {path}  {array.shape} {array.dtype}")

    rng = np.random.default_rng(SEED)
    for i in range(NUCLEI_COUNT):
        mask, image = nuclei_2d(rng, i)
        if len(touching_pairs(mask)) < 3:
            raise RuntimeError(f"nuclei_{i:02d}: too few touching pairs; change SEED")
        save(f"masks/nuclei/nuclei_{i:02d}.tif", mask, write_tiff)
        save(f"images/nuclei/nuclei_{i:02d}.tif", image, write_tiff)
    for i in range(2):
        mask, image = polyp(rng, i)
        save(f"masks/binary/polyp_{i:02d}.png", mask, write_png)
        save(f"images/binary/polyp_{i:02d}.png", image, write_png)
    mask, image = street(rng)
    save("masks/semantic/street_00.png", mask, write_png)
    save("images/semantic/street_00.png", image, write_png)
    volume, image = nuclei_3d(rng)
    if len(touching_pairs(volume)) < 3:
        raise RuntimeError("nuclei3d_00: too few touching pairs; change SEED")
    save("masks/volume/nuclei3d_00.tif", volume, write_imagej_stack)
    save("images/volume/nuclei3d_00.tif", image, write_imagej_stack)

    readme = outdir / "README.md"
    readme.write_text(README, encoding="utf-8")
    print(f"wrote {readme}")
    total = sum(p.stat().st_size for p in written) + readme.stat().st_size
    print(f"{len(written) + 1} files, {total / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
