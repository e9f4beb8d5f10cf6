"""Reading video files through PyAV (its wheels bundle ffmpeg: mp4/H.264, AV1, webm/VP9, gif, ...).

A folder of videos is an action-free source: each file is one episode, its id the relative
path without the suffix. Optional side files `<name>.actions.npy` (T or T - 1 rows) and
`<name>.rewards.npy` (T rows, aligned by the `alignment` option as npz rewards are, or T - 1)
next to a video add actions and rewards. Writing videos: `ivideogpt.media.write_video`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.formats import VIDEO_SUFFIXES
from ivideogpt.data.sources.base import EpisodeInfo, FileTreeReader, action_rows_ok, align_actions, align_per_step



def _open(source: str | Path | bytes | BinaryIO) -> Any:
    import av

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        return av.open(source if not isinstance(source, Path) else str(source))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise EpisodeError(f"cannot open video: {error}") from error


def decode_frames(source: str | Path | bytes | BinaryIO, start: float | None = None,
                  end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T, H, W, 3) uint8 and their times in seconds; `start`/`end` limit the time range."""
    import av

    container = _open(source)
    frames, times = [], []
    try:
        if not container.streams.video:
            raise EpisodeError("file has no video stream")
        stream = container.streams.video[0]
        if start is not None and start > 0 and stream.time_base is not None:
            container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            time = float(frame.time) if frame.time is not None else len(frames) / float(stream.average_rate or 1)
            if start is not None and time < start - 1e-4:
                continue
            if end is not None and time >= end - 1e-4:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(time)
    except av.error.FFmpegError as error:
        raise EpisodeError(f"video decoding failed after {len(frames)} frames: {error}") from error
    finally:
        container.close()
    if not frames:
        window = "" if start is None and end is None else (  # e.g. a packed video that ends before an episode
            f" between {start or 0:.3f}s and {'its end' if end is None else f'{end:.3f}s'}")
        raise EpisodeError(f"video has no decodable frames{window}")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise EpisodeError(f"frames change size within the video: {sorted(shapes)}")
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def read_video(source: str | Path | bytes | BinaryIO) -> np.ndarray:
    """Every frame of a video file (path, bytes or file object) as (T, H, W, 3) uint8."""
    return decode_frames(source)[0]


def count_frames(source: str | Path | bytes | BinaryIO) -> int:
    """Number of frames, from the container header when recorded, else by counting packets."""
    return video_shape(source)[0]


def video_shape(source: str | Path | bytes | BinaryIO) -> tuple[int, int, int, int]:
    """(T, H, W, 3) of a video without decoding it (T from the header when recorded, else counted packets)."""
    import av

    container = _open(source)
    try:
        if not container.streams.video:
            raise EpisodeError("file has no video stream")
        stream = container.streams.video[0]
        length = int(stream.frames) if stream.frames else sum(1 for packet in container.demux(stream) if packet.size)
        return length, int(stream.codec_context.height), int(stream.codec_context.width), 3
    except av.error.FFmpegError as error:
        raise EpisodeError(f"cannot read video packets: {error}") from error
    finally:
        container.close()


def _side_file(video: Path, kind: str) -> Path:
    return video.with_name(f"{video.stem}.{kind}.npy")


class VideoFolderReader(FileTreeReader):
    """Every video file under a folder (recursively), one episode each."""

    suffixes = VIDEO_SUFFIXES

    def index_file(self, file: Path, episode_id: str) -> EpisodeInfo:
        length = count_frames(file)
        if length == 0:
            raise EpisodeError("video has no frames")
        action_dim = None
        actions_file = _side_file(file, "actions")
        if actions_file.is_file():
            shape = np.load(actions_file, mmap_mode="r").shape
            if not action_rows_ok(shape[0], length):
                raise EpisodeError(f"{actions_file.name} has {shape[0]} rows for {length} frames")
            action_dim = 1 if len(shape) == 1 else int(shape[1])
        return EpisodeInfo(episode_id, length, action_dim, _side_file(file, "rewards").is_file(), file)

    def load(self, info: EpisodeInfo) -> Episode:
        frames = read_video(info.location)
        if frames.shape[0] != info.length:
            raise EpisodeError(f"{info.location}: decoded {frames.shape[0]} frames, the header said {info.length}")
        actions = rewards = None
        if info.action_dim is not None:
            actions = align_actions(np.load(_side_file(info.location, "actions")), frames.shape[0])
        if info.has_rewards:
            rewards = align_per_step(np.load(_side_file(info.location, "rewards")), frames.shape[0], "rewards", 0.0,
                                     self.options.get("alignment") or "on_arrival")
        return Episode(frames=frames, actions=actions, rewards=rewards)
