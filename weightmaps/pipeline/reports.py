"""What a run tells: exit codes, the reports of ``generate`` and ``check``, run errors,
and progress bars."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weightmaps._shared.text import printable

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUN_ERROR",
    "EXIT_USAGE",
    "CheckReport",
    "GenerateInterrupted",
    "GenerateReport",
    "LogFunction",
    "PipelineError",
    "default_log",
    "progress_bar",
]

EXIT_OK = 0
"""Every mask succeeded (or was already current)."""
EXIT_FAILED = 1
"""Some masks failed (each reported with its reason); all others completed."""
EXIT_USAGE = 2
"""Bad options or arguments; nothing was done."""
EXIT_RUN_ERROR = 3
"""The run could not proceed: OUT not writable or full, locked by another run, bad manifest."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C; finished masks are recorded, rerun to resume."""

_logger = logging.getLogger("weightmaps")

LogFunction = Callable[[int, str], None]
"""``log(level, message)`` with ``logging`` levels."""

# As in weightmaps.pipeline.manifest; named here so that reports need no manifest.
_MANIFEST_NAME = "weightmaps.json"


def default_log(level: int, message: str) -> None:
    """Per-mask messages to the ``weightmaps`` logger."""
    _logger.log(level, message)


class PipelineError(RuntimeError):
    """The run as a whole cannot proceed (see :data:`EXIT_RUN_ERROR`)."""


@dataclasses.dataclass(kw_only=True)
class GenerateReport:
    """What a :func:`~weightmaps.pipeline.generate` run did.

    Attributes
    ----------
    done : list of str
        Masks whose maps were (re)computed and written (dry run: would be).
    skipped : list of str
        Masks whose requested maps were all current.
    failed : dict
        Mask path -> one-line reason.
    reasons : dict
        Mask path -> {output kind: why it is (re)computed}.
    mask_types : Counter
        Detected or given mask types of the masks read.
    thresholded : dict
        Mask path -> threshold, for binary masks holding values besides 0
        and their maximum (a JPEG's noise): foreground is ``mask > threshold``.
    dataset : dict or None
        Dataset-scope balance: summed counts and the class weights used.
    device_seconds : float
        Wall time spent computing batches on the torch device (device path).
    compile_seconds : float
        Wall time the workers spent compiling kernels, about: a machine's
        first run compiles them (they are cached on disk for the next).
    pixel_units : list of str
        Masks whose distances ``spacing="auto"`` computed in pixels: their
        files record no pixel size.
    warnings : dict
        Map kind -> {mask path: why its settings made a poor map of it}
        (an edge window larger than the objects); the maps were written.
    """

    masks_dir: str
    out_dir: str
    dry_run: bool = False
    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    reasons: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    mask_types: Counter = dataclasses.field(default_factory=Counter)
    thresholded: dict[str, float] = dataclasses.field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    elapsed: float = 0.0
    stopped_early: bool = False
    device_seconds: float = 0.0
    compile_seconds: float = 0.0
    pixel_units: list[str] = dataclasses.field(default_factory=list)
    warnings: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_OK` or :data:`EXIT_FAILED`."""
        return EXIT_FAILED if self.failed else EXIT_OK

    @property
    def throughput(self) -> float:
        """Masks computed per second of wall time."""
        return len(self.done) / self.elapsed if self.elapsed > 0 else 0.0

    def timing(self) -> str:
        """How long the run took, and its pace where there is one.

        A pace of masks per second, or seconds per mask below one a second
        (a volume); none when nothing was computed. Compiling the kernels on a
        machine's first run is told apart, the pace measured without it.
        """
        text = f"in {self.elapsed:.1f} s"
        count = len(self.done)
        if count == 0:
            return text
        working = self.elapsed
        # Said from a second on: below, it changes no figure worth a line.
        if self.compile_seconds >= 1.0:
            text += (
                f", about {self.compile_seconds:.1f} s of it compiling kernels "
                "(first run; `weightmaps compile` does it ahead)"
            )
            working = max(self.elapsed - self.compile_seconds, 0.0)
        if working <= 0:
            return text
        if count >= working:
            return f"{text} ({count / working:.1f} masks/s)"
        return f"{text} ({working / count:.1f} s per mask)"

    def summary(self, *, failures: bool = True) -> str:
        """A few lines for a person: counts, failures with reasons, time.

        ``failures=False`` leaves the failures' reasons out: the command line
        has printed each as it happened, and says it once.
        """
        verb = "would compute" if self.dry_run else "done"
        lines = [
            f"{verb} {len(self.done)}, skipped {len(self.skipped)} (current), "
            f"failed {len(self.failed)}" + ("" if self.dry_run else f" {self.timing()}")
        ]
        shown = list(self.failed.items())[:20] if failures else []
        for rel, reason in shown:
            lines.append(f"  FAILED {printable(rel)}: {printable(reason)}")
        if failures and len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failures")
        if self.thresholded:
            cuts = sorted(set(self.thresholded.values()))
            at = ", ".join(f"{c:g}" for c in cuts[:3]) + (", ..." if len(cuts) > 3 else "")
            lines.append(
                f"  note: {len(self.thresholded)} binary "
                f"{'mask' if len(self.thresholded) == 1 else 'masks'} with noise (a JPEG's) "
                f"thresholded, foreground > {at}; recorded as 'threshold' in the manifest"
            )
        if len(self.mask_types) > 1:
            found = ", ".join(f"{n} {t}" for t, n in sorted(self.mask_types.items()))
            lines.append(f"  note: mask types differ ({found}); name one with --mask-type")
        for kind, said in self.warnings.items():
            if not said:
                continue
            first, n = next(iter(said.items())), len(said)
            which = f"{n} masks, e.g. {printable(first[0])}" if n > 1 else printable(first[0])
            lines.append(f"  warning: {kind} maps of {which}: {first[1]}")
        if self.pixel_units:
            first, n = printable(self.pixel_units[0]), len(self.pixel_units)
            which = f"{n} masks (e.g. {first}) record" if n > 1 else f"1 mask ({first}) records"
            lines.append(
                f"  note: {which} no spacing in the file: --spacing auto computed "
                "their distances in pixels"
            )
        if self.stopped_early:
            lines.append("  stopped at the first failure (--fail-fast)")
        if not self.dry_run:
            manifest = Path(self.out_dir) / _MANIFEST_NAME
            lines.append(f"  maps in {self.out_dir}, manifest {manifest}")
        return "\n".join(lines)


class GenerateInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``generate``; ``report`` says what was finished and recorded."""

    def __init__(self, report: GenerateReport) -> None:
        super().__init__("interrupted")
        self.report = report


@dataclasses.dataclass
class CheckReport:
    """Per mask and output kind: ``current``, or why it is stale or missing."""

    current: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stale: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    missing: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 when any map is missing or stale (or a mask is unreadable), else 0."""
        return EXIT_FAILED if self.stale or self.missing or self.failed else EXIT_OK


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, progress: bool | None, unit_name: str) -> Any:
    """A tqdm bar on stderr (default: only when stderr is a terminal), or one that shows nothing."""
    show = sys.stderr.isatty() if progress is None else progress
    if not show or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="mask", desc=unit_name, file=sys.stderr, dynamic_ncols=True)
