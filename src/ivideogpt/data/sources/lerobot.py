"""LeRobot datasets on disk, layouts v2.x and v3.0, read with pyarrow and PyAV (no `lerobot` import).

- v2.x: `meta/info.json`, `meta/episodes.jsonl` (episode_index, length), one parquet per
  episode at `data_path` and one mp4 per episode and camera at `video_path`.
- v3.0: `meta/info.json`, `meta/episodes/chunk-*/file-*.parquet` (episode_index, length,
  data/chunk_index, data/file_index, videos/<camera>/{chunk_index,file_index,from_timestamp}),
  episodes packed into shared parquet and mp4 files.
Options: `camera` (feature name, default the first video or image feature), `action_key`
(default `action`), `reward_key` (default `next.reward`), `success_key` (default `next.success`).
`next.reward[t]` and `next.success[t]` are the outcome of `action[t]`, received on arriving at
frame t + 1, so they are shifted one step later (`alignment`, default `after_action`; set
`on_arrival` for a dataset recorded with the project's convention).
Frames of a video camera are matched to parquet rows by timestamp (tolerance half a frame);
image cameras are decoded from the PNG/JPEG bytes stored in the parquet.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources.base import EpisodeInfo, check_alignment
from ivideogpt.data.sources.npz import episode_from_arrays
from ivideogpt.data.sources.video import decode_frames


def _column(table: Any, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_pylist(), dtype=np.float32)


class LeRobotReader:
    """One LeRobot dataset folder (the one holding `meta/info.json`)."""

    def __init__(self, path: str | Path, options: dict[str, Any] | None = None) -> None:
        self.root, self.options = Path(path), dict(options or {})
        check_alignment(self.options)
        info_file = self.root / "meta" / "info.json"
        try:
            self.info = json.loads(info_file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise EpisodeError(f"{info_file}: cannot read LeRobot metadata: {error}") from error
        self.version = str(self.info.get("codebase_version", "v2.1"))
        self.features: dict[str, Any] = self.info.get("features", {})
        self.fps = float(self.info.get("fps", 30))
        cameras = [k for k, v in self.features.items() if v.get("dtype") in ("video", "image")]
        self.camera = self.options.get("camera") or (cameras[0] if cameras else None)
        if self.camera not in cameras:
            named = f"options.camera={self.camera!r} is not one" if self.options.get("camera") else "none found"
            raise EpisodeError(f"{self.root}: a camera feature (video/image) is needed, {named}; its cameras: "
                               f"{', '.join(cameras) or 'none'}")
        self.is_video = self.features[self.camera].get("dtype") == "video"
        self.action_key = self.options.get("action_key", "action")
        self.reward_key = self.options.get("reward_key", "next.reward")
        self.success_key = self.options.get("success_key", "next.success")
        self.v3 = self.version.startswith("v3")

    def _episodes(self) -> list[dict[str, Any]]:
        if not self.v3:
            lines = (self.root / "meta" / "episodes.jsonl").read_text().splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = []
        for file in sorted((self.root / "meta" / "episodes").rglob("*.parquet")):
            rows.extend(pq.read_table(file).to_pylist())
        return rows

    def _paths(self, row: dict[str, Any]) -> tuple[Path, Path | None, float]:
        """Data parquet, camera video (or None) and the episode's start time inside that video."""
        index = int(row["episode_index"])
        if self.v3:
            data = self.info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
            video = None
            if self.is_video:
                prefix = f"videos/{self.camera}/"
                video = self.info["video_path"].format(video_key=self.camera, chunk_index=row[prefix + "chunk_index"],
                                                       file_index=row[prefix + "file_index"])
            start = float(row.get(f"videos/{self.camera}/from_timestamp", 0.0) or 0.0)
            return self.root / data, (self.root / video) if video else None, start
        chunk = index // int(self.info.get("chunks_size", 1000))
        data = self.info["data_path"].format(episode_chunk=chunk, episode_index=index)
        video = None
        if self.is_video:
            video = self.info["video_path"].format(episode_chunk=chunk, video_key=self.camera, episode_index=index)
        return self.root / data, (self.root / video) if video else None, 0.0

    def scan(self, report: DataReport) -> list[EpisodeInfo]:
        try:
            rows = self._episodes()
        except (OSError, ValueError, KeyError) as error:
            report.found += 1
            report.skip(str(self.root), f"cannot read episode metadata: {error}", "unreadable")
            return []
        action = self.features.get(self.action_key)
        action_dim = int(np.prod(action["shape"])) if action else None
        infos = []
        for row in rows:
            report.found += 1
            where = f"{self.root}#episode_{row.get('episode_index')}"
            try:
                data, video, start = self._paths(row)
                missing = [p for p in (data, video) if p is not None and not p.is_file()]
                if missing:
                    raise EpisodeError(f"missing file(s): {', '.join(map(str, missing))}")
                length = int(row["length"])
                if length <= 0:
                    raise EpisodeError("episode has no frames")
                index = int(row["episode_index"])
                infos.append(EpisodeInfo(f"episode_{index:06d}", length, action_dim, self.reward_key in self.features,
                                         (index, data, video, start)))
            except (EpisodeError, KeyError, ValueError, TypeError) as error:
                report.skip(where, str(error), "unreadable")
        return infos

    def load(self, info: EpisodeInfo) -> Episode:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        index, data, video, start = info.location
        try:
            table = pq.read_table(data)
        except (OSError, pa.ArrowException) as error:
            raise EpisodeError(f"{data}: cannot read parquet: {error}") from error
        if "episode_index" in table.column_names:
            table = table.filter(pc.equal(table["episode_index"], index))
        if table.num_rows != info.length:
            raise EpisodeError(f"{data}: {table.num_rows} rows for episode {index}, metadata says {info.length}")
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        arrays: dict[str, Any] = {"frames": self._frames(table, video, start)}
        if info.action_dim is not None and self.action_key in table.column_names:
            arrays["actions"] = _column(table, self.action_key).reshape(info.length, -1)
        if info.has_rewards and self.reward_key in table.column_names:
            arrays["rewards"] = _column(table, self.reward_key).reshape(-1)
        if self.success_key in table.column_names:
            arrays["success"] = _column(table, self.success_key).reshape(-1) > 0.5
        if "observation.state" in table.column_names:
            arrays["states"] = _column(table, "observation.state").reshape(info.length, -1)
        return episode_from_arrays(arrays, {"alignment": self.options.get("alignment") or "after_action"})

    def _frames(self, table: Any, video: Path | None, start: float) -> np.ndarray:
        if video is None:
            from PIL import Image

            cells = table.column(self.camera).to_pylist()
            try:
                images = [Image.open(io.BytesIO(c["bytes"]) if c.get("bytes") else self.root / c["path"])
                          for c in cells]
                return np.stack([np.asarray(image.convert("RGB")) for image in images])
            except (OSError, KeyError, TypeError, AttributeError) as error:
                raise EpisodeError(f"cannot decode image column {self.camera}: {error}") from error
        if "timestamp" in table.column_names:
            wanted = start + np.asarray(table.column("timestamp").to_pylist(), dtype=np.float64)
        else:
            wanted = start + np.arange(table.num_rows) / self.fps
        tolerance = 0.5 / self.fps
        frames, times = decode_frames(video, start=float(wanted[0]) - tolerance, end=float(wanted[-1]) + tolerance)
        nearest = np.abs(times[None, :] - wanted[:, None]).argmin(axis=1)
        error = np.abs(times[nearest] - wanted).max()
        if error > tolerance + 1e-6:
            raise EpisodeError(f"{video}: no frame within {tolerance:.3f}s of a timestamp (off by {error:.3f}s)")
        return frames[nearest]
