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


def class_spread(mask: np.ndarray, balance: np.ndarray) -> list[float]:
    """Range of the balance map over the pixels two pixels inside each class.

    There the linearly resampled map is exactly that class's weight (0) when
    the map moved with the mask; a map left behind or moved otherwise
    spreads over both classes' weights.
    """
    spread = []
    for value in np.unique(mask):
        inside = cv2.erode(
            (mask == value).astype(np.uint8),
            np.ones((5, 5), np.uint8),
            borderType=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        if inside.any():
            spread.append(float(np.ptp(balance[inside > 0])))
    return spread


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
        spread = class_spread(mask, balance)
        seen.append(np.array(spread or [0.0]))
        print(
            f"{item['path']}: image {tuple(item['image'].shape)}, mask {tuple(mask.shape)}, "
            f"unet max {float(item['weights']['unet'].max()):.2f}, "
            f"balance spread inside each class {max(spread):.2e}"
        )
    worst = max(float(s.max()) for s in seen)
    print(f"largest spread of the balance map inside a class: {worst:.2e} (aligned: ~0)")


if __name__ == "__main__":
    main()
