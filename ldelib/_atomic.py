"""Files that appear whole: write a temporary file beside the target, then rename it.

What the rename replaces is only ever a regular file. A symlink is followed, so the file it
points to is replaced and the link is kept; a path that exists and is not a regular file (a
device, a FIFO, a socket) is refused before anything is written, because a rename would
put a regular file in its place (saving to ``/dev/full`` as root would replace the device
node and report success). To write to such a path, pass an open file object to ``save``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["atomic_path", "resolve_target"]

_KINDS = {
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISSOCK: "a socket",
    stat.S_ISDIR: "a folder",
}


def resolve_target(path: str | os.PathLike[str]) -> str:
    """The regular file that writing ``path`` should replace (it need not exist yet).

    Raises
    ------
    FileNotFoundError
        If the folder that would hold the file does not exist.
    IsADirectoryError, OSError
        If the path (or a symlink's target) exists and is not a regular file, or the
        symlinks form a loop.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.symlink("real.ldelib", os.path.join(folder, "link.ldelib"))
    >>> os.path.basename(resolve_target(os.path.join(folder, "link.ldelib")))
    'real.ldelib'
    """
    given = os.fspath(path)
    target = os.path.realpath(given)
    if os.path.islink(target):  # realpath gives up on a loop and returns a link
        raise OSError(f"Cannot write {given!r}: its symlinks form a loop.")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write {given!r}: the folder {folder!r} does not exist.")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISREG(mode):
        return target
    kind = next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")
    where = given if target == os.path.abspath(given) else f"{given} (-> {target})"
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"Cannot write {where!r}: it is a folder; give a file name.")
    raise OSError(
        f"Cannot write {where!r}: it is {kind}, not a regular file, and ldelib never "
        "replaces one. Write to a file path, or pass an open file object instead."
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path to write; renamed over ``path``'s target if the block succeeds.

    The temporary file lives in the target's folder (a rename is atomic only within one
    file system) and is synced before the rename, so a crash leaves the old file or the
    new one, never a mix. A file that already exists keeps its permission bits (a model
    saved over a private ``0600`` file stays private); a new one gets ``0666 & ~umask``,
    as ``open`` would give it. A failure leaves no temporary file behind.
    """
    target = resolve_target(path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
    fd, tmp = tempfile.mkstemp(prefix=".ldelib-", suffix=suffix, dir=os.path.dirname(target))
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp's 0600 is for the temporary name only
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
