"""The chunked backend: weight maps of volumes larger than memory, with Dask.

Every function here takes a dask array (a numpy array is wrapped as one
chunk), has the name and keyword arguments of its in-memory counterpart and
returns a lazy dask array with the same chunks, equal to the in-memory
function on the whole volume (to float rounding) for any chunking; why the
halos make that exact is told in :mod:`weightmaps.kernels._dask_common`.
Needs the ``[dask]`` extra (``pip install 'weightmaps[dask]'``);
``import weightmaps`` alone never imports dask.
"""

from __future__ import annotations

try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "weightmaps.chunked needs the dask extra: pip install 'weightmaps[dask]'"
    ) from exc

from weightmaps.kernels.balance_dask import balance_weight_map, class_counts
from weightmaps.kernels.edge_dask import edge_weight_map
from weightmaps.kernels.instances_dask import label_instances, separate_instances
from weightmaps.kernels.unet_dask import halo_depth, unet_weight_map

__all__ = [
    "balance_weight_map",
    "class_counts",
    "edge_weight_map",
    "halo_depth",
    "label_instances",
    "separate_instances",
    "unet_weight_map",
]
