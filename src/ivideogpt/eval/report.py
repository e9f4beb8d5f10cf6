"""Reports of a protocol run: a Markdown table of results.json, and GIF/PNG grids of samples.

Grids have three rows, ground truth, best sample (by PSNR) and typical sample (median PSNR);
context frames lead every row. GIFs step through time; PNGs lay time out left to right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ivideogpt.media import label_strip, write_video

LABELS = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓", "fvd": "FVD ↓"}
ROWS = ("truth", "best", "typical")
GAP = 2  # pixels between frames
LABEL_WIDTH = 48


def _cell(entry: dict[str, Any], digits: int) -> str:
    if "skipped" in entry:
        return "n/a"
    if "std" in entry:
        return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"
    return f"{entry['mean']:.{digits}f}"


def _digits(metric: str) -> int:
    return {"psnr": 2, "fvd": 1}.get(metric, 4)


def _drawn(summary: dict[str, Any]) -> str:
    drawn = summary.get("samples_per_video", summary["protocol"]["samples"])
    return " (deterministic predictor: 1 drawn)" if drawn == 1 < summary["protocol"]["samples"] else ""


def results_markdown(summary: dict[str, Any]) -> str:
    """One run: metrics (best of N, mean ± std across videos; std across seeds), then per-horizon curves."""
    protocol = summary["protocol"]
    mode = "action-conditioned" if protocol["action_conditioned"] else "action-free"
    lines = [f"## {summary['predictor']}: protocol {protocol['name']}",
             "",
             f"{protocol['context_frames']} context frame(s), {protocol['horizon']} predicted, {mode}, "
             f"best of {protocol['samples']} samples{_drawn(summary)}, {summary['videos']} videos, "
             f"seeds {list(protocol['seeds'])}.",
             "",
             "| metric | best of N (mean ± std over videos) | std across seeds | mean over samples |",
             "|---|---|---|---|"]
    for name in [m for m in LABELS if m in summary["metrics"]]:
        entry = summary["metrics"][name]
        if "skipped" in entry:
            lines.append(f"| {LABELS[name]} | n/a: {entry['skipped']} | | |")
            continue
        over_samples = f"{entry['mean_over_samples']:.{_digits(name)}f}" if "mean_over_samples" in entry else ""
        lines.append(f"| {LABELS[name]} | {_cell(entry, _digits(name))} | "
                     f"{entry['std_across_seeds']:.{_digits(name)}f} | {over_samples} |")
    curves = summary.get("per_horizon", {})
    if curves:
        horizon = len(next(iter(curves.values())))
        lines += ["", "Best sample per predicted frame (mean over videos):", "",
                  "| metric | " + " | ".join(f"t+{t + 1}" for t in range(horizon)) + " |",
                  "|---|" + "---|" * horizon]
        for name, curve in curves.items():
            lines.append(f"| {LABELS[name]} | " + " | ".join(f"{v:.{_digits(name)}f}" for v in curve) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """Several predictors on one protocol, side by side (mean ± std over videos; FVD alone)."""
    names = list(summaries)
    metric_names = [m for m in LABELS if any(m in s["metrics"] for s in summaries.values())]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for metric in metric_names:
        cells = [_cell(summaries[n]["metrics"].get(metric, {"skipped": ""}), _digits(metric)) for n in names]
        lines.append(f"| {LABELS[metric]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _row_frames(context: np.ndarray, future: np.ndarray) -> np.ndarray:
    return np.concatenate([context, future])  # (T, H, W, 3)


def grid_frames(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """GIF frames: at each time step the three rows stacked vertically, labelled on the left."""
    rows = [_row_frames(arrays["context"], arrays[name]) for name in ROWS]  # each (T, H, W, 3)
    h, w = rows[0].shape[1:3]
    frames = []
    for t in range(rows[0].shape[0]):
        canvas = np.full((3 * h + 2 * GAP, LABEL_WIDTH + w, 3), 255, np.uint8)
        for r, (label, row) in enumerate(zip(ROWS, rows)):
            top = r * (h + GAP)
            canvas[top : top + h, :LABEL_WIDTH] = label_strip([label], LABEL_WIDTH, h)
            canvas[top : top + h, LABEL_WIDTH:] = row[t]
        frames.append(canvas)
    return frames


def grid_image(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """PNG grid: rows truth / best / typical, time left to right, context first."""
    rows = [_row_frames(arrays["context"], arrays[name]) for name in ROWS]
    steps, h, w = rows[0].shape[:3]
    canvas = np.full((3 * h + 2 * GAP, LABEL_WIDTH + steps * (w + GAP) - GAP, 3), 255, np.uint8)
    for r, (label, row) in enumerate(zip(ROWS, rows)):
        top = r * (h + GAP)
        canvas[top : top + h, :LABEL_WIDTH] = label_strip([label], LABEL_WIDTH, h)
        for t in range(steps):
            left = LABEL_WIDTH + t * (w + GAP)
            canvas[top : top + h, left : left + w] = row[t]
    return canvas


def write_visuals(out_dir: str | Path, fps: float = 4.0) -> list[Path]:
    """A GIF and a PNG per kept video of the first seed, under `<out>/visuals/`."""
    out_dir = Path(out_dir)
    seed_dirs = sorted((out_dir / "samples").glob("seed*"))
    written: list[Path] = []
    if not seed_dirs:
        return written
    target = out_dir / "visuals"
    target.mkdir(exist_ok=True)
    for path in sorted(seed_dirs[0].glob("*.npz")):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        if not all(k in arrays for k in ("context", *ROWS)):
            continue
        gif, png = target / f"{path.stem}.gif", target / f"{path.stem}.png"
        write_video(gif, np.stack(grid_frames(arrays)), fps=fps)
        Image.fromarray(grid_image(arrays)).save(png)
        written += [gif, png]
    return written


def write_report(out_dir: str | Path) -> list[Path]:
    """`results.md` from `results.json`, plus the sample grids; returns the written paths."""
    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "results.json").read_text())
    markdown = out_dir / "results.md"
    markdown.write_text(results_markdown(summary))
    return [markdown, *write_visuals(out_dir)]
