"""One ``generate`` run per output folder at a time.

The lock is an OS file lock (``flock``) on ``OUT/.weightmaps.lock``: the
operating system drops it when the last descriptor of the lock file is
closed, however the process ends, so a crashed run never leaves a lock
behind that blocks the next one.

Two things would keep that descriptor alive after the run: a forked worker
process inherits it (a ``flock`` belongs to the open file, shared by every
copy of the descriptor), and a worker that outlives its parent keeps it
forever. So forked children close the lock descriptor as they start (an
``os.register_at_fork`` hook), and worker processes ask to be killed when
their parent dies (:func:`die_with_parent`).

The lock file is opened without following symbolic links and must be a
regular file: a link planted at ``OUT/.weightmaps.lock`` would otherwise
make the run truncate whatever file it points to.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "OutputLocked", "die_with_parent", "output_lock"]

LOCK_NAME = ".weightmaps.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# Descriptors of the locks this process holds; a forked child closes its copies.
_held: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class OutputLocked(RuntimeError):
    """Another run holds the lock of this output folder, or the lock file is unsafe."""


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    # A FIFO planted at the lock path must not block the open.
    flags |= getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        if path.is_symlink():
            raise OutputLocked(
                f"{path} is a symbolic link; refused (remove it to run into this folder)"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputLocked(f"{path} is not a regular file; refused (remove it)")
    return fd


class output_lock:  # noqa: N801 - used as a context manager, like open()
    """Hold the lock of ``out_dir`` for the duration of a ``with`` block.

    Raises
    ------
    OutputLocked
        When another process holds it (the message names that process), or
        when the lock file is a symbolic link or not a regular file.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> output_lock:
        fd = _open_lock_file(self.path)
        try:
            self._acquire(fd)
        except BaseException:
            os.close(fd)
            raise
        _held.add(fd)
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
            _held.discard(self._fd)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid`` ends, however it ends.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl``
    PR_SET_PDEATHSIG); elsewhere a daemon thread polls for the parent. Run
    it first thing in a worker process, with the pid of the process that
    started it: a parent that died before the call is caught too.
    """
    if sys.platform.startswith("linux") and _set_parent_death_signal(signal.SIGKILL):
        if os.getppid() != parent_pid:  # died before prctl took effect
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _set_parent_death_signal(signum: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return False


def _watch_parent(parent_pid: int) -> None:  # pragma: no cover - non-Linux fallback
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)
