"""Make the documentation's gallery: `weightmaps generate` and `weightmaps preview` on
every folder of sample_data/, the same runs as `make demo`.

    python scripts/make_gallery.py docs/gallery      # run by `make docs`

Nothing in the gallery is drawn by hand: each picture is what the command line
gives for that sample, so the pictures follow the code. The maps go to a
temporary folder; only the PNGs are written to the target folder (ignored by git).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"

# (folder, preview of, generate options): the options `make demo` uses for each.
RUNS: list[tuple[str, str, list[str]]] = [
    ("nuclei", "nuclei_00.tif", ["--separate-touching"]),
    ("binary", "polyp_00.png", []),
    (
        "semantic",
        "street_00.png",
        ["--mask-type", "semantic", "--ignore-value", "255", "--balance-mode", "median"],
    ),
    ("volume", "nuclei3d_00.tif", ["--spacing", "auto", "--sigma", "2"]),
]


def weightmaps(*args: str) -> None:
    command = [sys.executable, "-c", "from weightmaps.cli.main import main; main()", *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "gallery"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for folder, name, options in RUNS:
            maps = Path(tmp) / folder
            weightmaps("generate", str(SAMPLE / "masks" / folder), str(maps), "-q", *options)
            stem = name.rsplit(".", 1)[0]
            weightmaps(
                "preview",
                str(SAMPLE / "masks" / folder / name),
                "--maps",
                str(maps),
                "--image",
                str(SAMPLE / "images" / folder / name),
                "-o",
                str(target / f"{stem}.png"),
            )
            print(f"{target / stem}.png")


if __name__ == "__main__":
    main()
