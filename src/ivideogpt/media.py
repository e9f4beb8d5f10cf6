"""Videos for people to watch: encode frames to a file, lay videos side by side or in a grid, label them.

Every video the project writes goes through `write_video`: training samples, the demo's forecasts,
planning and RL episodes, evaluation grids and test fixtures. Frames are uint8 (T, H, W, 3) unless
a function says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Suffix -> PyAV encoder (all in yuv420p); `.gif` goes through Pillow instead (a palette per frame).
ENCODERS = {".mp4": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}
_QUALITY = {"libx264": {"crf": "18"}, "libvpx-vp9": {"crf": "20", "b": "0"}}
HEADER = 14  # pixels of one line of labels


def check_video_path(path: str | Path) -> Path:
    """`path` as a Path if `write_video` can write its format (ValueError otherwise): check before the work."""
    path = Path(path)
    if path.suffix.lower() != ".gif" and path.suffix.lower() not in ENCODERS:
        raise ValueError(f"video path must end in .gif or {', '.join(ENCODERS)}, got {path}")
    return path


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10, codec: str | None = None) -> Path:
    """Encode uint8 (T, H, W, 3) frames; the format follows the suffix.

    `.gif`: a looping GIF. `.mp4`/`.mkv` (H.264), `.webm` (VP9), `.avi` (MPEG-4): through PyAV,
    whose wheels bundle ffmpeg; odd sizes are padded by one edge pixel (4:2:0 chroma wants even
    ones). `codec` names another PyAV encoder for those containers (e.g. `libsvtav1`).
    """
    path = check_video_path(path)
    suffix = path.suffix.lower()
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        import imageio.v3 as iio

        iio.imwrite(path, frames, extension=".gif", duration=1000 / fps, loop=0)
        return path
    import av

    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    name = codec or ENCODERS[suffix]
    with _keeping_scheduling(), av.open(str(path), mode="w") as container:
        stream = container.add_stream(name, rate=Fraction(fps).limit_denominator(1001))  # PyAV takes no float
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = _QUALITY.get(name, {})
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@contextmanager
def _keeping_scheduling() -> Iterator[None]:
    """Restore the calling thread's scheduling policy when the block ends.

    Some encoders change it: SVT-AV1 run as root leaves the thread at real-time priority (SCHED_FIFO
    99), and every thread started afterwards inherits it. On 2 cores, spin-waiting OpenMP threads at
    that priority then starve the threads they wait for, and the process stalls (observed).
    """
    if not hasattr(os, "sched_getscheduler"):  # not Linux
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


def side_by_side(*videos: np.ndarray | None, gap: int = 2, scale: int = 2, labels: Sequence[str] | None = None
                 ) -> np.ndarray:
    """Stack `(T, h, w, 3)` uint8 videos left to right with a grey gap; None panels are skipped.

    Shorter videos hold their last frame; `scale` enlarges pixels (nearest) for viewing; `labels`
    (one per non-None panel) are written in a white strip above the panels.
    """
    panels = [v for v in videos if v is not None]
    if labels is not None and len(labels) != len(panels):
        raise ValueError(f"{len(labels)} labels for {len(panels)} panels")
    if not panels:
        raise ValueError("no video to write")
    length = max(len(v) for v in panels)
    panels = [np.concatenate([v, np.repeat(v[-1:], length - len(v), axis=0)]) for v in panels]
    h = panels[0].shape[1]
    sep = np.full((length, h, gap, 3), 128, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, panel in enumerate(panels):
        if panel.shape[1] != h:
            raise ValueError(f"panels differ in height: {panel.shape[1]} vs {h}")
        parts += [sep, panel] if i else [panel]
    video = np.concatenate(parts, axis=2)
    if scale > 1:
        video = video.repeat(scale, axis=1).repeat(scale, axis=2)
    return video if labels is None else with_header(video, labels, (panels[0].shape[2] + gap) * scale)


def video_grid(videos: list[torch.Tensor], max_items: int) -> np.ndarray:
    """Columns of (B, T, 3, H, W) videos in [-1, 1], their first `max_items` items stacked down each column
    -> uint8 (T, H * items, W * columns, 3); shorter videos hold their last frame."""
    import torch

    length = max(v.shape[1] for v in videos)
    columns = []
    for video in videos:
        video = video[:max_items].detach().float().cpu().clamp(-1, 1)
        if video.shape[1] < length:  # hold the last frame of shorter videos
            pad = video[:, -1:].expand(-1, length - video.shape[1], -1, -1, -1)
            video = torch.cat([video, pad], dim=1)
        columns.append(torch.cat(list(video), dim=-2))  # items stacked along height: (T, 3, H*B, W)
    grid = torch.cat(columns, dim=-1)  # (T, 3, H*B, W*columns)
    grid = ((grid + 1) * 127.5).round().to(torch.uint8)
    return grid.permute(0, 2, 3, 1).numpy()


def label_strip(labels: Sequence[str], width: int, height: int = HEADER, stride: int = 0,
                note: str | None = None) -> np.ndarray:
    """A white (height, width, 3) uint8 strip: `labels[i]` in black from x = i * stride, vertically centred,
    or on the first line when a grey `note` takes the second."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    top = 1 if note is not None else max(0, height // 2 - 6)
    for i, label in enumerate(labels):
        draw.text((i * stride + 2, top), label, fill="black")
    if note is not None:
        draw.text((2, top + HEADER), note, fill="grey")
    return np.asarray(strip)


def with_header(video: np.ndarray, labels: Sequence[str], stride: int, notes: Sequence[str] | None = None
                ) -> np.ndarray:
    """`video` (T, H, W, 3) under a strip naming each panel (panels start every `stride` pixels);
    `notes` (one per frame) add a grey second line that changes with the frame."""
    length, width = video.shape[0], video.shape[2]
    if notes is None:
        strip = label_strip(labels, width, stride=stride)
        strips = np.broadcast_to(strip, (length, *strip.shape))
    else:
        if len(notes) != length:
            raise ValueError(f"{len(notes)} notes for {length} frames")
        strips = np.stack([label_strip(labels, width, 2 * HEADER, stride, note) for note in notes])
    return np.concatenate([strips, video], axis=1)
