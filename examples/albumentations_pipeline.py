"""An albumentations 2.x pipeline that moves the weight maps with the image and the mask.

albumentations resamples what it is told about: a key it does not know (a
``weight`` passed beside ``image`` and ``mask``) comes back untouched, in its
old shape. ``WeightMapDataset`` refuses such an item (a ValueError naming
the keys and shapes), and this script shows the pipeline that is right:

- the maps are declared as *image* targets (``additional_targets``), so the
  geometric transforms resample them linearly (``interpolation``), while the
  mask keeps nearest-neighbour resampling (``mask_interpolation``);
- the pixel-level transforms (brightness, contrast, noise) run on the image
  alone, in a pipeline of their own, since a weight is not a brightness;
- the mask arrives in its stored integer dtype (uint8 here) and the maps as
  float32: OpenCV, under albumentations, has no int64 images (an int64 mask
  comes back as int32).

Run it from the repository root (a few seconds)::

    python examples/albumentations_pipeline.py --out /tmp/nuclei-maps

It generates the U-Net and class-balance maps of the sample nuclei, reads a
few augmented items, and checks what a wrong pipeline would break: inside
each class, away from its edge, the balance map keeps that class's weight.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np

import weightmaps
from weightmaps.data import WeightMapDataset

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


def make_transform(size: int = 128, map_keys: tuple[str, ...] = ("weight",)) -> Any:
    """``transform(image=, mask=, **maps) -> dict`` for ``WeightMapDataset``.

    ``map_keys``: ``("weight",)`` for one kind, ``("weight_unet", "weight_edge")``
    ... for several.
    """
    geometric = A.Compose(
        [
            A.RandomCrop(size, size),
            A.HorizontalFlip(p=0.5),
            A.Affine(
                rotate=(-30, 30),
                scale=(0.8, 1.25),
                interpolation=cv2.INTER_LINEAR,  # the image and the maps
                mask_interpolation=cv2.INTER_NEAREST,  # the labels
                # Reflect rather than fill: a constant fill would give the mask
                # background where the maps have weight 0.
                border_mode=cv2.BORDER_REFLECT_101,
                p=1.0,
            ),
        ],
        additional_targets={key: "image" for key in map_keys},
    )
    pixel = A.Compose([A.RandomBrightnessContrast(p=0.8), A.GaussNoise(p=0.3)])

    def transform(image: np.ndarray, mask: np.ndarray, **maps: np.ndarray) -> dict:
        image = pixel(image=image)["image"]
        return geometric(image=image, mask=mask, **maps)

    return transform


def off_weight_share(mask: np.ndarray, balance: np.ndarray) -> float:
    """Share of the pixels two pixels inside a class where the balance map is not
    that class's weight; the largest over the classes.

    When the map moved with the mask, the linearly resampled map keeps each
    class's weight there, save for a few pixels: a one-pixel gap between
    touching objects can vanish from the mask (nearest neighbour) while the
    map keeps a trace of it, so the share is near 0, not 0. A map left behind
    or moved otherwise misses on a large share.
    """
    shares = [0.0]
    for value in np.unique(mask):
        inside = cv2.erode(
            (mask == value).astype(np.uint8),
            np.ones((5, 5), np.uint8),
            borderType=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        values = balance[inside > 0]
        if values.size == 0:
            continue
        weights, counts = np.unique(values, return_counts=True)
        off = np.count_nonzero(np.abs(values - weights[counts.argmax()]) > 1e-4)
        shares.append(off / values.size)
    return max(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/examples/albumentations"))
    parser.add_argument("--items", type=int, default=8)
    args = parser.parse_args()

    masks, images = SAMPLE_DATA / "masks" / "nuclei", SAMPLE_DATA / "images" / "nuclei"
    report = weightmaps.generate(masks, args.out, kinds=["unet", "balance"], progress=False)
    assert report.exit_code == 0, report.summary()

    seen: list[np.ndarray] = []
    dataset = WeightMapDataset(
        masks,
        args.out,
        images_dir=images,
        kinds=("unet", "balance"),
        transform=make_transform(128, ("weight_unet", "weight_balance")),
    )
    for index in range(args.items):
        item = dataset[index % len(dataset)]
        mask, balance = item["mask"].numpy(), item["weights"]["balance"].numpy()
        share = off_weight_share(mask, balance)
        seen.append(share)
        print(
            f"{item['path']}: image {tuple(item['image'].shape)}, mask {tuple(mask.shape)}, "
            f"unet max {float(item['weights']['unet'].max()):.2f}, "
            f"balance off its class's weight on {share:.2%} of the pixels inside a class"
        )
    print(f"largest share off the class weight: {max(seen):.2%} (aligned: under 1%)")


if __name__ == "__main__":
    main()
