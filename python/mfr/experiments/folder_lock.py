"""One writer per output folder: an exclusive lock that the operating system drops with its process.

Every command and API that writes a run folder (``mfr train``, ``mfr reproduce``, ``Trainer.fit``,
``run_protocol``) holds ``<folder>/.mfr-lock`` from before it decides whether the folder may be
resumed or overwritten until the run ends. The lock is ``flock(2)`` on that file: a process killed
with SIGKILL leaves no lock behind, so the next ``--resume`` proceeds at once. A second writer gets
:class:`mfr.FolderInUseError` naming the holder (pid, host, start time, read from the lock file) and
changes nothing in the folder. Readers take no lock: every file a run writes is replaced atomically.

Within one process the lock is re-entrant for the thread that holds it (the CLI holds the folder and
then calls ``Trainer.fit`` on it); another thread of the same process is refused like another process.
On a filesystem whose locks do not work (some network filesystems answer ``ENOLCK``), the run goes
on without one after one :class:`mfr.FolderLockWarning` per folder.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import _core
from . import distributed

__all__ = ["LOCK_NAME", "hold", "hold_on_main"]

#: The lock file inside a held folder (removed when the holder lets go).
LOCK_NAME = ".mfr-lock"

#: errno values with which a filesystem says it has no (working) locks.
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})


@dataclass
class _Held:
    fd: int | None  # None: the filesystem has no locks, held in name only
    pid: int
    thread: int
    depth: int
    created: bool  # this holder made the folder: removed on release when nothing else is in it


_held: dict[Path, _Held] = {}
_guard = threading.Lock()
_warned: set[Path] = set()


@contextlib.contextmanager
def hold(folder: str | os.PathLike[str], what: str = "out_dir") -> Iterator[Path]:
    """Hold ``folder`` (made if missing) for writing while the block runs; ``what`` names it in the
    message (``--out`` for the CLI). Raises :class:`mfr.FolderInUseError` if another process or
    thread holds it."""
    path = _acquire(Path(folder), what)
    try:
        yield path
    finally:
        _release(path)


@contextlib.contextmanager
def hold_on_main(folder: str | os.PathLike[str], what: str, main: bool) -> Iterator[None]:
    """:func:`hold` on the main rank only (under torchrun one lock per run); every rank learns
    whether it was had and raises the same error if not, so no rank waits for a peer that left."""
    with contextlib.ExitStack() as stack:
        refused = None
        if main:
            try:
                stack.enter_context(hold(folder, what))
            except _core.FolderInUseError as e:
                refused = str(e)
        refused = distributed.gather_objects(refused)[0]
        if refused is not None:
            raise _core.FolderInUseError(refused)
        yield


def _acquire(folder: Path, what: str) -> Path:
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    with _guard:
        held = _held.get(key)
        if held is not None and held.pid == os.getpid():  # a forked child holds nothing of its parent's
            if held.thread != threading.get_ident():
                raise _core.FolderInUseError(
                    f"{what} {folder} is being written by another thread of this process; use another {what}"
                )
            held.depth += 1
            return key
        fd = _lock_file(key, folder, what)
        _held[key] = _Held(fd, os.getpid(), threading.get_ident(), 1, created)
    return key


def _lock_file(key: Path, folder: Path, what: str) -> int | None:
    """The locked lock file's descriptor, with this process's details written in it."""
    lock = key / LOCK_NAME
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder's last holder removed it, empty, a moment ago
            key.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _core.FolderInUseError(_busy_message(lock, folder, what)) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
            if key not in _warned:
                _warned.add(key)
                warnings.warn(
                    f"{what} {folder}: its filesystem has no working file locks ({os.strerror(e.errno)}); "
                    "going on without one, so nothing stops a second run from writing the same folder",
                    _core.FolderLockWarning,
                    stacklevel=5,
                )
            with contextlib.suppress(OSError):  # the file made for the lock says nothing now
                if os.path.getsize(lock) == 0:
                    os.unlink(lock)
            return None
        # a holder that let go removed the file after we opened it: lock the file that is there now
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    return fd


def _busy_message(lock: Path, folder: Path, what: str) -> str:
    holder: dict[str, object] = {}
    for _ in range(20):  # the holder writes its details just after it locks: give it a moment
        try:
            holder = json.loads(lock.read_text())
            break
        except (OSError, ValueError):
            time.sleep(0.025)
    if not holder:
        return f"{what} {folder} is being written by another process; wait for it or use another {what}"
    started = str(holder.get("started", "?"))
    with contextlib.suppress(ValueError):
        started = datetime.datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{what} {folder} is being written by pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {started}; wait for it or use another {what}"
    )


def _release(key: Path) -> None:
    with _guard:
        held = _held[key]
        held.depth -= 1
        if held.depth > 0:
            return
        del _held[key]
    if held.fd is not None:
        # unlinked while still locked: a process that opened it meanwhile sees the inode change
        with contextlib.suppress(OSError):
            os.unlink(key / LOCK_NAME)
        os.close(held.fd)
    if held.created:  # a run refused before it wrote anything leaves no empty folder behind
        with contextlib.suppress(OSError):
            key.rmdir()
