"""Writing a file whole or not at all: a temporary file beside the target, renamed into place.

Every file the package writes goes through here (safetensors, config.json, training.json and, via
:mod:`kizzasi_lite.io`, every data file and plot). It lives in ``weights/`` because that is the
lowest layer that writes files: the core (``import kizzasi_lite``) must not import ``io/``, while
``io/`` may import the core.

The temporary file is created with ``os.open(..., O_CREAT | O_EXCL, 0o666)``, so the kernel
applies the process umask exactly as ``open(path, "w")`` would (``tempfile.mkstemp`` would give
0600, and reading the umask means setting it, which is not thread-safe). When the target already
exists its permission bits are kept, as ``open(path, "w")`` keeps them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from kizzasi_lite.errors import InputError, KizzasiError

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_ATTEMPTS = 100


def _new_temp(path: Path) -> Path:
    """Create an empty file beside ``path`` (same suffix, so format detection still works) with
    the mode a new ``path`` would get; return its path."""
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, _FLAGS, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        with contextlib.suppress(OSError):  # a target we may not stat: keep the umask mode
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        return tmp
    raise FileExistsError(f"no free temporary name beside {path} after {_ATTEMPTS} tries")


class AtomicFile:
    """A temporary file beside ``path`` that :meth:`commit` renames onto ``path`` and
    :meth:`discard` deletes. Problems raise ``error`` (an ``InputError`` unless told otherwise)
    naming the file."""

    def __init__(self, path: str | os.PathLike, *, error: type[KizzasiError] = InputError) -> None:
        self.path = Path(path)
        self.error = error
        parent = self.path.parent
        if not parent.is_dir():
            raise error(f"{self.path}: the folder {parent} does not exist")
        try:
            self.tmp = _new_temp(self.path)
        except OSError as exc:
            raise error(f"cannot write {self.path}: {exc}") from exc
        self.done = False

    def commit(self) -> None:
        """Move the temporary file onto ``path`` (once; later calls do nothing)."""
        if self.done:
            return
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise self.error(f"cannot write {self.path}: {exc}") from exc
        self.done = True

    def discard(self) -> None:
        """Delete the temporary file and leave ``path`` as it was (once)."""
        if not self.done:
            self.tmp.unlink(missing_ok=True)
            self.done = True


class atomic_write:  # lower case: used like a function, ``with atomic_write(path) as tmp:``
    """``with atomic_write("out.png") as tmp: save(tmp)``: the file appears only if the block
    succeeds; on any exception the temporary file is removed and ``out.png`` is left as it was."""

    def __init__(self, path: str | os.PathLike, *, error: type[KizzasiError] = InputError) -> None:
        self.file = AtomicFile(path, error=error)

    def __enter__(self) -> Path:
        return self.file.tmp

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.file.commit()
        else:
            self.file.discard()


__all__ = ["AtomicFile", "atomic_write"]
