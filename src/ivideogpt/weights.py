"""Where pretrained weight files are looked for: nothing is ever downloaded."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR_VARIABLE = "IVIDEOGPT_WEIGHTS_DIR"


def weight_dirs() -> list[Path]:
    """Folders searched in order: `$IVIDEOGPT_WEIGHTS_DIR` when set, then `~/.cache/ivideogpt/weights`."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_VARIABLE):
        dirs.append(Path(os.environ[WEIGHTS_DIR_VARIABLE]).expanduser())
    dirs.append(Path.home() / ".cache" / "ivideogpt" / "weights")
    return dirs


def where_to_put(filename: str) -> str:
    """Where a missing weight file goes, for an error: every folder searched, by its real path."""
    places = " or ".join(str(folder / filename) for folder in weight_dirs())
    if os.environ.get(WEIGHTS_DIR_VARIABLE):
        return places
    return f"{places} (or in a folder named by ${WEIGHTS_DIR_VARIABLE})"


def not_a_weight_file(path: Path, what: str) -> ValueError:
    """The one-line error for a weight file that does not load as `what` (torch's own message runs to many lines)."""
    return ValueError(f"{path} ({path.stat().st_size} bytes) is not a {what}: a truncated download, or another file?")
