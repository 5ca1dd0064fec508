"""``weightmaps stats`` and ``weightmaps preview``: look at masks and maps before training."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from weightmaps.cli.options import (
    READ_OPTIONS,
    apply,
    map_options,
    parse_kinds,
    pop_settings,
    usage_errors,
)

from weightmaps.kernels.class_balance import BALANCE_MODES
from weightmaps.kinds import DEFAULT_KINDS, KINDS
from weightmaps.masktype import MASK_TYPES

__all__ = ["preview", "stats"]


@click.command()
@click.argument("masks", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--mask-type",
    type=click.Choice(MASK_TYPES),
    default="auto",
    show_default=True,
    help="How to read label values (auto: the rule in docs/reference/mask-types.md).",
)
@click.option("--ignore-value", type=int, help="Label of unlabelled pixels.")
@click.option("--connectivity", type=int, help="Connectivity of connected components.")
@apply(READ_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with per-mask figures).")
@usage_errors
def stats(masks: tuple[Path, ...], as_json: bool, **params: Any) -> None:
    """Class frequencies, instance counts, touching pairs and balance weights of MASKS.

    MASKS is a folder, a mask file or several of them; a folder holds mask files and
    zarr folders (a zarr array or OME-Zarr image, read whole: the [dask] extra).
    """
    from weightmaps.pipeline import survey
    from weightmaps.stats import summarize_stats

    found = masks[0] if len(masks) == 1 else masks
    per_mask, failed = survey(found, progress=False if as_json else None, **params)
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


_AXES = ("z", "y", "x")


@click.command()
@click.argument("mask", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--maps",
    "maps_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="OUT folder of a generate run: its maps of MASK, read with the --channel and "
    "--rgb-rule that run recorded. Without it the maps are computed now from the map "
    "options below.",
)
@click.option(
    "--image",
    type=click.Path(exists=True, path_type=Path),
    help="Image drawn left of the mask: grey, RGB or RGBA (alpha not drawn); TIFF, PNG, "
    "JPEG, .npy or zarr, the mask's shape.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The PNG to write (its folder is made).",
)
@click.option(
    "--kinds",
    callback=parse_kinds,
    help=f"Maps to compute without --maps, comma-separated, of {', '.join(KINDS)} "
    f"[default: {','.join(DEFAULT_KINDS)}].",
)
@apply(map_options("settings"))
@apply(READ_OPTIONS[1:])
@click.option(
    "--slice",
    "slice_index",
    type=int,
    help="3D: index of the slice drawn along --axis, from 0 (negative: from the end) "
    "[default: the middle one].",
)
@click.option(
    "--axis",
    type=click.Choice(_AXES),
    default="z",
    show_default=True,
    help="3D: the axis the slice is cut across (z: the first axis).",
)
@click.option(
    "--panel-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Longest side of each panel in pixels (smaller slices are magnified, larger shrunk).",
)
@usage_errors
def preview(
    mask: Path,
    maps_dir: Path | None,
    image: Path | None,
    output: Path,
    kinds: tuple[str, ...] | None,
    channel: int | None,
    rgb_rule: str | None,
    slice_index: int | None,
    axis: str,
    panel_size: int,
    **params: Any,
) -> None:
    """Write a PNG of MASK and its weight maps side by side (3D: one slice).

    MASK is a mask file or a zarr folder. Each map panel names the
    parameters it was made with; with --separate-touching (or a --maps run
    that carved) the carved target is drawn too: the instance labels the
    maps were computed from.
    """
    import numpy as np
    from PIL import Image

    from weightmaps.io.writing import atomic_path
    from weightmaps.preview import map_panels, panel_details, render_preview

    settings = pop_settings(params)
    if maps_dir is not None:
        arrays, recorded, read = _read_maps(mask, maps_dir, settings, kinds)
        channel = read.get("channel") if channel is None else channel
        rgb_rule = read.get("rgb_rule") if rgb_rule is None else rgb_rule
    label = _read_or_exit(lambda: _read_mask(mask, channel, rgb_rule), mask)
    picture = None if image is None else _read_or_exit(lambda: _read_image(image), image)
    if maps_dir is None:
        arrays, recorded = _compute_maps(mask, label, settings, kinds)
    # Each kind drawn by its rule (a signed distance map one panel per class).
    panels, styles = map_panels(arrays)
    # An edge map made at a training size is shown at the mask's size.
    shown = {k: v for k, v in panels.items() if np.shape(v) == label.shape}
    picture = None if picture is None else _channels_last(picture, label.shape)
    rgb = render_preview(
        label,
        shown,
        image=picture,
        title=mask.name,
        panel_size=panel_size,
        styles=styles,
        slice_index=slice_index,
        axis=_AXES.index(axis) if label.ndim == 3 else 0,
        details=panel_details(shown, recorded),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    click.echo(f"wrote {output} ({', '.join(shown)})")


def _fail(path: Path, reason: str) -> None:
    from weightmaps._shared.text import printable

    click.echo(f"error: {printable(str(path))}: {printable(reason)}", err=True)
    sys.exit(1)


def _read_or_exit(read: Any, path: Path) -> Any:
    """What ``read()`` gives; a file that cannot be read is one line and exit 1."""
    from weightmaps.io import MaskReadError

    try:
        return read()
    except MaskReadError as exc:
        _fail(Path(exc.path), exc.reason)
    except ImportError as exc:
        _fail(path, f"reading zarr needs the [dask] extra ({exc.name} is missing)")
    except (ValueError, TypeError, OSError) as exc:
        # Refused volumes, undecodable data, a header over the limits: this file's fault.
        text = str(exc).strip().splitlines()
        _fail(path, text[0] if text else type(exc).__name__)


def _read_mask(path: Path, channel: int | None, rgb_rule: str | None) -> Any:
    from weightmaps.io import DEFAULT_MAX_PIXELS, read_mask

    if path.is_dir():  # a zarr array or OME-Zarr image
        from weightmaps.io.volume_source import read_volume

        return read_volume(path, DEFAULT_MAX_PIXELS)
    return read_mask(path, channel=channel, rgb_rule=rgb_rule)


def _read_image(path: Path) -> Any:
    from weightmaps.map_files import read_map_file

    return read_map_file(path).data


def _channels_last(image: Any, shape: tuple[int, ...]) -> Any:
    """A microscopy image stored channels first (ImageJ ``CYX``) as channels last."""
    import numpy as np

    if image.shape[1:] == shape and image.shape[0] in (2, 3, 4) and image.shape[-1] > 4:
        return np.moveaxis(image, 0, -1)
    return image


def _read_maps(
    mask: Path, maps_dir: Path, settings: dict[str, Any], kinds: tuple[str, ...] | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The maps of ``mask`` in ``maps_dir``, their parameter sets, and how they read it."""
    from weightmaps.map_files import read_map_file
    from weightmaps.pipeline.surveying import find_maps

    if settings or kinds:
        names = ["--kinds"] * bool(kinds) + ["--" + k.replace("_", "-") for k in settings]
        given = ", ".join(names)
        click.echo(f"warning: {given} ignored: --maps shows the maps as they were made", err=True)
    found = find_maps(mask, maps_dir, by_name=False)
    if not found.files:
        found = find_maps(mask, maps_dir)
        if found.files:
            click.echo(
                f"warning: {maps_dir} has no record of this mask's content; showing maps "
                "found by name, which may be those of an older version",
                err=True,
            )
    if not found.files:
        click.echo(f"error: no maps of {mask} found in {maps_dir}", err=True)
        sys.exit(1)
    arrays, recorded = {}, dict(found.params)
    for kind, path in found.files.items():
        read = _read_or_exit(lambda p=path: read_map_file(p), path)
        arrays[kind] = read.data
        if read.params:
            recorded[kind] = read.params
    # The carved target last, beside the maps computed from it.
    if "target" in arrays:
        arrays["target"] = arrays.pop("target")
    return arrays, recorded, found.read


def _compute_maps(
    mask: Path, label: Any, given: dict[str, Any], kinds: tuple[str, ...] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The maps of ``label`` computed now, and their parameter sets."""
    from weightmaps.io import read_spacing
    from weightmaps.io.read import is_lossy
    from weightmaps.recipe import compute_maps
    from weightmaps.settings import MapSettings

    settings = MapSettings(**given)
    kinds = kinds or DEFAULT_KINDS
    spacing = settings.spacing
    if isinstance(spacing, str):  # "auto": as recorded in the TIFF, else isotropic
        spacing = None if mask.is_dir() else read_spacing(mask)
    lossy = not mask.is_dir() and is_lossy(mask)  # a JPEG, read as generate reads it
    result = compute_maps(label, settings, kinds=kinds, spacing=spacing, lossy=lossy)
    arrays = dict(result.maps)
    recorded = {kind: settings.kind_params(kind) for kind in arrays}
    if result.target is not None:
        arrays["target"] = result.target
        recorded["target"] = settings.kind_params("target")
    return arrays, recorded
