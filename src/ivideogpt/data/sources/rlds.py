"""RLDS episodes (Open X-Embodiment TFDS shards) and BAIR robot pushing, from TFRecord files.

RLDS: one `tf.train.Example` per episode with step features flattened and concatenated over
steps, e.g. `steps/observation/image` (one JPEG/PNG per step) and `steps/action`. Options:
`image_key` (default `steps/observation/image`, else the first `steps/observation/*image*`
bytes feature; OXE camera names such as `rgb_static` stand for `steps/observation/rgb_static`),
`action_key` (a name or a list of names concatenated in order; default `steps/action`, else every
numeric `steps/action/*` feature, sorted), `reward_key` (default `steps/reward`), `verify` (check
payload CRCs). Scanning reads every record once to count steps; convert large sets once
(`ivideogpt data convert rlds`) rather than scanning them at every start.

A shard cut (or with a corrupt length header) part-way keeps its complete records before the
damage; the damage is reported (kind `truncated`) with its byte offset and the number of records
recovered, like a cut tar shard. A record whose payload fails its CRC (`verify`) is skipped alone.

BAIR (softmotion30_44k `traj_*_to_*.tfrecords`): per-step features `{t}/image_aux1/encoded`,
`{t}/image_main/encoded` (raw 64x64 RGB bytes), `{t}/action` (4) and `{t}/endeffector_pos` (3).
Option `camera`: `aux1` (default; the view the paper's BAIR experiments use) or `main`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources.base import EpisodeInfo, align_actions
from ivideogpt.data.sources.tfrecord import parse_example, read_record, record_offsets
from ivideogpt.data.sources.webdataset import report_cut


def decode_image(blob: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> (H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise EpisodeError(f"cannot decode an encoded image: {error}") from error


def _tfrecord_files(path: Path, pattern: str) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and re.search(pattern, p.name))


class _RecordReader:
    """Shared scan loop: every record of every file is one episode, id `<relative file>/<record index>`."""

    pattern = r"\.tfrecords?(-\d+-of-\d+)?$"

    def __init__(self, path: str | Path, options: dict[str, Any] | None = None) -> None:
        self.path, self.options = Path(path), dict(options or {})

    def scan(self, report: DataReport) -> list[EpisodeInfo]:
        infos = []
        for file in _tfrecord_files(self.path, self.pattern):
            name = file.name if self.path.is_file() else file.relative_to(self.path).as_posix()
            name = re.sub(r"\.tfrecords?$", "", name)
            try:
                offsets, damage = record_offsets(file)
            except OSError as error:
                offsets, damage = [], str(error)
            if damage is not None and offsets:
                report_cut(report, file, None, damage, len(offsets))  # kind `truncated`, as a cut tar shard
            elif damage is not None:
                report.found += 1
                report.skip(str(file), damage, "unreadable")
            for index, offset in enumerate(offsets):
                report.found += 1
                try:
                    features = parse_example(read_record(file, offset, self.options.get("verify", False)))
                    length, action_dim, has_rewards = self._measure(features)
                    infos.append(EpisodeInfo(f"{name}/{index}", length, action_dim, has_rewards, (file, offset)))
                except (EpisodeError, OSError, ValueError, KeyError) as error:
                    report.skip(f"{file}#record{index}", str(error), "inconsistent")
        return infos

    def _features(self, info: EpisodeInfo) -> dict[str, Any]:
        file, offset = info.location
        try:
            return parse_example(read_record(file, offset, self.options.get("verify", False)))
        except OSError as error:
            raise EpisodeError(f"{file}: {error}") from error

    def _measure(self, features: dict[str, Any]) -> tuple[int, int | None, bool]:
        raise NotImplementedError


class RldsReader(_RecordReader):
    """TFDS/RLDS TFRecord shards, one episode per record."""

    def _image_key(self, features: dict[str, Any]) -> str:
        key = self.options.get("image_key")
        if key is None:
            key = "steps/observation/image" if "steps/observation/image" in features else next(
                (k for k in sorted(features) if k.startswith("steps/observation/") and "image" in k
                 and isinstance(features[k], list)), None)
        if key is not None and key not in features and f"steps/observation/{key}" in features:
            key = f"steps/observation/{key}"  # a bare camera name, as npz options use
        if key is None or key not in features:
            raise EpisodeError(f"no image feature {key or 'steps/observation/*image*'}; "
                               f"features: {sorted(features)[:12]}")
        return key

    def _action_keys(self, features: dict[str, Any]) -> list[str]:
        keys = self.options.get("action_key")
        if keys is None:
            keys = ["steps/action"] if "steps/action" in features else sorted(
                k for k in features if k.startswith("steps/action/") and isinstance(features[k], np.ndarray))
        keys = [keys] if isinstance(keys, str) else list(keys)
        missing = [k for k in keys if k not in features]
        if missing:
            raise EpisodeError(f"action feature(s) {missing} not found")
        return keys

    def _measure(self, features: dict[str, Any]) -> tuple[int, int | None, bool]:
        length = len(features[self._image_key(features)])
        if length == 0:
            raise EpisodeError("episode has no steps")
        keys = self._action_keys(features)
        dims = []
        for key in keys:
            size = len(features[key])
            if size % length:
                raise EpisodeError(f"{key}: {size} values do not split into {length} steps")
            dims.append(size // length)
        return length, (sum(dims) if keys else None), self.options.get("reward_key", "steps/reward") in features

    def load(self, info: EpisodeInfo) -> Episode:
        features = self._features(info)
        frames = np.stack([decode_image(blob) for blob in features[self._image_key(features)]])
        length = frames.shape[0]
        keys = self._action_keys(features)
        actions = None
        if keys:
            actions = align_actions(np.concatenate(
                [np.asarray(features[k], np.float32).reshape(length, -1) for k in keys], axis=1), length)
        reward_key = self.options.get("reward_key", "steps/reward")
        rewards = None
        if reward_key in features:
            # RLDS: reward[t] follows action[t], i.e. it is received on arriving at frame t + 1.
            step_rewards = np.asarray(features[reward_key], np.float32).reshape(length)
            rewards = np.concatenate([[0.0], step_rewards[:-1]]).astype(np.float32)
        return Episode(frames=frames, actions=actions, rewards=rewards)


class BairReader(_RecordReader):
    """BAIR robot pushing TFRecords: 30-step trajectories, 64x64 frames, 4-d actions."""

    def _steps(self, features: dict[str, Any]) -> int:
        steps = {int(k.split("/")[0]) for k in features if k.split("/")[0].isdigit()}
        if not steps or steps != set(range(len(steps))):
            raise EpisodeError("no consecutive `{t}/...` step features found (not a BAIR record?)")
        return len(steps)

    def _measure(self, features: dict[str, Any]) -> tuple[int, int | None, bool]:
        length = self._steps(features)
        camera = self.options.get("camera", "aux1")
        if f"0/image_{camera}/encoded" not in features:
            raise EpisodeError(f"no `0/image_{camera}/encoded` feature (camera option: aux1 or main)")
        return length, (len(features["0/action"]) if "0/action" in features else None), False

    def load(self, info: EpisodeInfo) -> Episode:
        features = self._features(info)
        length, camera = self._steps(features), self.options.get("camera", "aux1")
        frames = []
        for t in range(length):
            blob = features[f"{t}/image_{camera}/encoded"][0]
            side = int(round((len(blob) / 3) ** 0.5))
            if side * side * 3 == len(blob):
                frames.append(np.frombuffer(blob, np.uint8).reshape(side, side, 3))
            else:
                frames.append(decode_image(blob))
        actions = states = None
        if info.action_dim is not None:
            actions = np.stack([np.asarray(features[f"{t}/action"], np.float32) for t in range(length)])
        if "0/endeffector_pos" in features:
            states = np.stack([np.asarray(features[f"{t}/endeffector_pos"], np.float32) for t in range(length)])
        return Episode(frames=np.stack(frames), actions=actions, states=states)
