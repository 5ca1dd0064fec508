"""``weightmaps stats`` and ``weightmaps preview``: look at masks and maps before training."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from weightmaps.cli.options import READ_OPTIONS, apply, usage_errors

from weightmaps.kernels.class_balance import BALANCE_MODES
from weightmaps.masktype import MASK_TYPES

__all__ = ["preview", "stats"]


@click.command()
@click.argument("masks", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--mask-type", type=click.Choice(MASK_TYPES), default="auto", show_default=True)
@click.option("--ignore-value", type=int, help="Label of unlabelled pixels.")
@click.option("--connectivity", type=int, help="Connectivity of connected components.")
@apply(READ_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with per-mask figures).")
@usage_errors
def stats(masks: Path, as_json: bool, **params: Any) -> None:
    """Class frequencies, instance counts, touching pairs and balance weights of MASKS."""
    from weightmaps.pipeline import survey
    from weightmaps.stats import summarize_stats

    per_mask, failed = survey(masks, progress=False if as_json else None, **params)
    summary = summarize_stats(list(per_mask.values()))
    if as_json:
        summary["per_mask"] = {
            rel: {
                "mask_type": s.mask_type,
                "pixels": s.counts.to_dict()["pixels"],
                "instances": s.instances,
                "touching_pairs": s.touching_pairs,
            }
            for rel, s in per_mask.items()
        }
        summary["failed"] = failed
        click.echo(json.dumps(summary, indent=1))
    else:
        _print_stats(summary, failed)
    sys.exit(1 if failed else 0)


def _weight_cell(weight: float | None) -> str:
    return f" {'-':>10}" if weight is None else f" {weight:>10.4g}"


def _print_objects(objects: dict[str, Any] | None) -> None:
    """The objects' sizes and the sigma and k they suggest (rules: weightmaps.stats)."""
    if not objects:
        return
    left_out = objects["on_border_left_out"]
    border = f"; {left_out} cut by the border left out" if left_out else ""
    click.echo(
        f"object diameter: median {objects['median_diameter']:.1f} px "
        f"(10-90 %: {objects['p10_diameter']:.1f}-{objects['p90_diameter']:.1f}, "
        f"{objects['measured']} objects{border})"
    )
    suggested = objects["suggested"]
    click.echo(
        f"suggested for them: --sigma {suggested['sigma']:g} (a quarter of the median "
        f"diameter), --edge-kernel {suggested['edge_kernel']} (about half of it)"
    )


def _print_stats(summary: dict[str, Any], failed: dict[str, str]) -> None:
    types = ", ".join(f"{n} {t}" for t, n in sorted(summary["mask_types"].items()))
    click.echo(f"{summary['masks']} masks ({types or 'none readable'})")
    click.echo(
        f"instances: {summary['instances']}, touching instance pairs: {summary['touching_pairs']}"
    )
    _print_objects(summary.get("objects"))
    header = f"{'class':>6} {'pixels':>12} {'freq':>8}" + "".join(
        f" {mode + ' w':>10}" for mode in BALANCE_MODES
    )
    click.echo(header)
    for cls, row in summary["classes"].items():
        weights = "".join(
            f" {row[f'{mode}_weight']:>10.4g}"
            if row[f"{mode}_weight"] is not None
            else f" {'-':>10}"
            for mode in BALANCE_MODES
        )
        click.echo(f"{cls:>6} {row['pixels']:>12} {row['frequency']:>8.4f}{weights}")
    click.echo("binary and instance masks count background 0 against foreground 1")
    if "semantic" in summary["mask_types"] and len(summary["mask_types"]) > 1:
        click.echo(
            "note: semantic class ids and the foreground (1) of the other masks are summed "
            "together; run stats per kind of mask (--glob) or name --mask-type"
        )
    from weightmaps._shared.text import printable

    for rel, reason in failed.items():
        click.echo(f"FAILED {printable(rel)}: {printable(reason)}", err=True)


@click.command()
@click.argument("mask", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--maps",
    "maps_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="OUT folder of a generate run; without it the maps are computed now (defaults).",
)
@click.option(
    "--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Image panel."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--mask-type", type=click.Choice(MASK_TYPES), default="auto", show_default=True)
@click.option("--ignore-value", type=int)
@apply(READ_OPTIONS[1:])
@click.option("--panel-size", type=int, default=256, show_default=True)
@usage_errors
def preview(
    mask: Path,
    maps_dir: Path | None,
    image: Path | None,
    output: Path,
    mask_type: str,
    ignore_value: int | None,
    channel: int | None,
    rgb_rule: str | None,
    panel_size: int,
) -> None:
    """Write a PNG of MASK and its weight maps side by side (3D: the middle slice)."""
    import numpy as np
    import tifffile
    from PIL import Image

    from weightmaps.io import MaskReadError, read_mask
    from weightmaps.io.writing import atomic_path
    from weightmaps.pipeline import maps_of
    from weightmaps.preview import map_panels, render_preview
    from weightmaps.recipe import compute_maps
    from weightmaps.settings import MapSettings

    try:
        label = read_mask(mask, channel=channel, rgb_rule=rgb_rule)
        picture = None if image is None else _read_image(image)
    except MaskReadError as exc:
        from weightmaps._shared.text import printable

        click.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(1)
    if maps_dir is not None:
        files = maps_of(mask, maps_dir, by_name=False)
        if not files:
            files = maps_of(mask, maps_dir)
            if files:
                click.echo(
                    f"warning: {maps_dir} has no record of this mask's content; showing maps "
                    "found by name, which may be those of an older version",
                    err=True,
                )
        files.pop("target", None)
        if not files:
            click.echo(f"error: no maps of {mask} found in {maps_dir}", err=True)
            sys.exit(1)
        arrays = {kind: tifffile.imread(path) for kind, path in files.items()}
    else:
        settings = MapSettings(mask_type=mask_type, ignore_value=ignore_value)
        arrays = compute_maps(label, settings).maps
    # Each kind drawn by its rule (a signed distance map one panel per class).
    panels, styles = map_panels(arrays)
    # An edge map made at a training size is shown at the mask's size.
    shown = {k: v for k, v in panels.items() if np.shape(v) == label.shape}
    rgb = render_preview(
        label, shown, image=picture, title=mask.name, panel_size=panel_size, styles=styles
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    click.echo(f"wrote {output} ({', '.join(shown)})")


def _read_image(path: Path) -> Any:
    import numpy as np
    import tifffile
    from PIL import Image

    if path.suffix.lower() in (".tif", ".tiff"):
        return tifffile.imread(path)
    with Image.open(path) as img:
        return np.asarray(img)
