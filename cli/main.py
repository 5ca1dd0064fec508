"""The ``weightmaps`` command: a thin shell over :mod:`weightmaps.pipeline`.

Exit codes: 0 all done, 1 some masks failed (or, for ``check``, maps are
missing or stale), 2 usage error, 3 the run could not proceed (output not
writable, locked by another run, unreadable manifest), 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from weightmaps.cli.inspection import preview, stats
from weightmaps.cli.options import (
    READ_OPTIONS,
    apply,
    cli_words,
    make_log,
    map_options,
    parse_kinds,
    pop_settings,
    usage_errors,
)

from weightmaps._version import __version__
from weightmaps.io.header import DEFAULT_MAX_PIXELS
from weightmaps.io.volumes import (
    DEFAULT_CHUNKED_ABOVE,
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_VOLUME_VOXELS,
    MISSING_CHUNKS,
)
from weightmaps.io.writing import DEFAULT_COMPRESSION
from weightmaps.kinds import DEFAULT_KINDS, KINDS

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


# MASKS: a folder, or one or more mask files (OUT comes last).
_MASKS = click.argument("masks", nargs=-1, type=click.Path(exists=True, path_type=Path))


def _masks_arg(masks: tuple[Path, ...]) -> Path | tuple[Path, ...]:
    if not masks:
        # One path given: click made it OUT; the one missing is OUT, not MASKS.
        raise click.UsageError("Missing argument 'OUT'.")
    return masks[0] if len(masks) == 1 else masks


@main.command()
@_MASKS
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--kinds",
    callback=parse_kinds,
    default=",".join(DEFAULT_KINDS),
    show_default=True,
    help=f"Maps to compute, comma-separated, of {', '.join(KINDS)}.",
)
@apply(map_options("settings"))
@apply(READ_OPTIONS)
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
    "[default: a zarr's own chunks; a TIFF: 256, 2048 for a 2-D image].",
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
    "decode to more bytes, or whose processing chunks, alone or grown by a map's halo, "
    "hold more as float32 maps.",
)
@click.option(
    "--missing-chunks",
    type=click.Choice(MISSING_CHUNKS),
    default="fill",
    show_default=True,
    help="Zarr chunks absent from the store: read as the fill value (counted with -v), "
    "or refuse the volume.",
)
@click.option(
    "--compression",
    default=DEFAULT_COMPRESSION,
    show_default=True,
    help="Of the TIFF maps: zlib[:LEVEL] (deflate, every TIFF reader opens it), "
    "zstd[:LEVEL] (smaller and faster; not ImageJ, tifffile with imagecodecs) or none.",
)
@click.option("--force", is_flag=True, help="Recompute everything, current or not.")
@click.option("--dry-run", is_flag=True, help="Only list what would be computed.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed mask.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
@click.option("-v", "--verbose", count=True, help="One line per mask (-vv: and why).")
@usage_errors
def generate(masks: tuple[Path, ...], out: Path, quiet: bool, verbose: int, **params: Any) -> None:
    """Write weight maps for every mask under MASKS into OUT.

    MASKS is a folder, searched recursively, or one or more mask files.

    For MASKS/a/b.png: OUT/a/b.unet.tif, OUT/a/b.edge.tif, OUT/a/b.balance.tif
    (float32, deflate) and with --separate-touching OUT/a/b.target.tif, plus the
    manifest OUT/weightmaps.json. OUT may be MASKS. A rerun only redoes masks
    that changed, maps whose parameters changed, and missing maps.

    A folder MASKS/v.zarr (zarr array or OME-Zarr image), or a TIFF above
    --chunked-above pixels, is computed chunk by chunk: OUT/v.unet.zarr ...
    """
    from weightmaps.pipeline import GenerateInterrupted
    from weightmaps.pipeline import generate as run_generate

    settings = pop_settings(params)
    log = make_log(verbose + (1 if params["dry_run"] else 0), quiet)
    try:
        with _sigterm_stops_cleanly():
            report = run_generate(
                _masks_arg(masks),
                out,
                progress=False if quiet else None,
                log=log,
                **params,
                **settings,
            )
    except GenerateInterrupted as exc:
        terminated = _terminated.is_set()
        what = "terminated" if terminated else "interrupted"
        click.echo(f"{what}: finished masks are recorded; run again to resume", err=True)
        click.echo(cli_words(exc.report.summary(failures=False)), err=True)
        sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
    # Each failure was printed to stderr as it happened (log): once is enough.
    summary = cli_words(report.summary(failures=False))
    click.echo(summary.splitlines()[0] if quiet else summary, err=quiet)
    sys.exit(report.exit_code)


@main.command()
@_MASKS
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--kinds", callback=parse_kinds, help="Maps to check [default: as last generated].")
@apply(map_options("manifest"))
@apply(READ_OPTIONS)
@click.option(
    "--hash-maps/--no-hash-maps",
    default=True,
    show_default=True,
    help="Compare each map's SHA-256 with the one recorded when it was written "
    "(--no-hash-maps: sizes only, without reading the maps).",
)
@click.option("-v", "--verbose", is_flag=True, help="List current maps too.")
@usage_errors
def check(masks: tuple[Path, ...], out: Path, verbose: bool, **params: Any) -> None:
    """List missing, stale and current maps of MASKS in OUT (exit 1 if any are not current).

    Parameters not given are those of the last generate run into OUT. A map
    whose bytes differ from those generate wrote (same size, other SHA-256) is
    stale, but a rerun of generate compares sizes only: delete it first.
    """
    from weightmaps._shared.text import printable
    from weightmaps.pipeline import check as run_check

    settings = pop_settings(params)
    report = run_check(_masks_arg(masks), out, **params, **settings)
    for rel, reason in report.failed.items():
        click.echo(f"unreadable {printable(rel)}: {cli_words(printable(reason))}")
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


@main.command("compile")
@click.option("--kinds", callback=parse_kinds, help="Maps to compile for [default: every kind].")
@click.option(
    "--ndim",
    type=click.Choice(["2", "3"]),
    multiple=True,
    help="Mask dimensions to compile for (repeatable) [default: 2 and 3].",
)
@usage_errors
def compile_kernels(kinds: tuple[str, ...] | None, ndim: tuple[str, ...]) -> None:
    """Compile the CPU kernels now, into numba's disk cache.

    A machine's first run compiles the kernels it uses (seconds) and later
    runs load them; this pays that once ahead of time, e.g. while building
    a container image or setting up a cluster's environment.
    """
    import time

    from weightmaps.warmup import warm_up

    start = time.perf_counter()
    seconds = warm_up(kinds, ndims=tuple(int(n) for n in ndim) or (2, 3))
    click.echo(
        f"kernels ready in {time.perf_counter() - start:.1f} s "
        f"({seconds:.1f} s of it compiling; 0 when already cached)"
    )


main.add_command(stats)
main.add_command(preview)


if __name__ == "__main__":  # pragma: no cover
    main()
