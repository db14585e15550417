"""File operations of a ``dir_archive``: publishing, claiming and listing entry files.

Every entry is published whole: written to a fresh temporary file in the archive's own
directory (``_fs.new_temp_file``: O_EXCL, mode 0o600, never following a planted symlink) and moved
into place with ``os.replace`` (or, to create it only if absent, a hard link). Readers open
entries without following symlinks and without blocking on a planted FIFO.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import time
from typing import Any

from klepto._fs import DIR_MODE, TEMP_PREFIX, fsync_dir, is_temp_name, new_temp_file, write_all

__all__ = [
    "ENTRY_PREFIX",
    "claim",
    "entry_names",
    "holds_classic_entries",
    "ignore_temps",
    "make_root",
    "move_if_absent",
    "open_entry",
    "publish",
    "regular_size",
    "remove_stale_temps",
]

logger = logging.getLogger("klepto.archives.directory")

ENTRY_PREFIX = "K_"
_ENTRY_NAME = re.compile(r"K_[0-9a-f]{32}\Z")
# O_NONBLOCK: a FIFO planted at an entry's name must not hang a reader (no effect on files).
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
_READ_FLAGS |= getattr(os, "O_CLOEXEC", 0)
# O_NOATIME: a read does not write the entry's inode. Under relatime, the first read after
# each write updates the access time, so a new process reading fresh entries would write
# each one's inode (a third or more of a small read's cost). Nothing here goes by access
# times (size limits evict by write time). Only a file's owner may ask this; after the
# first refusal (entries another user wrote) this process no longer asks.
_NOATIME = getattr(os, "O_NOATIME", 0)
_read_flags = [_READ_FLAGS | _NOATIME]
_NO_HARDLINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
_IOV_MAX = 512


def make_root(root: str, permissions: int | None) -> None:
    """Create the archive directory (0o700, or exactly ``permissions``) if it is missing."""
    if os.path.isdir(root):
        return
    os.makedirs(root, mode=DIR_MODE if permissions is None else permissions, exist_ok=True)
    if permissions is not None:
        os.chmod(root, permissions)  # exactly as asked, whatever the umask


def open_entry(path: str) -> int | None:
    """An entry file's descriptor, for reading (the caller closes it); None if no entry.

    Nothing is asked about the file here (an ``fstat`` costs as much as the read of a small
    entry): a reader calls :func:`regular_size` when what it reads is not a whole entry.
    """
    try:
        return os.open(path, _read_flags[0])
    except FileNotFoundError:
        return None
    except PermissionError:
        if not _read_flags[0] & _NOATIME:
            raise
        _read_flags[0] = _READ_FLAGS  # not the owner: ask as everybody does
        return open_entry(path)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        logger.warning("ignoring a symlink planted at entry %s", path)
        return None


def regular_size(fd: int, path: str) -> int | None:
    """The size of the entry file open as ``fd``; None (logged) if it is no regular file."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        logger.warning("ignoring a non-file planted at entry %s", path)
        return None
    return info.st_size


def entry_names(root: str) -> list[str]:
    """Names of the entries now in ``root`` (one scan; temps and foreign files skipped)."""
    with os.scandir(root) as scan:
        return [
            entry.name
            for entry in scan
            if _ENTRY_NAME.match(entry.name) and entry.is_file(follow_symlinks=False)
        ]


def publish(
    root: str, path: str, chunks: list[Any], *, exclusive: bool, mode: int | None, durable: bool
) -> bool:
    """Write ``chunks`` to a temp file in ``root`` and move it to ``path`` (only if absent,
    if ``exclusive``); True if published. On any error the temp file is removed."""
    fd, temp = new_temp_file(root)
    try:
        try:
            write_chunks(fd, chunks)
            if mode is not None:
                os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            published = move_if_absent(temp, path)
        else:
            os.replace(temp, path)
            published = True
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if durable and published:
        fsync_dir(root)
    return published


def write_chunks(fd: int, chunks: list[Any]) -> None:
    """Write every chunk, in as few system calls as the kernel allows."""
    for start in range(0, len(chunks), _IOV_MAX):
        group = chunks[start : start + _IOV_MAX]
        written = os.writev(fd, group)
        total = sum(memoryview(chunk).nbytes for chunk in group)
        if written < total:  # a short write (large values): finish chunk by chunk
            for chunk in group:
                view = memoryview(chunk).cast("B")
                skip = min(written, view.nbytes)
                written -= skip
                write_all(fd, view[skip:])


def move_if_absent(source: str, target: str) -> bool:
    """Move ``source`` to ``target`` unless ``target`` exists (then delete ``source``)."""
    try:
        os.link(source, target, follow_symlinks=False)  # a planted symlink is moved as is
    except FileExistsError:
        published = False
    except OSError as exc:
        if exc.errno not in _NO_HARDLINKS:
            raise
        if os.path.lexists(target):
            published = False
        else:
            os.rename(source, target)  # no hard links on this file system: a tiny race remains
            return True
    else:
        published = True
    os.unlink(source)
    return published


def claim(root: str, path: str) -> str | None:
    """Atomically take the entry at ``path`` away (a rename); its new path, or None."""
    claimed = os.path.join(root, f"{TEMP_PREFIX}claim-{os.urandom(8).hex()}.tmp")
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return None
    return claimed


def remove_stale_temps(root: str, max_age: float) -> int:
    """Delete temporary files unchanged for ``max_age`` seconds; return the count."""
    removed, now = 0, time.time()
    with os.scandir(root) as scan:
        for entry in scan:
            if not is_temp_name(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                info = entry.stat(follow_symlinks=False)
                if now - max(info.st_ctime, info.st_mtime) >= max_age:
                    os.unlink(entry.path)
                    removed += 1
    if removed:
        logger.info("removed %d stale temporary file(s) from %s", removed, root)
    return removed


def holds_classic_entries(root: str) -> bool:
    """True if ``root`` has classic klepto entries (``K_*`` directories), which are not read."""
    with os.scandir(root) as scan:
        return any(e.name.startswith(ENTRY_PREFIX) and e.is_dir() for e in scan)


def ignore_temps(directory: str, names: list[str]) -> set[str]:
    """For ``shutil.copytree``: leave temporary files behind."""
    return {name for name in names if is_temp_name(name)}
