"""Shared fixtures: generated instance masks and the optional real data."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage as ndi

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SAMPLE_MASKS = Path(__file__).resolve().parents[1] / "sample_data" / "masks"
ALL_MASKS = [
    "binary/polyp_00.png",
    "binary/polyp_01.png",
    "nuclei/nuclei_00.tif",
    "nuclei/nuclei_01.tif",
    "nuclei/nuclei_02.tif",
    "nuclei/nuclei_03.tif",
    "semantic/street_00.png",
    "volume/nuclei3d_00.tif",
]


@pytest.fixture
def masks(tmp_path: Path) -> Path:
    """A private copy of sample_data/masks."""
    return Path(shutil.copytree(SAMPLE_MASKS, tmp_path / "masks"))


def load_script(path: Path) -> ModuleType:
    """A script (an example) imported as a module, without running its main."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_zarr_volume(masks_dir: Path) -> Path:
    """The sample nuclei volume stored as ``masks_dir/vol.zarr`` (8x48x48 chunks)."""
    import tifffile
    import zarr

    labels = tifffile.imread(SAMPLE_MASKS / "volume" / "nuclei3d_00.tif")
    path = masks_dir / "vol.zarr"
    stored = zarr.create_array(
        store=str(path), shape=labels.shape, chunks=(8, 48, 48), dtype=labels.dtype
    )
    stored[:] = labels
    return path


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent")
    return REALDATA


def random_instances(
    shape: tuple[int, ...],
    n: int,
    *,
    radius: tuple[float, float] = (2.0, 6.0),
    seed: int = 0,
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """Overlapping balls: later ones overwrite earlier ones, so many touch.

    Centres may lie near or on the border; ``ids`` gives non-contiguous labels.
    """
    rng = np.random.default_rng(seed)
    grids = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    ids = np.arange(1, n + 1) if ids is None else np.asarray(ids)
    for label in ids[:n]:
        centre = rng.uniform(0, shape)
        r = rng.uniform(*radius)
        inside = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= r * r
        labels[inside] = label
    return labels


def reference_two_nearest(labels: np.ndarray, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """One full distance transform per instance, keeping the two smallest.

    The widely copied formula stacks all transforms and sorts them; a running
    minimum of two gives the same numbers without the (instances x pixels) stack.
    """
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for label in np.unique(labels[labels > 0]):
        d = ndi.distance_transform_edt(labels != label, sampling=spacing)
        d2 = np.where(d < d1, d1, np.minimum(d2, d))
        d1 = np.minimum(d1, d)
    return d1, d2


def blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A binary mask of four overlapping random balls (radii 3 to 12)."""
    rng = np.random.default_rng(seed)
    grids = np.indices(shape)
    mask = np.zeros(shape, bool)
    for _ in range(4):
        centre = rng.uniform(0, shape)
        r = rng.uniform(3, 12)
        mask |= sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= r * r
    return mask
