"""Maps made from a batch's augmented labels, per batch, on the training device.

Two ways to train with weight maps, with the same Dataset and losses:

- **precompute, rigid augmentation**: ``weightmaps generate`` once, then
  :class:`~weightmaps.data.WeightMapDataset` reads the maps and the joint
  transforms move them with the mask. Flips, quarter turns and crops are
  exact; a rescale only approximates the map of the rescaled mask.
- **recompute, any augmentation**: the Dataset gives the augmented labels
  (``labels=True``) and :class:`RecomputeMaps` makes the maps from them in
  the training loop, on the training device. Elastic deformations, shears
  and rotations by any angle then give the maps of the labels the model
  sees: a distance map warped with its mask is not the distance map of the
  warped mask (distances stretch with the warp).

What the second costs, and how far a warped map is from the recomputed one
for the U-Net paper's deformation, is measured by
``benchmarks/bench_recompute.py`` (``make bench``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from weightmaps.kinds import KINDS, REGISTRY, MapContext, kind_names
from weightmaps.prepare import prepare_array
from weightmaps.settings import MapSettings

__all__ = ["RecomputeMaps"]


class RecomputeMaps:
    """Compute the chosen maps of a batch from its labels: a training-loop hook.

    ``batch = recompute(batch)`` reads ``batch["labels"]`` (``(B, *spatial)``,
    the labels as stored: instance ids, class ids, after augmentation; what
    ``WeightMapDataset(..., labels=True)`` gives), computes every kind of
    ``kinds`` for every item with the registry's kernels, and returns the
    batch with the maps where the Dataset puts precomputed ones:
    ``"weight"`` for one kind, ``"weights"`` (a dict by kind, merged into
    one already there) for several. Each map is a float32 tensor on
    ``device``: ``(B, *spatial)``, ``(B, K, *spatial)`` for a signed
    distance map.

    The mask is read as ``generate`` reads it (type, ignore value, carving,
    connected components: on the CPU), then the maps are computed on the
    device by each kind's torch kernel; on a CPU device by the numpy kernels
    (faster there), as are kinds without a torch kernel (skeletons). The
    maps equal those ``generate`` writes for the same labels (to ``1e-5 *
    w0`` and ``1e-5`` on a GPU, as :func:`weightmaps.recipe.compute_maps_batch`).

    Parameters
    ----------
    kinds : sequence of str
        Maps to make (names of :data:`weightmaps.kinds.KINDS`).
    settings : MapSettings or mapping, optional
        Their parameters, e.g. those of the maps precomputed before
        (``settings_from_record(dataset.manifest_settings)``). Masks without
        foreground are accepted (a crop may hold none). Name the mask type
        (``mask_type="instance"``): an augmented crop can look like another.
    device : torch device or str, optional
        Where the maps are computed and left. Default: the labels' device.
        ``"torch:cpu"``: the torch kernels on the CPU (what a GPU runs; for
        tests and comparison).
    spacing : sequence of float, optional
        Pixel size per axis for the distance-based maps.
    dataset_counts : ClassCounts, optional
        For class-balance maps of ``balance_scope="dataset"``.
    max_bytes : int, optional
        Memory budget of the torch kernels on the device.

    Examples
    --------
    >>> import torch
    >>> labels = torch.zeros((2, 32, 32), dtype=torch.int64)
    >>> labels[:, 4:12, 4:12] = 1; labels[:, 4:12, 14:20] = 2
    >>> recompute = RecomputeMaps(("unet", "edge"), settings={"mask_type": "instance"})
    >>> batch = recompute({"labels": labels})
    >>> sorted(batch["weights"]), batch["weights"]["unet"].shape
    (['edge', 'unet'], torch.Size([2, 32, 32]))
    """

    def __init__(
        self,
        kinds: Sequence[str],
        *,
        settings: Any = None,
        device: torch.device | str | None = None,
        spacing: Sequence[float] | None = None,
        dataset_counts: Any = None,
        max_bytes: int | None = None,
    ) -> None:
        kinds = kind_names(kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty selection of {KINDS}, got {kinds}")
        if settings is None:
            settings = MapSettings()
        elif isinstance(settings, Mapping):
            settings = MapSettings(**settings)
        self.kinds = tuple(k for k in KINDS if k in kinds)
        self.settings = dataclasses.replace(settings, allow_empty=True)
        self.torch_on_cpu = device == "torch:cpu"
        if self.torch_on_cpu:
            device = "cpu"
        self.device = None if device is None else torch.device(device)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.dataset_counts = dataset_counts
        self.max_bytes = max_bytes

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        maps = self.maps(batch["labels"])
        out = dict(batch)
        if len(maps) == 1 and "weights" not in batch:
            out["weight"] = next(iter(maps.values()))
        else:
            out["weights"] = {**batch.get("weights", {}), **maps}
        return out

    def maps(self, labels: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """The maps of a ``(B, *spatial)`` stack of labels, by kind, on the device."""
        device = self.device
        if device is None:
            device = labels.device if isinstance(labels, torch.Tensor) else torch.device("cpu")
        host = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if host.ndim not in (3, 4):
            raise ValueError(f"labels must be (B, *spatial), 2-D or 3-D masks; got {host.shape}")
        on_device = device.type != "cpu" or self.torch_on_cpu
        prepared = [
            prepare_array(item, self.settings, kinds=self.kinds if on_device else ())
            for item in host
        ]
        # Binary and instance masks share a class space, semantic ones theirs.
        groups: dict[bool, list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(p.mask_type == "semantic", []).append(i)
        per_item: dict[str, list[Any]] = {name: [None] * len(prepared) for name in self.kinds}
        for members in groups.values():
            batch = [prepared[i] for i in members]
            for name, tensors in self._group_maps(batch, device, on_device).items():
                for i, tensor in zip(members, tensors, strict=True):
                    per_item[name][i] = tensor
        out = {}
        for name, tensors in per_item.items():
            shapes = {tuple(t.shape) for t in tensors}
            if len(shapes) > 1:
                raise ValueError(
                    f"{name} maps of this batch differ in shape {sorted(shapes)}: for sdf maps "
                    "of semantic masks name the classes (sdf_classes) so every map has them"
                )
            out[name] = torch.stack(tensors).to(torch.float32)
        return out

    def _group_maps(
        self, batch: list[Any], device: torch.device, on_device: bool
    ) -> dict[str, list[torch.Tensor]]:
        context = MapContext(
            spacing=self.spacing,
            dataset_counts=self.dataset_counts,
            device=device,
            max_bytes=self.max_bytes,
        )
        out: dict[str, list[torch.Tensor]] = {}
        for name in self.kinds:
            kind = REGISTRY[name]
            on_cpu = kind.on_cpu is not None and kind.on_cpu(self.settings)
            if on_device and kind.compute_batch is not None and not on_cpu:
                computed = kind.compute_batch(batch, self.settings, context)
                out[name] = [t.to(device) for t in computed]
                continue
            arrays = []
            for p in batch:
                array = p.premade.get(name)
                if array is None:
                    mask_context = dataclasses.replace(context, counts=p.class_counts())
                    array = kind.compute(p, self.settings, mask_context)
                arrays.append(torch.from_numpy(np.ascontiguousarray(array)).to(device))
            out[name] = arrays
        return out
