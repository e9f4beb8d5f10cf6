"""Running the released iVideoGPT checkpoints: read a snapshot folder, map its tensors, write our checkpoint."""

from ivideogpt.official.convert import build_modules, import_snapshot, load_snapshot
from ivideogpt.official.snapshot import Snapshot, SnapshotError, is_snapshot, read_snapshot

__all__ = ["Snapshot", "SnapshotError", "build_modules", "import_snapshot", "is_snapshot", "load_snapshot",
           "read_snapshot"]
