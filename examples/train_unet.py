"""Train a small U-Net with the weighted cross-entropy of the U-Net paper, on CPU.

What it shows, end to end:

1. ``weightmaps.generate`` precomputes the U-Net border weight maps of the
   nuclei masks in ``sample_data/`` once (with ``separate_touching``, so touching
   nuclei get a background gap in the training target, as in the paper). A rerun
   skips the maps that are current.
2. ``WeightMapDataset`` pairs each mask with its image and its map, checks the
   maps against the generate step's manifest, and applies joint random crops,
   flips and rotations that keep the map aligned with the mask.
3. ``weighted_cross_entropy`` weights every pixel's loss by the map, so the thin
   gaps between touching nuclei count up to ``1 + w0`` times more than the rest.

Run it from the repository root (about 15 s on one CPU core)::

    python examples/train_unet.py                # 100 steps, maps in out/examples/nuclei
    python examples/train_unet.py --steps 300 --out /tmp/nuclei-maps

The loss is printed every 10 steps, then the mean of the first and last ten
steps, and the foreground Dice on the full training images.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import weightmaps
from weightmaps.data import WeightMapDataset
from weightmaps.losses import weighted_cross_entropy
from weightmaps.transforms import Compose, RandomCrop, RandomFlip, RandomRot90

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
# The map parameters, used twice: to generate the maps and to check them on loading.
MAP_SETTINGS = {"separate_touching": True, "w0": 10.0, "sigma": 5.0}


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with batch norm and ReLU (the U-Net block, padded)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """A U-Net with two resolution levels and a bottleneck: enough for the sample nuclei."""

    def __init__(self, in_channels: int = 1, classes: int = 2, width: int = 16) -> None:
        super().__init__()
        self.enc1 = conv_block(in_channels, width)
        self.enc2 = conv_block(width, 2 * width)
        self.bottom = conv_block(2 * width, 4 * width)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.dec2 = conv_block(4 * width, 2 * width)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec1 = conv_block(2 * width, width)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


def standardize(image: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation of a (B, C, H, W) batch: zero mean, unit variance."""
    dims = tuple(range(1, image.ndim))
    mean = image.mean(dim=dims, keepdim=True)
    std = image.std(dim=dims, keepdim=True)
    return (image - mean) / (std + 1e-6)


def batches(loader: DataLoader):
    """Batches from the loader, epoch after epoch (4 images make one batch here)."""
    while True:
        yield from loader


def foreground_dice(model: nn.Module, dataset: WeightMapDataset) -> float:
    """Dice of the predicted foreground over the full (uncropped) images."""
    model.eval()
    inter = total = 0.0
    with torch.no_grad():
        for item in dataset:
            logits = model(standardize(item["image"][None]))
            pred = logits.argmax(dim=1)[0] == 1
            true = item["mask"] == 1
            inter += float((pred & true).sum())
            total += float(pred.sum() + true.sum())
    model.train()
    return 2 * inter / max(total, 1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps [100]")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/examples/nuclei"),
        help="folder of the precomputed maps [out/examples/nuclei]",
    )
    parser.add_argument("--masks", type=Path, default=SAMPLE_DATA / "masks" / "nuclei")
    parser.add_argument("--images", type=Path, default=SAMPLE_DATA / "images" / "nuclei")
    parser.add_argument("--crop", type=int, default=128, help="training crop size [128]")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads [1]: convolutions this small gain little from "
        "more, and slow down badly when other processes share the cores",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the weights, the shuffling and every augmentation
    start = time.perf_counter()

    # 1. The maps, once: a rerun finds them current and skips them.
    report = weightmaps.generate(
        args.masks, args.out, kinds=("unet",), workers=1, progress=False, **MAP_SETTINGS
    )
    print(report.summary().splitlines()[0])

    # 2. Image + carved target + map; refuses maps made with other settings.
    augment = Compose([RandomCrop(args.crop), RandomFlip(), RandomRot90()])
    dataset = WeightMapDataset(
        args.masks,
        args.out,
        images_dir=args.images,
        kinds=("unet",),
        transform=augment,
        settings=MAP_SETTINGS,
    )
    batch_size = min(args.batch_size, len(dataset))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)

    # 3. Train.
    model = SmallUNet(in_channels=dataset[0]["image"].shape[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    window = max(1, min(10, args.steps))
    losses: list[float] = []
    for step, batch in enumerate(itertools.islice(batches(loader), args.steps), start=1):
        logits = model(standardize(batch["image"]))
        # sum(w * ce) / sum(w) over the batch; the map is (B, H, W) like the target.
        loss = weighted_cross_entropy(logits, batch["mask"], batch["weight"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % window == 0:
            recent = sum(losses[-window:]) / window
            print(f"step {step:4d}  weighted CE {recent:.4f}")

    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    print(f"mean loss of the first {window} steps {first:.4f}, of the last {window} {last:.4f}")
    full = WeightMapDataset(args.masks, args.out, images_dir=args.images, kinds=("unet",))
    print(f"foreground Dice on the full images {foreground_dice(model, full):.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
