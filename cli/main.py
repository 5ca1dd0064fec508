"""The ``weightmaps`` command: a thin shell over :mod:`weightmaps.pipeline`.

Exit codes: 0 all done, 1 some masks failed (or, for ``check``, maps are
missing or stale), 2 usage error, 3 the run could not proceed (output not
writable, locked by another run, unreadable manifest), 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from weightmaps._version import __version__
from weightmaps.balance import BALANCE_MODES
from weightmaps.io import DEFAULT_MAX_PIXELS, RGB_RULES
from weightmaps.maps import BALANCE_SCOPES, KINDS
from weightmaps.masktype import MASK_TYPES
from weightmaps.volumes import (
    DEFAULT_CHUNKED_ABOVE,
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_VOLUME_VOXELS,
    MISSING_CHUNKS,
)

EXIT_RUN_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, Slurm): stopped like Ctrl-C, finished masks kept."""


_terminated = threading.Event()


def _raise_terminated(signum: int, frame: object) -> None:
    _terminated.set()
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_stops_cleanly() -> Iterator[None]:
    """Within the block, SIGTERM interrupts the run as Ctrl-C does.

    By default SIGTERM ends Python at once: the manifest misses the masks
    finished since its last save and temporary files stay behind.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _numbers(text: str, name: str, kind: type = float) -> tuple:
    parts = text.replace("x", ",").split(",")
    try:
        return tuple(kind(p) for p in parts if p.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _parse_kinds(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"choose from {', '.join(KINDS)} (comma-separated)")
    return kinds


def _parse_spacing(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    return _numbers(value, "spacing")


def _parse_class_weights(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "balanced":
        return value
    numbers = _numbers(value, "class weights")
    if len(numbers) != 2:
        raise click.BadParameter("'balanced' or two numbers: background,foreground")
    return numbers


def _parse_size(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    return None if value is None else _numbers(value, "size", int)


# Map parameters: every default is None here so that `check` can tell a
# given option from an absent one; generate then applies MapSettings' defaults.
_MAP_OPTIONS: list[Callable] = [
    click.option(
        "--mask-type",
        type=click.Choice(MASK_TYPES),
        help="How to read label values [default: auto; see README for the auto rule].",
    ),
    click.option("--ignore-value", type=int, help="Label of unlabelled pixels: weight 0."),
    click.option(
        "--connectivity",
        type=int,
        help="Connected-components connectivity, 1..ndim [default: ndim, full].",
    ),
    click.option(
        "--spacing",
        callback=_parse_spacing,
        help="Pixel size per axis, e.g. 2,0.5,0.5, or 'auto' from the TIFF "
        "[default: pixel units]; sigma is in the same units.",
    ),
    click.option(
        "--separate-touching/--no-separate-touching",
        default=None,
        help="Carve a gap between touching instances; write <name>.target.tif.",
    ),
    click.option(
        "--allow-empty/--no-allow-empty",
        default=None,
        help="Accept masks without foreground [default: refuse them].",
    ),
    click.option("--w0", type=float, help="U-Net border term height [default: 10]."),
    click.option("--sigma", type=float, help="U-Net border term width [default: 5]."),
    click.option(
        "--class-weights",
        callback=_parse_class_weights,
        help="U-Net w_c: 'balanced' or background,foreground [default: 1 everywhere].",
    ),
    click.option("--edge-kernel", type=int, help="Edge map window k, odd [default: 31]."),
    click.option("--edge-alpha", type=float, help="Edge map factor alpha [default: 5]."),
    click.option(
        "--edge-size",
        callback=_parse_size,
        help="Compute edge maps at this training size, e.g. 352,352 [default: mask size].",
    ),
    click.option(
        "--balance-mode",
        type=click.Choice(BALANCE_MODES),
        help="Class-balance formula [default: inverse].",
    ),
    click.option(
        "--balance-scope",
        type=click.Choice(BALANCE_SCOPES),
        help="Count classes per image or over the dataset [default: image].",
    ),
]

_READ_OPTIONS: list[Callable] = [
    click.option("--glob", "glob", multiple=True, help="Only masks matching this pattern."),
    click.option("--channel", type=int, help="Channel of a colour mask to read."),
    click.option(
        "--rgb-rule", type=click.Choice(RGB_RULES), help="How a colour mask marks foreground."
    ),
]

_SETTING_NAMES = (
    "mask_type",
    "ignore_value",
    "connectivity",
    "spacing",
    "separate_touching",
    "allow_empty",
    "w0",
    "sigma",
    "class_weights",
    "edge_kernel",
    "edge_alpha",
    "edge_size",
    "balance_mode",
    "balance_scope",
)


def _apply(options: list[Callable]) -> Callable:
    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _pop_settings(params: dict[str, Any]) -> dict[str, Any]:
    given = {k: params[k] for k in _SETTING_NAMES if params.get(k) is not None}
    for k in _SETTING_NAMES:
        params.pop(k, None)
    return given


def _echo_err(message: str) -> None:
    from tqdm import tqdm

    # tqdm.write keeps an active progress bar intact.
    tqdm.write(message, file=sys.stderr)


def _make_log(verbose: int, quiet: bool) -> Callable[[int, str], None]:
    threshold = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )

    def log(level: int, message: str) -> None:
        if level >= threshold:
            _echo_err(message)

    return log


def _usage_errors(function: Callable) -> Callable:
    """Invalid options become click usage errors (exit 2), run errors exit 3."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from weightmaps.manifest import ManifestError
        from weightmaps.pipeline import PipelineError

        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ManifestError):
                click.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_RUN_ERROR)
            raise click.UsageError(str(exc)) from None
        except PipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_RUN_ERROR)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="weightmaps")
def main() -> None:
    """Precompute per-pixel loss weight maps for segmentation training.

    U-Net border maps, F3Net/PraNet edge maps and class-balance maps are
    computed once from label masks and written beside them; the losses and
    Dataset in the ``weightmaps`` package read them during training.

    Exit codes: 0 success, 1 some masks failed (check: maps missing or
    stale), 2 usage error, 3 run error (output not writable, locked, bad
    manifest), 130 interrupted (143: SIGTERM).
    """


@main.command()
@click.argument("masks", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--kinds",
    callback=_parse_kinds,
    default=",".join(KINDS),
    show_default=True,
    help="Maps to compute, comma-separated.",
)
@_apply(_MAP_OPTIONS)
@_apply(_READ_OPTIONS)
@click.option(
    "--max-pixels",
    type=int,
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse masks whose header claims more pixels (checked before reading).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Worker processes [default: all cores]."
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (the GPU when torch sees one, else cpu), cpu, cuda, cuda:N, or torch:cpu "
    "(the batched torch path on the CPU).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Masks of one shape computed together on a GPU.",
)
@click.option(
    "--scheduler",
    help="Run on a Dask cluster: local:N (N local worker processes) or tcp://host:8786 "
    "(needs weightmaps[dask]; OUT must be shared by all workers).",
)
@click.option(
    "--chunked-above",
    type=click.IntRange(min=0),
    default=DEFAULT_CHUNKED_ABOVE,
    show_default=True,
    help="TIFF masks with more pixels than this (and every *.zarr mask) are computed "
    "chunk by chunk, their maps written as OUT/<name>.<kind>.zarr.",
)
@click.option(
    "--chunks",
    type=click.IntRange(min=1),
    help="Edge length of the processing chunks of such volumes "
    "[default: a zarr's own chunks, 256 for a TIFF].",
)
@click.option(
    "--max-volume-voxels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_VOLUME_VOXELS,
    show_default=True,
    help="Refuse chunked volumes whose metadata claims more voxels (--max-pixels is the "
    "limit of masks read whole).",
)
@click.option(
    "--max-chunk-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CHUNK_BYTES,
    show_default=True,
    help="Refuse chunked volumes whose stored chunks (zarr chunk, TIFF tile or strip) "
    "decode to more bytes, or whose processing chunks hold more as float32 maps.",
)
@click.option(
    "--missing-chunks",
    type=click.Choice(MISSING_CHUNKS),
    default="fill",
    show_default=True,
    help="Zarr chunks absent from the store: read as the fill value (counted with -v), "
    "or refuse the volume.",
)
@click.option("--force", is_flag=True, help="Recompute everything, current or not.")
@click.option("--dry-run", is_flag=True, help="Only list what would be computed.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed mask.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
@click.option("-v", "--verbose", count=True, help="One line per mask (-vv: and why).")
@_usage_errors
def generate(masks: Path, out: Path, quiet: bool, verbose: int, **params: Any) -> None:
    """Write weight maps for every mask under MASKS into OUT.

    For MASKS/a/b.png: OUT/a/b.unet.tif, OUT/a/b.edge.tif, OUT/a/b.balance.tif
    (float32, zlib) and with --separate-touching OUT/a/b.target.tif, plus the
    manifest OUT/weightmaps.json. OUT may be MASKS. A rerun only redoes masks
    that changed, maps whose parameters changed, and missing maps.

    A folder MASKS/v.zarr (zarr array or OME-Zarr image), or a TIFF above
    --chunked-above pixels, is computed chunk by chunk: OUT/v.unet.zarr ...
    """
    from weightmaps.pipeline import GenerateInterrupted
    from weightmaps.pipeline import generate as run_generate

    settings = _pop_settings(params)
    log = _make_log(verbose + (1 if params["dry_run"] else 0), quiet)
    try:
        with _sigterm_stops_cleanly():
            report = run_generate(
                masks, out, progress=False if quiet else None, log=log, **params, **settings
            )
    except GenerateInterrupted as exc:
        terminated = _terminated.is_set()
        what = "terminated" if terminated else "interrupted"
        click.echo(f"{what}: finished masks are recorded; run again to resume", err=True)
        click.echo(exc.report.summary(), err=True)
        sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
    summary = report.summary()
    click.echo(summary.splitlines()[0] if quiet else summary, err=quiet)
    sys.exit(report.exit_code)


@main.command()
@click.argument("masks", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--kinds", callback=_parse_kinds, help="Maps to check [default: as last generated].")
@_apply(_MAP_OPTIONS)
@_apply(_READ_OPTIONS)
@click.option(
    "--hash-maps/--no-hash-maps",
    default=True,
    show_default=True,
    help="Compare each map's SHA-256 with the one recorded when it was written "
    "(--no-hash-maps: sizes only, without reading the maps).",
)
@click.option("-v", "--verbose", is_flag=True, help="List current maps too.")
@_usage_errors
def check(masks: Path, out: Path, verbose: bool, **params: Any) -> None:
    """List missing, stale and current maps of MASKS in OUT (exit 1 if any are not current).

    Parameters not given are those of the last generate run into OUT. A map
    whose bytes differ from those generate wrote (same size, other SHA-256) is
    stale, but a rerun of generate compares sizes only: delete it first.
    """
    from weightmaps.pipeline import check as run_check
    from weightmaps.pipeline import printable

    settings = _pop_settings(params)
    report = run_check(masks, out, **params, **settings)
    for rel, reason in report.failed.items():
        click.echo(f"unreadable {printable(rel)}: {printable(reason)}")
    for rel, kind, reason in report.missing:
        click.echo(f"missing  {printable(rel)} [{kind}]: {reason}")
    for rel, kind, reason in report.stale:
        click.echo(f"stale    {printable(rel)} [{kind}]: {reason}")
    if verbose:
        for rel, kind in report.current:
            click.echo(f"current  {printable(rel)} [{kind}]")
    click.echo(
        f"{len(report.current)} current, {len(report.stale)} stale, "
        f"{len(report.missing)} missing"
        + (f", {len(report.failed)} unreadable" if report.failed else "")
    )
    sys.exit(report.exit_code)


@main.command()
@click.argument("masks", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--mask-type", type=click.Choice(MASK_TYPES), default="auto", show_default=True)
@click.option("--ignore-value", type=int, help="Label of unlabelled pixels.")
@click.option("--connectivity", type=int, help="Connectivity of connected components.")
@_apply(_READ_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with per-mask figures).")
@_usage_errors
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


def _print_stats(summary: dict[str, Any], failed: dict[str, str]) -> None:
    types = ", ".join(f"{n} {t}" for t, n in sorted(summary["mask_types"].items()))
    click.echo(f"{summary['masks']} masks ({types or 'none readable'})")
    click.echo(
        f"instances: {summary['instances']}, touching instance pairs: {summary['touching_pairs']}"
    )
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
    from weightmaps.pipeline import printable

    for rel, reason in failed.items():
        click.echo(f"FAILED {printable(rel)}: {printable(reason)}", err=True)


@main.command()
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
@_apply(_READ_OPTIONS[1:])
@click.option("--panel-size", type=int, default=256, show_default=True)
@_usage_errors
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
    from weightmaps.maps import MapSettings, compute_maps
    from weightmaps.pipeline import maps_of
    from weightmaps.preview import render_preview
    from weightmaps.writing import atomic_path

    try:
        label = read_mask(mask, channel=channel, rgb_rule=rgb_rule)
        picture = None if image is None else _read_image(image)
    except MaskReadError as exc:
        from weightmaps.pipeline import printable

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
    # An edge map made at a training size is shown at the mask's size.
    shown = {k: v for k, v in arrays.items() if np.shape(v) == label.shape}
    rgb = render_preview(label, shown, image=picture, title=mask.name, panel_size=panel_size)
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


if __name__ == "__main__":  # pragma: no cover
    main()
