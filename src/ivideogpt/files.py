"""Files written whole or not at all, readable by whoever may read the user's other new files.

Temporary files (`tempfile.mkstemp`) and safetensors' writer create files as 0600; renamed into place
they would stay unreadable to a teammate even under umask 022. Every file written here ends with the
mode a plain `open(path, "w")` gives: 0666 minus the umask.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _read_umask() -> int:
    """The process's umask (only readable by setting it: done once, at import, before any thread writes)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


NEW_FILE_MODE = 0o666 & ~_read_umask()


def as_new_file(path: str | Path) -> None:
    """Give `path` the permissions of a newly created file (0666 minus the umask)."""
    os.chmod(path, NEW_FILE_MODE)


@contextmanager
def atomic_file(target: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A stream to a temporary file beside `target` that replaces `target` when the block ends without error;
    on any error (a full disk, Ctrl-C) it is removed and `target` is left as it was."""
    target = Path(target)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=f"{target.suffix}.tmp")
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
        as_new_file(temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
