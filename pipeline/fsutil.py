"""Small file-system helpers: atomic writes, hashing."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    An interrupted write never leaves a truncated file that looks complete. The file keeps the
    permissions of the file it replaces, or gets the usual ones (0666 less the umask, 0644 by
    default) when new: a temporary file's 0600 never leaks into the result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_mode(path: Path) -> int:
    """The permission bits ``path`` has, or a new file's (0666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a writer that may still finish)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def project_root(start: Path | None = None) -> Path:
    """The project folder the current directory is in: the nearest of it and its parents that
    holds ``models/`` or ``experiments/`` (where ``make all`` puts them); else the current
    directory. So ``topics predict`` finds the model store from any subfolder."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "models").is_dir() or (d / "experiments").is_dir():
            return d
    return here


def pause_for_tests(point: str) -> None:
    """Tests set GOV_TOPICS_TEST_PAUSE=<point>:<seconds> to kill a writer at a known moment
    (and GOV_TOPICS_TEST_PAUSED=<file>, created when the pause begins)."""
    spec = os.environ.get("GOV_TOPICS_TEST_PAUSE", "")
    if spec.startswith(point + ":"):
        mark = os.environ.get("GOV_TOPICS_TEST_PAUSED")
        if mark:
            Path(mark).touch()
        time.sleep(float(spec.split(":", 1)[1]))
