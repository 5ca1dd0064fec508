"""Train a small polyp segmenter with deep supervision and the F3Net/PraNet structure loss.

What it shows:

1. ``weightmaps.generate(kinds=("edge",), edge_size=...)`` precomputes the edge
   weight map ``weit = 1 + 5 * |box31(mask) - mask|`` of F3Net and PraNet for
   the binary polyp masks of ``sample_data/``, once, at the training size.
2. ``WeightMapDataset`` loads image, mask and map, resizing the image and the
   mask to the map's (training) size, and applies joint flips.
3. ``DeepSupervisionLoss(structure_loss, factors)`` sums the structure loss over
   the network's three outputs (full, 1/2 and 1/4 resolution, upsampled to the
   target as in PraNet), weighted 1, 1/2, 1/4 as in F3Net, reading the
   precomputed map instead of recomputing it every step.

Why the map is computed at the training size rather than at the native size:
its window is 31 pixels of the mask it is computed on, so a map made at the
native size and then resized would put the weighted band at another width than
in the papers, which compute it on the mask already resized to the training
size. Flips move pixels without resampling, so they keep the precomputed map
exact.

Run it from the repository root (about 15 s on one CPU core)::

    python examples/train_polyp.py               # 100 steps, maps in out/examples/polyp
    python examples/train_polyp.py --steps 300 --size 288,352

The loss is printed every 10 steps, then the mean of the first and last ten
steps, and the IoU of the finest output on the training images.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import weightmaps
from weightmaps.data import WeightMapDataset
from weightmaps.losses import DeepSupervisionLoss, StructureLoss, f3net_factors
from weightmaps.transforms import Compose, RandomFlip

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DeeplySupervisedNet(nn.Module):
    """Encoder-decoder with a 1-channel logit map at each of three resolutions.

    ``forward`` returns ``[full, half, quarter]``, finest first, as
    :class:`weightmaps.losses.DeepSupervisionLoss` expects with F3Net's factors.
    """

    def __init__(self, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.enc1 = conv_block(in_channels, width)
        self.enc2 = conv_block(width, 2 * width)
        self.enc3 = conv_block(2 * width, 4 * width)
        self.pool = nn.MaxPool2d(2)
        self.dec2 = conv_block(4 * width + 2 * width, 2 * width)
        self.dec1 = conv_block(2 * width + width, width)
        self.side3 = nn.Conv2d(4 * width, 1, 1)
        self.side2 = nn.Conv2d(2 * width, 1, 1)
        self.side1 = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d2 = self.dec2(torch.cat([_up_to(e3, e2), e2], dim=1))
        d1 = self.dec1(torch.cat([_up_to(d2, e1), e1], dim=1))
        return [self.side1(d1), self.side2(d2), self.side3(e3)]


def _up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """8-bit grey or RGB values (as stored) to [0, 1], then per-image standardisation."""
    image = image / 255.0
    dims = tuple(range(1, image.ndim))
    return (image - image.mean(dim=dims, keepdim=True)) / (image.std(dim=dims, keepdim=True) + 1e-6)


def batches(loader: DataLoader):
    while True:
        yield from loader


def iou(model: nn.Module, dataset: WeightMapDataset) -> float:
    """Foreground IoU of the finest output over the (unaugmented) training images."""
    model.eval()
    inter = union = 0.0
    with torch.no_grad():
        for item in dataset:
            pred = model(normalize(item["image"][None]))[0][0, 0] > 0
            true = item["mask"] == 1
            inter += float((pred & true).sum())
            union += float((pred | true).sum())
    model.train()
    return inter / max(union, 1.0)


def parse_size(text: str) -> tuple[int, int]:
    height, width = (int(n) for n in text.split(","))
    return height, width


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps [100]")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/examples/polyp"),
        help="folder of the precomputed maps [out/examples/polyp]",
    )
    parser.add_argument("--masks", type=Path, default=SAMPLE_DATA / "masks" / "binary")
    parser.add_argument("--images", type=Path, default=SAMPLE_DATA / "images" / "binary")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=(144, 176),
        help="training size H,W: the edge maps are made at it [144,176]",
    )
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
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    # 1. Edge maps at the training size, once (a rerun skips current maps).
    settings = {"edge_size": args.size, "edge_kernel": 31, "edge_alpha": 5.0}
    report = weightmaps.generate(
        args.masks, args.out, kinds=("edge",), workers=1, progress=False, **settings
    )
    print(report.summary().splitlines()[0])

    # 2. Image and mask come resized to the maps' shape; flips keep the map exact.
    dataset = WeightMapDataset(
        args.masks,
        args.out,
        images_dir=args.images,
        kinds=("edge",),
        transform=Compose([RandomFlip()]),
        settings=settings,
    )
    loader = DataLoader(dataset, batch_size=len(dataset), shuffle=True)

    # 3. Structure loss (weighted BCE + weighted IoU) on every output, F3Net's factors.
    model = DeeplySupervisedNet(in_channels=dataset[0]["image"].shape[0])
    criterion = DeepSupervisionLoss(StructureLoss(), f3net_factors(3), mode="upsample")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    window = max(1, min(10, args.steps))
    losses: list[float] = []
    for step, batch in enumerate(itertools.islice(batches(loader), args.steps), start=1):
        outputs = model(normalize(batch["image"]))
        # Target (B, H, W) in {0, 1} as float, the precomputed weit (B, H, W).
        loss = criterion(outputs, batch["mask"].float(), batch["weight"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % window == 0:
            recent = sum(losses[-window:]) / window
            print(f"step {step:4d}  deep-supervised structure loss {recent:.4f}")

    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    print(f"mean loss of the first {window} steps {first:.4f}, of the last {window} {last:.4f}")
    full = WeightMapDataset(args.masks, args.out, images_dir=args.images, kinds=("edge",))
    print(f"foreground IoU on the training images {iou(model, full):.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
