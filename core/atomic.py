"""Files and directories that appear whole or not at all, and work done once across processes.

Every cache (decoded images, teacher, supernet), every trial's artifacts, every export and every
report goes through these, so a crash or a concurrent reader never sees half a file. Each
writes to a unique sibling and moves it into place with ``os.replace``, which is atomic on one
filesystem.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from edgeshrink.core.errors import EdgeshrinkError

T = TypeVar("T")


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary sibling of ``path`` for any writer (``torch.save``, ``np.savez``, an ONNX
    exporter); it replaces ``path`` when the block succeeds and is removed when it fails."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` with ``data`` in one step, flushed to disk first."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_directory(path: Path | str) -> Iterator[Path]:
    """An empty sibling directory to fill; when the block succeeds it replaces ``path`` (an
    existing one is moved aside first, then deleted), when it fails it is deleted."""
    path = Path(path)
    stage = _sibling(path, "partial")
    stage.mkdir(parents=True)
    try:
        yield stage
        if path.exists():
            old = _sibling(path, "old")
            os.replace(path, old)
            os.replace(stage, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def compute_once(lock_path: Path | str, load: Callable[[], T | None],
                 compute: Callable[[], T]) -> T:
    """``load()`` a cached result, or ``compute()`` it under an inter-process file lock, so
    concurrent workers compute it once: whoever waited finds it cached. ``compute`` must write
    its result atomically (the functions above) before it returns."""
    from filelock import FileLock  # the one dependency of core: cross-platform file locks

    cached = load()
    if cached is not None:
        return cached
    with FileLock(str(lock_path)):
        cached = load()
        return cached if cached is not None else compute()


@contextlib.contextmanager
def staged_directory(out_dir: Path, force: bool) -> Iterator[Path]:
    """Yield an empty sibling directory; on success it replaces ``out_dir`` in one rename."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeshrinkError(f"--out {out_dir} is a file, not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise EdgeshrinkError(f"{out_dir} already exists and is not empty; pass --force to "
                              "replace it")
    with contextlib.ExitStack() as stack:
        try:
            stage = stack.enter_context(atomic_directory(out_dir))
        except OSError as exc:
            raise EdgeshrinkError(f"cannot write into {out_dir.parent}: {exc.strerror}; choose "
                                  "a writable --out") from None
        yield stage
