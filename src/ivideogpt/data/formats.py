"""The data formats the project reads: one registry, the only place to add a format.

A format names its reader class (imported when a source of that format is read), the file endings
that `detect_format` counts as that format, and whether its reward convention is fixed. The
config's `format` field, `make_reader`, format detection, `convert` and `ivideogpt data convert`
all read this table. A new format: write a reader in `data/sources/<module>.py` (see
`data/sources/base.py`: `scan(report)` and `load(info)`), then add one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataFormat:
    name: str
    reader: str  # "module:Class" under ivideogpt.data.sources, imported on first use
    what: str  # one line for people: what the format is
    suffixes: tuple[str, ...] = ()  # file endings that identify it when the format is "auto" (lower case)
    fixed_alignment: bool = False  # its reward convention is known and applied: `options.alignment` is refused

    def reader_class(self) -> Any:
        module, name = self.reader.split(":")
        return getattr(importlib.import_module(f"ivideogpt.data.sources.{module}"), name)


VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".avi", ".mkv", ".mov", ".m4v")

DATA_FORMATS: dict[str, DataFormat] = {f.name: f for f in (
    DataFormat("npz", "npz:NpzReader", "project episodes and npz layouts of other code", (".npz",)),
    DataFormat("video", "video:VideoFolderReader", "folder of mp4/webm/gif/... files (action-free)", VIDEO_SUFFIXES),
    DataFormat("hdf5", "hdf5:Hdf5Reader", "HDF5 trajectories, one per file or per group", (".h5", ".hdf5")),
    DataFormat("lerobot", "lerobot:LeRobotReader", "LeRobot dataset folder, v2.x or v3.0 (found by meta/info.json)"),
    DataFormat("rlds", "rlds:RldsReader", "RLDS / TFDS TFRecord shards (Open X-Embodiment)", fixed_alignment=True),
    DataFormat("tar", "webdataset:TarReader", "WebDataset tar shards: npz, .npy, image or video samples",
               (".tar", ".tar.gz", ".tgz")),
    DataFormat("bair", "rlds:BairReader", "BAIR robot pushing TFRecords", fixed_alignment=True),
    DataFormat("robonet", "robonet:RoboNetReader", "RoboNet hdf5 trajectories", fixed_alignment=True),
)}
