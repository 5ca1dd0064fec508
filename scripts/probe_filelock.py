"""Does filelock's FileLock keep the guarantees of weightmaps.pipeline.lock?

    python scripts/probe_filelock.py

Each probe prints yes or no for the installed filelock (it comes with torch),
and the same for our lock: a symbolic link at the lock path is refused and its
target untouched; a FIFO there is refused without blocking; the lock is free
once its process is killed with SIGKILL; a forked child that outlives the
holder's release does not keep it. The answers are in the docs
(design/by-hand.md), which say why weightmaps keeps its own lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def filelock_acquire(path: Path):
    import filelock

    lock = filelock.FileLock(str(path), timeout=0.2)
    lock.acquire()
    return lock


def ours_acquire(path: Path):
    from weightmaps.pipeline.lock import output_lock

    lock = output_lock(path.parent)
    lock.__enter__()
    return lock


def release(lock) -> None:
    if hasattr(lock, "release"):
        lock.release()
    else:
        lock.__exit__(None, None, None)


def lock_path(folder: Path, name: str) -> Path:
    return folder / (".weightmaps.lock" if name == "ours" else "x.lock")


def child_code(name: str, path: Path, then: str = "") -> str:
    """Python for a child process: take lock ``name`` at ``path`` (and release it)."""
    here = str(Path(__file__).parent)
    take = f"p.{name}_acquire(pathlib.Path({str(path)!r}))"
    body = f"{take}; {then}" if then else f"p.release({take})"
    head = f"import sys, time, pathlib; sys.path.insert(0, {here!r}); import probe_filelock as p"
    return f"{head}; {body}"


def probe_symlink(name, acquire, folder: Path) -> str:
    target = folder / "precious.txt"
    target.write_text("keep me")
    path = lock_path(folder, name)
    path.symlink_to(target)
    try:
        lock = acquire(path)
        release(lock)
        refused = False
    except Exception:  # noqa: BLE001 - any refusal counts
        refused = True
    untouched = target.read_text() == "keep me"
    return "yes" if refused and untouched else f"no (refused {refused}, target kept {untouched})"


def probe_fifo(name, acquire, folder: Path) -> str:
    path = lock_path(folder, name)
    os.mkfifo(path)
    code = child_code(name, path)
    try:
        ran = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "no (blocked on the FIFO)"
    return "yes" if ran.returncode != 0 else "no (took the FIFO as its lock)"


def probe_sigkill(name, acquire, folder: Path) -> str:
    path = lock_path(folder, name)
    code = child_code(name, path, then="print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    child.send_signal(signal.SIGKILL)
    child.wait()
    try:
        release(acquire(path))
        return "yes"
    except Exception as exc:  # noqa: BLE001
        return f"no ({type(exc).__name__})"


def probe_fork(name, acquire, folder: Path) -> str:
    path = lock_path(folder, name)
    lock = acquire(path)
    pid = os.fork()
    if pid == 0:  # the child: a worker that goes on after the parent let go
        time.sleep(3)
        os._exit(0)
    release(lock)
    try:
        # Another process now: flock is per open file, so only a copy of the
        # descriptor kept by the child could stop it.
        code = child_code(name, path)
        ran = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=10)
        return "yes" if ran.returncode == 0 else "no (the forked child keeps it)"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def main() -> None:
    import filelock

    print(f"filelock {filelock.__version__}: {filelock.FileLock.__name__}")
    probes = [
        ("symbolic link refused, target untouched", probe_symlink),
        ("FIFO refused without blocking", probe_fifo),
        ("free after SIGKILL of the holder", probe_sigkill),
        ("not kept by a forked child", probe_fork),
    ]
    for name, acquire in (("filelock", filelock_acquire), ("ours", ours_acquire)):
        for what, probe in probes:
            with tempfile.TemporaryDirectory() as tmp:
                print(f"{name:9} {what:42} {probe(name, acquire, Path(tmp))}")


if __name__ == "__main__":
    main()
