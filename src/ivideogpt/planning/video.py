"""Side-by-side videos of real and imagined trajectories (MP4 through PyAV, or GIF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def side_by_side(*videos: np.ndarray | None, gap: int = 2, scale: int = 2, labels: list[str] | None = None
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
    return video if labels is None else _with_header(video, labels, (panels[0].shape[2] + gap) * scale)


def _with_header(video: np.ndarray, labels: list[str], stride: int) -> np.ndarray:
    """Prepend a 14-pixel white strip naming each panel (panels start every `stride` pixels)."""
    from PIL import Image, ImageDraw

    header = Image.new("RGB", (video.shape[2], 14), "white")
    draw = ImageDraw.Draw(header)
    for i, label in enumerate(labels):
        draw.text((i * stride + 2, 1), label, fill="black")
    strip = np.asarray(header)
    return np.concatenate([np.broadcast_to(strip, (video.shape[0], *strip.shape)), video], axis=1)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write `(T, h, w, 3)` uint8 frames as `.mp4` (H.264) or `.gif`, chosen by the suffix."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if path.suffix == ".gif":
        iio.imwrite(path, frames, duration=int(1000 / fps), loop=0)
    elif path.suffix == ".mp4":
        # H.264 wants even sizes; pad by one pixel where needed.
        h, w = frames.shape[1:3]
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        iio.imwrite(path, frames, plugin="pyav", codec="libx264", fps=fps)
    else:
        raise ValueError(f"video path must end in .mp4 or .gif, got {path}")
    return path
