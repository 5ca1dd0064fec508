"""Digests of everything weightmaps produces, to prove a refactor changed no byte.

    python scripts/output_digests.py record before.json   # on the old code
    python scripts/output_digests.py compare before.json  # on the new code

Runs ``weightmaps generate`` with a fixed set of options over sample_data
(and ../shared/realdata when present), in memory, on the torch path on the
CPU and chunked, and calls the public kernels, the torch and chunked
kernels, the losses and the Dataset on fixed inputs. Records the SHA-256 of
every output file (maps, carved targets, zarr chunks and metadata, the
manifest) and of every returned array, tensor and loss value. ``compare``
lists every entry that differs, is missing or is new, and exits 1 if any.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "masks"
REALDATA = ROOT.parent / "shared" / "realdata"

# (name, MASKS under sample_data/masks or realdata, generate options)
RUNS: list[tuple[str, Path, dict[str, Any]]] = [
    ("nuclei-carved", SAMPLE / "nuclei", {"separate_touching": True}),
    ("binary", SAMPLE / "binary", {}),
    (
        "semantic-median",
        SAMPLE / "semantic",
        {"mask_type": "semantic", "ignore_value": 255, "balance_mode": "median"},
    ),
    ("volume-spacing", SAMPLE / "volume", {"spacing": "auto", "sigma": 2}),
    (
        "nuclei-dataset",
        SAMPLE / "nuclei",
        {
            "balance_scope": "dataset",
            "class_weights": "balanced",
            "edge_size": (128, 128),
            "balance_mode": "enet",
        },
    ),
    ("binary-weights", SAMPLE / "binary", {"class_weights": (0.5, 2.0), "w0": 4, "sigma": 3}),
    ("nuclei-torch", SAMPLE / "nuclei", {"device": "torch:cpu", "separate_touching": True}),
    (
        "semantic-torch",
        SAMPLE / "semantic",
        {"device": "torch:cpu", "mask_type": "semantic", "ignore_value": 255},
    ),
    (
        "volume-chunked",
        SAMPLE / "volume",
        {"chunked_above": 0, "chunks": 16, "separate_touching": True, "mask_type": "instance"},
    ),
    (
        "binary-chunked",
        SAMPLE / "binary",
        {"chunked_above": 0, "chunks": 100, "balance_mode": "beta"},
    ),
]
REAL_RUNS: list[tuple[str, str, dict[str, Any]]] = [
    ("dsb2018", "dsb2018/labels", {}),
    ("dsb2018-carved", "dsb2018/labels", {"separate_touching": True, "sigma": 3}),
    ("stardist", "stardist", {"glob": ("mask*.tif",), "spacing": "auto"}),
    ("stardist-chunked", "stardist", {"glob": ("mask3d.tif",), "chunked_above": 0, "chunks": 16}),
    ("horse", "skimage", {"rgb_rule": "dark"}),
]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def array_digest(value: Any) -> str:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(value))
    return f"{array.dtype}{list(array.shape)}:{digest(array.tobytes())}"


def tree_digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): digest(path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".weightmaps.lock")
    }


def generate_digests(scratch: Path) -> dict[str, str]:
    import weightmaps

    runs = [(name, masks, options) for name, masks, options in RUNS]
    if REALDATA.is_dir():
        runs += [(name, REALDATA / rel, options) for name, rel, options in REAL_RUNS]
    found: dict[str, str] = {}
    for name, masks, options in runs:
        out = scratch / name
        report = weightmaps.generate(masks, out, workers=1, progress=False, **options)
        found[f"generate/{name}/exit"] = str(report.exit_code)
        for rel, value in tree_digests(out).items():
            found[f"generate/{name}/{rel}"] = value
    return found


def kernel_digests() -> dict[str, str]:
    import dask.array as da
    import tifffile

    import weightmaps
    from weightmaps import chunked, torch_kernels

    nuclei = tifffile.imread(SAMPLE / "nuclei" / "nuclei_00.tif")
    volume = tifffile.imread(SAMPLE / "volume" / "nuclei3d_00.tif")
    binary = nuclei > 0
    semantic = (nuclei % 4).astype(np.uint8)
    semantic[:5] = 255
    calls: dict[str, Callable[[], Any]] = {
        "unet": lambda: weightmaps.unet_weight_map(nuclei),
        "unet-spacing": lambda: weightmaps.unet_weight_map(volume, sigma=2, spacing=(2, 0.5, 0.5)),
        "unet-balanced": lambda: weightmaps.unet_weight_map(nuclei, class_weights="balanced"),
        "unet-ignore": lambda: weightmaps.unet_weight_map(nuclei, ignore_mask=semantic == 255),
        "edge": lambda: weightmaps.edge_weight_map(binary),
        "edge-3d": lambda: weightmaps.edge_weight_map(volume > 0, kernel_size=7, alpha=3),
        "edge-classes": lambda: weightmaps.edge_weight_map(
            semantic, classes=[0, 1, 2, 3], ignore_index=255
        ),
        "edge-soft": lambda: weightmaps.edge_weight_map(binary.astype(np.float32) * 0.7),
        "label": lambda: weightmaps.label_instances(semantic, ignore_value=255),
        "separate": lambda: weightmaps.separate_instances(nuclei),
        "unet-torch": lambda: torch_kernels.unet_weight_map_torch(nuclei),
        "unet-torch-batch": lambda: torch_kernels.unet_weight_map_torch_batch(
            np.stack([nuclei, nuclei.T]), sigma=3, max_bytes=2**22
        ),
        "edge-torch": lambda: torch_kernels.edge_weight_map_torch(binary),
        "edge-torch-classes": lambda: torch_kernels.edge_weight_map_torch_batch(
            semantic[None], classes=[0, 1, 2, 3], ignore_index=255
        ),
        "unet-chunked": lambda: chunked.unet_weight_map(
            da.from_array(nuclei, chunks=(97, 61))
        ).compute(),
        "edge-chunked": lambda: chunked.edge_weight_map(
            da.from_array(binary, chunks=(97, 61))
        ).compute(),
        "label-chunked": lambda: chunked.label_instances(
            da.from_array(semantic, chunks=(97, 61)), ignore_value=255
        ).compute(),
    }
    for mode in weightmaps.BALANCE_MODES:
        calls[f"balance-{mode}"] = lambda mode=mode: weightmaps.balance_weight_map(
            binary, mode=mode
        )
        calls[f"balance-torch-{mode}"] = lambda mode=mode: torch_kernels.balance_weight_map_torch(
            binary, mode=mode
        )
        calls[f"balance-chunked-{mode}"] = lambda mode=mode: chunked.balance_weight_map(
            da.from_array(binary, chunks=(97, 61)), mode=mode
        ).compute()
    calls["balance-semantic"] = lambda: weightmaps.balance_weight_map(
        semantic, mode="median", ignore_index=255
    )
    return {f"kernel/{name}": array_digest(call()) for name, call in calls.items()}


def loss_digests() -> dict[str, str]:
    import torch

    from weightmaps import losses

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 24, 20, generator=generator)
    target = torch.randint(0, 4, (3, 24, 20), generator=generator)
    target[0, :3] = -100
    weight = torch.rand(3, 24, 20, generator=generator) * 5
    logit1 = torch.randn(3, 1, 24, 20, generator=generator)
    mask1 = (torch.rand(3, 1, 24, 20, generator=generator) > 0.6).float()
    found: dict[str, str] = {}
    for reduction in losses.REDUCTIONS:
        found[f"loss/ce-{reduction}"] = array_digest(
            losses.weighted_cross_entropy(logits, target, weight, reduction=reduction)
        )
        found[f"loss/bce-{reduction}"] = array_digest(
            losses.weighted_bce_with_logits(logit1, mask1, weight[:, None], reduction=reduction)
        )
        found[f"loss/balanced-{reduction}"] = array_digest(
            losses.balanced_bce_with_logits(logit1, mask1, reduction=reduction)
        )
    found["loss/ce-class-weight"] = array_digest(
        losses.weighted_cross_entropy(
            logits, target, weight, class_weight=torch.tensor([1.0, 2, 3, 4]), label_smoothing=0.1
        )
    )
    found["loss/structure"] = array_digest(losses.structure_loss(logit1, mask1))
    found["loss/structure-map"] = array_digest(
        losses.structure_loss(logit1, mask1, weight[:, None])
    )
    found["loss/structure-legacy"] = array_digest(
        losses.structure_loss(logit1, mask1, legacy_reduce=True)
    )
    outputs = [logit1, logit1[..., ::2, ::2], logit1[..., ::4, ::4]]
    found["loss/deep-supervision"] = array_digest(
        losses.deep_supervision_loss(
            outputs, mask1, weight[:, None], losses.weighted_bce_with_logits
        )
    )
    return found


def dataset_digests(scratch: Path) -> dict[str, str]:
    import torch

    from weightmaps.data import WeightMapDataset
    from weightmaps.transforms import Compose, RandomCrop, RandomFlip, RandomRot90

    maps = scratch / "nuclei-carved"
    found: dict[str, str] = {}
    if not maps.is_dir():
        return found
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    transform = Compose(
        [
            RandomCrop(64, generator=generator),
            RandomFlip(generator=generator),
            RandomRot90(generator=generator),
        ]
    )
    for name, dataset in {
        "plain": WeightMapDataset(SAMPLE / "nuclei", maps, kinds=("unet", "edge", "balance")),
        "raw-mask": WeightMapDataset(SAMPLE / "nuclei", maps, target="mask", mask_values="raw"),
        "transform": WeightMapDataset(SAMPLE / "nuclei", maps, transform=transform),
    }.items():
        for i in range(len(dataset)):
            item = dataset[i]
            for key, value in sorted(item.items()):
                if isinstance(value, dict):
                    for kind, tensor in sorted(value.items()):
                        found[f"dataset/{name}/{i}/{key}/{kind}"] = array_digest(tensor)
                elif key != "path":
                    found[f"dataset/{name}/{i}/{key}"] = array_digest(value)
    return found


def collect() -> dict[str, str]:
    scratch = Path(tempfile.mkdtemp(prefix="weightmaps-digests-"))
    try:
        found = generate_digests(scratch)
        found.update(kernel_digests())
        found.update(loss_digests())
        found.update(dataset_digests(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("record", "compare"):
        print(__doc__)
        return 2
    action, path = argv
    found = collect()
    if action == "record":
        Path(path).write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(found)} digests in {path}")
        return 0
    expected = json.loads(Path(path).read_text())
    differ = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    missing = sorted(expected.keys() - found.keys())
    new = sorted(found.keys() - expected.keys())
    for label, keys in (("differs", differ), ("missing", missing), ("new", new)):
        for key in keys:
            print(f"{label}: {key}")
    same = len(expected.keys() & found.keys()) - len(differ)
    print(f"{same} identical, {len(differ)} differ, {len(missing)} missing, {len(new)} new")
    return 1 if differ or missing or new else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
