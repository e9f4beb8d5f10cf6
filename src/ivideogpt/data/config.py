"""Data configuration: which sources to mix, how segments are cut, augmented and split.

Load from YAML with `ivideogpt.configuration.load_config(DataConfig, path, overrides)`;
relative source paths are resolved against `root` (which itself may be overridden, e.g.
`--root=/datasets/oxe`), so a shipped mixture file works wherever the data lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ivideogpt.data.formats import DATA_FORMATS

FORMATS = ("auto", *DATA_FORMATS)
ALIGNMENTS = ("on_arrival", "after_action")  # `options.alignment`: see docs/data.md, "Rewards"
FIXED_ALIGNMENT = tuple(f.name for f in DATA_FORMATS.values() if f.fixed_alignment)  # reward convention known


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {value}")


@dataclass
class SourceConfig:
    """One data source of a mixture.

    name: unique label (episode ids are `name/<episode key>`).
    path: file or directory; relative paths are resolved against `DataConfig.root`.
    format: one of FORMATS (the registry in `ivideogpt/data/formats.py`); "auto" guesses from the path.
    weight: mixture weight; sources are drawn with probability weight / sum(weights).
    step: frame skip; neighbouring frames of a segment are `step` recorded frames apart.
    action_stride: how the `step` actions between two kept frames become one action row:
      "concat" (default, lossless: A * step values), "sum" (for delta actions), "first".
    normalize_actions: map actions to [-1, 1] with the bounds in the source's metadata.json.
    num_trajectories: informational (e.g. the paper's Table 4 count); a mismatch is only noted.
    options: format-specific keys, e.g. {"image_key": "aux1_image"} or {"alignment": "after_action"}
      (see docs/data.md).
    """

    name: str
    path: str
    format: str = "auto"
    weight: float = 1.0
    step: int = 1
    action_stride: Literal["concat", "sum", "first"] = "concat"
    normalize_actions: bool = True
    num_trajectories: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"source name must be non-empty and contain no '/', got {self.name!r}")
        if self.format not in FORMATS:
            raise ValueError(f"source {self.name}: format must be one of {FORMATS}, got {self.format!r}")
        if not self.weight > 0:
            raise ValueError(f"source {self.name}: weight must be > 0, got {self.weight}")
        if self.step < 1:
            raise ValueError(f"source {self.name}: step must be >= 1, got {self.step}")
        if self.action_stride not in ("concat", "sum", "first"):
            raise ValueError(f"source {self.name}: action_stride must be concat/sum/first, got {self.action_stride!r}")
        alignment = self.options.get("alignment")
        if alignment is not None and (alignment not in ALIGNMENTS or self.format in FIXED_ALIGNMENT):
            raise ValueError(f"source {self.name}: options.alignment must be one of {ALIGNMENTS} and applies to "
                             f"npz, video, hdf5, lerobot and tar sources, got {alignment!r} for format {self.format}")

    def resolved_path(self, root: str | Path = "") -> Path:
        """`path` made absolute against `root` (unless already absolute); `~` is expanded."""
        path = Path(self.path).expanduser()
        return path if path.is_absolute() or not str(root) else Path(root).expanduser() / path


@dataclass
class DataConfig:
    """Everything that decides which frames a training or evaluation item holds.

    segment_length: frames per segment (before future sub-sampling), `num_context` of them context.
    sampled_future: 0 = return all future frames; k > 0 = keep k random future frames (sorted),
      as the paper does for tokenizer training (2 context + 6 sampled of 14).
    augment: random resized crop + colour jitter with one draw per segment (train split only).
    val_fraction: share of each source's episodes held out for validation (chosen from the seed).
    heldout_episodes: episode ids ("source/key" or "key") kept out of train and val: the test set.
    exclude_sources: names of configured sources to leave out (e.g. `exclude_sources=[ssv2]`).
    actions: "auto" keeps actions when every episode has them with one width, else drops them
      with a note; "require" skips episodes without actions; "ignore" never returns them.
    length: nominal number of training items (items are random draws, so any index is valid).
    cache_mb: memory budget per process for decoded episodes (least recently used are evicted);
      small datasets end up fully in memory, large ones are read on demand.
    stream: train from tar shards read in sequence (`data/stream.py`) instead of indexing the
      episodes: for data too large to index; every source must be a folder of shards. Epoch-based,
      resumable, without a validation split.
    shuffle_buffer: streamed segments held in a seeded buffer, each output a random pick among
      them (0 or 1: shard order); larger mixes better, costs memory (undecoded samples) and a
      longer start.
    segments_per_episode: streamed segments cut from each episode per epoch.
    """

    sources: list[SourceConfig] = field(default_factory=list)
    exclude_sources: list[str] = field(default_factory=list)
    root: str = ""
    resolution: int = 64
    segment_length: int = 16
    num_context: int = 1
    sampled_future: int = 0
    augment: bool = False
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    brightness: tuple[float, float] = (0.9, 1.1)
    contrast: tuple[float, float] = (0.9, 1.1)
    saturation: tuple[float, float] = (0.9, 1.1)
    hue: tuple[float, float] = (-0.05, 0.05)
    val_fraction: float = 0.05
    heldout_episodes: list[str] = field(default_factory=list)
    actions: Literal["auto", "require", "ignore"] = "auto"
    length: int = 1_000_000
    cache_mb: int = 512
    stream: bool = False
    shuffle_buffer: int = 256
    segments_per_episode: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        self.sources = [s if isinstance(s, SourceConfig) else SourceConfig(**s) for s in self.sources]
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"sources: names must be unique, got {names}")
        unknown = sorted(set(self.exclude_sources) - set(names))
        if unknown:
            raise ValueError(f"exclude_sources: {unknown} are not configured sources ({names})")
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {self.resolution}")
        if self.segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {self.segment_length}")
        if not 1 <= self.num_context < self.segment_length:
            raise ValueError(f"num_context must be in [1, segment_length - 1 = {self.segment_length - 1}] (a segment "
                             f"is its context frames, then at least one future frame), got {self.num_context}")
        if not 0 <= self.sampled_future <= self.segment_length - self.num_context:
            raise ValueError(f"sampled_future must be in [0, segment_length - num_context = "
                             f"{self.segment_length - self.num_context}], got {self.sampled_future}")
        _check_range("crop_scale", self.crop_scale, 1e-3, 1.0)
        _check_range("crop_ratio", self.crop_ratio, 1e-3, 1e3)
        for name in ("brightness", "contrast", "saturation"):
            _check_range(name, getattr(self, name), 0.0, 1e3)
        _check_range("hue", self.hue, -0.5, 0.5)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.actions not in ("auto", "require", "ignore"):
            raise ValueError(f"actions must be auto/require/ignore, got {self.actions!r}")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if self.cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {self.cache_mb}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        if self.segments_per_episode < 1:
            raise ValueError(f"segments_per_episode must be >= 1, got {self.segments_per_episode}")

    @property
    def active_sources(self) -> list[SourceConfig]:
        """The sources in use: all configured ones minus `exclude_sources`."""
        return [s for s in self.sources if s.name not in self.exclude_sources]

    @property
    def num_frames(self) -> int:
        """Frames per returned item: all of the segment, or context + sampled future frames."""
        return self.num_context + self.sampled_future if self.sampled_future else self.segment_length

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> "DataConfig":
        """Defaults, updated by a YAML file, then by dotted overrides such as `root=/data`."""
        from ivideogpt.configuration import load_config

        return load_config(cls, path, overrides)
