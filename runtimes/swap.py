"""Replace a bundle directory so that a kill at any instant leaves a complete bundle at ``out``.

:func:`swap_in` exchanges the staged directory with ``out`` in one ``renameat2(RENAME_EXCHANGE)`` call
where the kernel and file system have it (Linux >= 3.15); elsewhere it moves the old bundle aside to
``.NAME.old-PID`` first, and :func:`recover` puts it back when the process died between the two
renames. :class:`OutLock` lets one process at a time write a given ``out`` (a second one is refused
at once), and :func:`recover`, run under that lock, removes staging folders and old bundles that a
killed export left beside ``out``.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "b").mkdir(); _ = (root / "b" / "f").write_text("old")
    >>> (root / ".b.abcd1234.staging").mkdir(); _ = (root / ".b.abcd1234.staging" / "f").write_text("new")
    >>> with OutLock.acquire(root / "b", "b"):
    ...     swap_in(root / ".b.abcd1234.staging", root / "b")
    >>> (root / "b" / "f").read_text(), sorted(p.name for p in root.iterdir())
    ('new', ['b'])
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Callable

from .errors import BundleError

__all__ = ["STAGING_SUFFIX", "OutLock", "swap_in", "recover", "remove_tree", "leftovers"]

STAGING_SUFFIX = ".staging"
# fault injection (tests and benchmarks/crash.py): called with the name of each step of a swap
_after_step: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _after_step is not None:
        _after_step(name)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the names ``a`` and ``b``; False where renameat2(RENAME_EXCHANGE) is missing."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not on this kernel / file system
        return False
    raise OSError(err, os.strerror(err), str(b))


def _backup_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.old-{os.getpid()}")


def swap_in(staged: Path, dest: Path) -> None:
    """Move the complete directory ``staged`` to ``dest``; ``dest`` holds the old or the new bundle at
    every instant (see the module doc). Call it under :class:`OutLock`. Steps: "exchanged" or
    "moved-aside" + "moved-in", then "removed"."""
    if not dest.is_symlink() and not dest.exists():
        os.rename(staged, dest)
        _fsync_dir(dest.parent)
        _step("moved-in")
        return
    if _exchange(staged, dest):
        _fsync_dir(dest.parent)
        _step("exchanged")
        remove_tree(staged)  # now the old bundle
        _step("removed")
        return
    backup = _backup_name(dest)
    os.replace(dest, backup)
    _step("moved-aside")
    os.replace(staged, dest)
    _fsync_dir(dest.parent)
    _step("moved-in")
    remove_tree(backup)
    _step("removed")


def remove_tree(path: Path) -> None:
    """Remove a file, link or folder; read-only folders in it are made writable first (it is ours)."""
    import shutil

    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return

    def retry(func, failed, _exc) -> None:
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, stat.S_IMODE(os.stat(parent).st_mode) | stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IMODE(os.stat(failed).st_mode) | stat.S_IRWXU)
            func(failed)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:  # pragma: no cover - older Pythons
        shutil.rmtree(path, onerror=lambda func, failed, info: retry(func, failed, info[1]))


def leftovers(dest: Path) -> tuple[list[Path], list[Path]]:
    """(staging folders, old bundles) that exports to ``dest`` left beside it."""
    name = re.escape(dest.name)
    staging = re.compile(rf"^\.{name}\.[a-z0-9_]{{8}}{re.escape(STAGING_SUFFIX)}$")
    old = re.compile(rf"^\.{name}\.old-\d+$")
    try:
        entries = sorted(os.listdir(dest.parent))
    except OSError:
        return [], []
    return ([dest.parent / e for e in entries if staging.match(e)], [dest.parent / e for e in entries if old.match(e)])


def recover(dest: Path) -> None:
    """Under :class:`OutLock`: put an old bundle back at ``dest`` when a swap died with ``dest`` moved
    aside, and remove every other staging folder or old bundle beside it."""
    staged, old = leftovers(dest)
    for backup in sorted(old, key=lambda p: p.stat().st_mtime, reverse=True):
        if not dest.is_symlink() and not dest.exists():
            os.rename(backup, dest)
            _fsync_dir(dest.parent)
        else:
            remove_tree(backup)
    for path in staged:
        remove_tree(path)


class OutLock:
    """An exclusive lock on ``.NAME.lock`` beside ``dest``, held while one process writes ``dest``.

    A second writer is refused at once with a BundleError. The lock file is removed on release (the
    inode check on acquire makes that safe); one left by a killed process is simply taken over.
    """

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, dest: Path, where: str) -> "OutLock":
        path = dest.with_name(f".{dest.name}.lock")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock (Windows): no lock
            return cls(path, None)
        while True:
            mask = os.umask(0)
            os.umask(mask)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~mask)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BundleError(
                    f"{where}: another edgekit process is writing this bundle (it holds {path.name}); "
                    "wait for it to finish or choose another --out"
                ) from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return cls(path, fd)
            os.close(fd)  # the holder removed it as we opened it: take the new one

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutLock":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
