"""One ``generate`` run per output folder at a time.

The lock is an OS file lock (``flock``) on ``OUT/.weightmaps.lock``: the
operating system drops it when the process ends, however it ends, so a
crashed run never leaves a lock behind that blocks the next one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "OutputLocked", "output_lock"]

LOCK_NAME = ".weightmaps.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputLocked(RuntimeError):
    """Another run holds the lock of this output folder."""


class output_lock:  # noqa: N801 - used as a context manager, like open()
    """Hold the lock of ``out_dir`` for the duration of a ``with`` block.

    Raises
    ------
    OutputLocked
        When another process holds it; the message names that process.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> output_lock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def _acquire(self, fd: int) -> None:
        if fcntl is None:  # pragma: no cover - Windows: best effort, no lock
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(
                f"another weightmaps run ({holder}) is writing to {self.path.parent}; "
                "wait for it to finish"
            ) from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
