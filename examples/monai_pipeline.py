"""MONAI dictionary transforms over weightmaps' maps, then a few steps of a weighted DiceCE.

What it shows:

1. ``WeightMapDataset.file_dicts()`` pairs masks, images and maps (checked
   against the manifest) as MONAI's list of dicts, and
   ``WeightMapReader`` loads image, label and maps as ``MetaTensor``\\ s with
   the spacing the TIFFs record, and the map's kind and parameters in its
   metadata.
2. MONAI's own transforms move the maps with the label: every spatial
   transform lists the map keys in ``keys`` (``RandWeightedCropd`` leaves
   whatever is not in ``keys`` uncropped), ``RandAffined`` resamples the maps
   bilinearly and the label with nearest neighbours, and
   ``RandWeightedCropd`` samples its crops where the U-Net map is high: at
   the borders between touching nuclei.
3. ``weighted_dice_ce`` is MONAI's ``DiceCELoss`` with the U-Net map on the
   cross-entropy; it takes MONAI's ``(B, 1, H, W)`` labels and MetaTensors.

Run it from the repository root (about 20 s on one CPU core)::

    python examples/monai_pipeline.py --out /tmp/nuclei-maps --steps 20
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, Dataset
from monai.networks.nets import UNet
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureTyped,
    LoadImaged,
    RandAffined,
    RandCropByPosNegLabeld,
    RandWeightedCropd,
    ScaleIntensityd,
)

import weightmaps
from weightmaps.data import WeightMapDataset
from weightmaps.losses import weighted_dice_ce
from weightmaps.monai import WeightMapReader

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
KEYS = ["image", "label", "weight_unet", "weight_balance"]
MAPS = ["weight_unet", "weight_balance"]


def make_transforms(crop: int = 96, patch: int = 64, samples: int = 2) -> Any:
    """Load, then crops and an affine that keep image, label and maps aligned.

    Returns ``transform(files) -> list of samples`` (``samples`` per file).
    """
    load = Compose(
        [
            LoadImaged(KEYS, reader=WeightMapReader(), ensure_channel_first=True),
            ScaleIntensityd("image"),
            AsDiscreted("label", threshold=0.5),  # instance ids to foreground 0/1
            EnsureTyped(MAPS, dtype=torch.float32),
            RandCropByPosNegLabeld(
                KEYS,
                label_key="label",
                spatial_size=(crop, crop),
                pos=1,
                neg=1,
                num_samples=samples,
            ),
        ]
    )
    augment = Compose(
        [
            RandAffined(
                KEYS,
                prob=1.0,
                rotate_range=0.5,
                scale_range=0.2,
                # Maps and image linear, labels nearest; "border" repeats the edge
                # pixels of all four alike (zeros would give the label background
                # where the maps have weight 0).
                mode=("bilinear", "nearest", "bilinear", "bilinear"),
                padding_mode="border",
            ),
            # The weight key is in keys: cropped with the others, not left whole.
            RandWeightedCropd(
                KEYS, w_key="weight_unet", spatial_size=(patch, patch), num_samples=1
            ),
            # Class ids for the cross-entropy (MONAI's spatial transforms give float).
            EnsureTyped("label", dtype=torch.int64),
        ]
    )

    def transform(files: dict[str, Any]) -> list[dict[str, Any]]:
        # Each crop gives a list of samples: flattened here, one list per file.
        return [patch for sample in load(files) for patch in augment(sample)]

    return transform


def file_list(masks: Path, images: Path, out: Path) -> list[dict[str, Any]]:
    """MONAI's data list from the Dataset's pairing, checked against the manifest."""
    dataset = WeightMapDataset(
        masks, out, images_dir=images, kinds=("unet", "balance"), target="carved"
    )
    return dataset.file_dicts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/examples/monai"))
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)

    masks, images = SAMPLE_DATA / "masks" / "nuclei", SAMPLE_DATA / "images" / "nuclei"
    report = weightmaps.generate(
        masks, args.out, kinds=["unet", "balance"], separate_touching=True, progress=False
    )
    assert report.exit_code == 0, report.summary()

    files = file_list(masks, images, args.out)
    first = LoadImaged(KEYS, reader=WeightMapReader())(files[0])
    unet = first["weight_unet"]
    print(
        f"weight: {unet.meta['weightmaps_kind']} map, pixdim {unet.pixdim.tolist()}, "
        f"made with {unet.meta['weightmaps_params']}"
    )
    loader = DataLoader(Dataset(files, make_transforms()), batch_size=4, shuffle=True)
    model = UNet(2, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    step = 0
    while step < args.steps:
        for batch in loader:
            logits = model(batch["image"])
            loss = weighted_dice_ce(logits, batch["label"], batch["weight_unet"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            step += 1
            if step % 5 == 0:
                print(f"step {step}: loss {loss.item():.4f}")
            if step == args.steps:
                break
    n = min(5, len(losses))
    print(
        f"mean loss of the first {n} steps {sum(losses[:n]) / n:.4f}, "
        f"of the last {n} {sum(losses[-n:]) / n:.4f}"
    )


if __name__ == "__main__":
    main()
