"""Atomic file writes: one way for every file physres writes.

A file is built under a hidden temporary name in its destination directory
(``.NAME.<pid>.<random>.tmp``), flushed to disk, given the permissions a plain ``open()``
would give (``0o666`` less the umask, not ``mkstemp``'s ``0o600``) and renamed into place
with ``os.replace``: readers see the old file or the complete new one, never a partial one.
A failed write removes its temporary file; the pid in the name lets the next write to the
same path remove the leftovers of a killed process (:func:`remove_stale_temporaries`).

Writes go through Python's file I/O, so a full disk or a quota is an ``OSError`` naming the
file (a library writing through C, such as HDF5, may instead crash the interpreter on
``ENOSPC``: build such files in memory and hand the bytes here).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

MARGIN_BYTES = 1 << 20  # free space kept beyond a file's size by :func:`check_free_space`


def umask() -> int:
    """The process's umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def destination(path, name: str | None = None) -> Path:
    """``path`` as a Path after checking that its directory exists and is writable; ``name``
    (the argument's name) leads the error messages when given."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"`{name or 'path'}` must be a str or os.PathLike, got {type(path).__name__}"
        )
    path = Path(path)
    label = f"`{name}` {str(path)!r}" if name else repr(str(path))
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"{label} is a directory; expected a file name")
    if not parent.is_dir():
        raise FileNotFoundError(f"{label}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{label}: directory {str(parent)!r} is not writable")
    return path


def _temporary_pattern(path: Path) -> re.Pattern:
    return re.compile(r"^\." + re.escape(path.name) + r"\.(\d+)\.[^.]+\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary files of writes to ``path`` whose process is gone; return them."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern, removed = _temporary_pattern(path), []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def lock_path(path) -> Path:
    """The lock file of writes to ``path``: ``.NAME.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def exclusive_lock(path, what: str = "a write"):
    """Hold an exclusive lock on :func:`lock_path` of ``path`` for the block; if another
    process holds it, raise ``BlockingIOError`` naming the lock file and its holder.

    ``flock`` locks die with their process (even on SIGKILL), so a lock file left behind
    never blocks a later run. Where ``fcntl`` is missing the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield None
        return
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise BlockingIOError(
                errno.EAGAIN,
                f"another {what} to {str(path)!r} is running (pid {holder} "
                f"holds the lock file {str(lock)!r}); wait for it to finish or write "
                "elsewhere",
            ) from None
        try:  # the file may have been removed by the previous holder in between: retry
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def check_free_space(path, nbytes: int, what: str = "the file") -> None:
    """Raise ``OSError(ENOSPC)`` naming ``path`` unless its directory has room for
    ``nbytes`` plus :data:`MARGIN_BYTES`."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        free = shutil.disk_usage(parent).free
    except OSError:
        return  # no figure for this file system: let the write itself fail cleanly
    need = int(nbytes) + MARGIN_BYTES
    if free < need:
        raise OSError(
            errno.ENOSPC,
            f"not enough free space for {what} {str(path)!r}: needs about "
            f"{_size(need)}, {_size(free)} free in {str(parent)!r}",
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in ``path``'s directory; on success it replaces ``path``.

    For writers that need a file name. The temporary file exists (empty) and already has the
    final permissions; on any exception (including KeyboardInterrupt) it is removed.
    """
    path = destination(path)
    parent = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(parent)


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring). Returns the path.

    A full disk raises ``OSError`` (``ENOSPC``) naming ``path``; nothing is left behind.
    """
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _named(exc, path) from None
    return Path(path)


def write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically. Returns the path."""
    return write_bytes(path, text.encode(encoding))


def _named(exc: OSError, path) -> OSError:
    """The same OSError, saying which destination it was about (not the temporary name)."""
    reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"cannot write {str(path)!r}: {reason}")


def _fsync_file(path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(directory) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
