"""The paper's video prediction protocol (Section 4.1, Appendix A.3), resumable.

For every test video, `samples` futures (default 100) are predicted from its first
`context_frames` frames (and, action-conditioned, under its recorded actions). PSNR, SSIM and
LPIPS are averaged over the predicted frames of each sample, and each metric keeps its best
sample per video (max PSNR/SSIM, min LPIPS) before averaging over videos. FVD compares I3D
features of the real clips with those of all predicted clips (ground-truth context followed
by the prediction). Deterministic predictors are sampled once: repeating identical samples
changes neither the best-of-N metrics nor FVD (1/N covariances).

Differences from the paper's own evaluation code, kept on purpose: frame metrics score the
predicted frames only (that code also scores the tokenizer's reconstruction of the context
frames), and the context in FVD clips is the ground truth.

Per-video results go to `<out>/videos.jsonl` (with features and sample frames in
`<out>/features/` and `<out>/samples/`) as soon as each video is done; a rerun skips them.
"""

from __future__ import annotations

import json
import logging
import zlib
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ivideogpt.eval import metrics
from ivideogpt.eval.predictors import Predictor
from ivideogpt.eval.ranks import Ranks
from ivideogpt.eval.videos import TestVideo
from ivideogpt.frames import to_uint8
from ivideogpt.launch import stop_together
from ivideogpt.perceptual import LPIPS

logger = logging.getLogger(__name__)

FRAME_METRICS = ("psnr", "ssim", "lpips")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "fvd": False}


def _field(name: str) -> str:
    """A protocol field as both its users know it: in Python, and as `ivideogpt evaluate`'s flag."""
    return f"ProtocolConfig.{name} (--{name.replace('_', '-')})"


@dataclass(frozen=True)
class ProtocolConfig:
    """One evaluation protocol; `bair` and `robonet` are the paper's (use `protocol_config`)."""

    name: str = "custom"
    context_frames: int = 1
    horizon: int = 15
    samples: int = 100  # futures predicted per test video
    action_conditioned: bool = False
    seeds: tuple[int, ...] = (0,)  # one full run per seed; spread across seeds is reported
    batch_size: int = 20  # samples per predictor call
    visualize: int = 4  # videos (the first ones) whose GT / best / typical frames are kept for the report

    def __post_init__(self) -> None:
        for name in ("context_frames", "horizon", "samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_field(name)} must be >= 1, got {getattr(self, name)}")
        if self.visualize < 0:
            raise ValueError(f"ProtocolConfig.visualize must be >= 0, got {self.visualize}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"{_field('seeds')} must be distinct and non-empty, got {list(self.seeds)}")

    @property
    def clip_length(self) -> int:
        return self.context_frames + self.horizon

    def defines_results(self) -> dict[str, Any]:
        """The fields that change per-video results (a cache made under others is not reused)."""
        return {k: getattr(self, k) for k in ("context_frames", "horizon", "samples", "action_conditioned")}


PROTOCOLS: dict[str, dict[str, Any]] = {
    "bair": {"context_frames": 1, "horizon": 15},  # 1 context frame, 15 predicted; action-free or conditioned
    "robonet": {"context_frames": 2, "horizon": 10, "action_conditioned": True},  # 2 context, 10 predicted
    "custom": {},
}


def protocol_config(name: str, **overrides: Any) -> ProtocolConfig:
    """A named protocol (`bair`, `robonet`, `custom`) with field overrides (None values are ignored)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    fields = {**PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None}}
    if "seeds" in fields:
        fields["seeds"] = tuple(fields["seeds"])
    return ProtocolConfig(name=name, **fields)


@dataclass
class ProtocolRun:
    """What `run_protocol` returns: per-video records and the summary written to results.json."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]
    out_dir: Path


def _generator(seed: int, video_id: str) -> torch.Generator:
    """Stable per (seed, video), so a resumed run samples exactly what a full run would.

    The CPU generator keeps only the low 32 bits of its seed, so the seed is mixed into them (by the
    golden-ratio constant: each seed moves every video's stream); seed 0 gives the video's own crc32.
    """
    return torch.Generator().manual_seed((zlib.crc32(video_id.encode()) + seed * 0x9E3779B9) % 2**32)


def _safe(video_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in video_id)


@torch.no_grad()
def evaluate_video(predictor: Predictor, video: TestVideo, config: ProtocolConfig, seed: int,
                   lpips_model: LPIPS | None = None, i3d: Any | None = None,
                   keep_samples: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Best-of-N metrics of one video -> (JSON record, arrays: I3D features and kept frames)."""
    if video.frames.shape[0] < config.clip_length:
        raise ValueError(f"video {video.id} has {video.frames.shape[0]} frames, the protocol needs {config.clip_length}")
    clip = video.frames[: config.clip_length].float()  # (T, 3, H, W)
    context, truth = clip[None, : config.context_frames], clip[config.context_frames :]
    actions = None
    if config.action_conditioned:
        if video.actions is None:
            raise ValueError(f"video {video.id} has no actions, but the protocol is action-conditioned "
                             "(an action-free model: pass --action-free)")
        actions = video.actions[None, : config.clip_length].float()  # (1, T, A)
    total = 1 if getattr(predictor, "deterministic", False) else config.samples
    generator = _generator(seed, video.id)
    per_frame: dict[str, list[torch.Tensor]] = {}
    fake_features, kept = [], []
    for start in range(0, total, config.batch_size):
        b = min(config.batch_size, total - start)
        pred = predictor.predict(context.repeat(b, 1, 1, 1, 1),
                                 None if actions is None else actions.repeat(b, 1, 1), config.horizon, generator)
        if pred.shape != (b, *truth.shape):
            raise ValueError(f"predictor returned {tuple(pred.shape)}, expected {(b, *truth.shape)}")
        pred = pred.detach().float().cpu().clamp(-1, 1)  # (b, horizon, 3, H, W)
        for name, value in metrics.frame_metrics(pred, truth.expand_as(pred), lpips_model).items():
            per_frame.setdefault(name, []).append(value)  # (b, horizon)
        if i3d is not None:
            fake_features.append(metrics.i3d_features(torch.cat([context.expand(b, -1, -1, -1, -1), pred], 1), i3d))
        if keep_samples:
            kept.append(to_uint8(pred))
    frames = {name: torch.cat(chunks) for name, chunks in per_frame.items()}  # (N, horizon)
    per_sample = {name: value.mean(dim=1) for name, value in frames.items()}  # (N,)
    record: dict[str, Any] = {"video": video.id, "seed": seed, "samples": total, "best": {}, "mean": {}, "best_per_frame": {}}
    for name, value in per_sample.items():
        best = int(value.argmax() if HIGHER_IS_BETTER[name] else value.argmin())
        record["best"][name] = float(value[best])
        record["mean"][name] = float(value.mean())
        record["best_per_frame"][name] = [float(v) for v in frames[name][best]]
    order = per_sample["psnr"].argsort(descending=True)
    record["best_sample"], record["typical_sample"] = int(order[0]), int(order[len(order) // 2])
    arrays: dict[str, np.ndarray] = {}
    if i3d is not None:
        arrays["real_features"] = metrics.i3d_features(clip[None], i3d)
        arrays["fake_features"] = np.concatenate(fake_features)
        record["features"] = True
    if keep_samples:
        samples = np.concatenate(kept)  # (N, horizon, H, W, 3) uint8
        arrays["context"], arrays["truth"] = to_uint8(context[0]), to_uint8(truth)
        arrays["best"], arrays["typical"] = samples[record["best_sample"]], samples[record["typical_sample"]]
    return record, arrays


def _read_records(path: Path) -> dict[tuple[int, str], dict[str, Any]]:
    records: dict[tuple[int, str], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            records[(record["seed"], record["video"])] = record
    return records


def _check_cache(out_dir: Path, config: ProtocolConfig, predictor_name: str) -> None:
    """Refuse to mix per-video results made under another protocol or predictor."""
    path = out_dir / "protocol.json"
    current = {"predictor": predictor_name, **config.defines_results()}
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != current:
            raise ValueError(f"{out_dir} holds results of {previous}, not {current}; choose another output directory")
    else:
        path.write_text(json.dumps(current, indent=2))


def _array_file(out_dir: Path, kind: str, seed: int, video_id: str) -> Path:
    """Where one video's arrays of one seed are kept: kind "features" (I3D) or "samples" (frames)."""
    return out_dir / kind / f"seed{seed}" / f"{_safe(video_id)}.npz"


def _cached(out_dir: Path, config: ProtocolConfig, predictor_name: str, videos: list[TestVideo],
            lpips_model: LPIPS | None, i3d: Any | None) -> dict[tuple[int, int], dict[str, Any]]:
    """Records of an earlier run in `out_dir` that still serve, by (seed, video index); readies `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_cache(out_dir, config, predictor_name)
    jsonl = out_dir / "videos.jsonl"
    records = _read_records(jsonl)
    if jsonl.is_file() and jsonl.stat().st_size and not jsonl.read_bytes().endswith(b"\n"):
        with jsonl.open("a") as stream:
            stream.write("\n")  # end a line cut short by an interrupted run
    done = {}
    for seed in config.seeds:
        for index, video in enumerate(videos):
            cached = records.get((seed, video.id))
            features = _array_file(out_dir, "features", seed, video.id)
            samples = _array_file(out_dir, "samples", seed, video.id) if index < config.visualize else None
            if cached is not None and _usable(cached, lpips_model, i3d, features, samples):
                done[(seed, index)] = cached
    return done


def run_protocol(predictor: Predictor, videos: Iterable[TestVideo], config: ProtocolConfig, out_dir: str | Path,
                 lpips_model: LPIPS | None = None, i3d: Any | None = None, progress: bool = True,
                 ranks: Ranks = Ranks()) -> ProtocolRun:
    """Evaluate `predictor` on `videos` for every seed, resuming from `out_dir`; write results.json.

    With several `ranks` (processes), the (seed, video) evaluations left to do are dealt out one per
    rank per round; rank 0 gathers each round and alone writes the files, in a 1-process run's order.
    Every video's samples come from its own generator (`_generator`), so the results do not depend on
    the number of processes. Every rank returns the same `ProtocolRun`. A problem (results of another protocol in
    `out_dir`, a video that cannot be evaluated) stops every rank, rank 0 alone saying it (`stop_together`).
    """
    from tqdm import tqdm

    out_dir, videos = Path(out_dir), list(videos)
    name = getattr(predictor, "name", type(predictor).__name__)
    jobs = [(seed, index) for seed in config.seeds for index in range(len(videos))]
    done: dict[tuple[int, int], dict[str, Any]] = {}
    problem = None
    if ranks.main:
        try:
            done = _cached(out_dir, config, name, videos, lpips_model, i3d)
        except ValueError as error:
            problem = str(error)
    problem, todo = ranks.share((problem, [job for job in jobs if job not in done]))
    if problem is not None:
        stop_together(ValueError(problem), reporter=0)
    with (out_dir / "videos.jsonl").open("a") if ranks.main else nullcontext() as stream, \
            tqdm(total=len(todo), desc=name, disable=not (progress and ranks.main)) as bar:
        for start in range(0, len(todo), ranks.size):
            batch = todo[start : start + ranks.size]  # one (seed, video index) per rank
            mine = _evaluate_job(predictor, videos, config, batch[ranks.rank], lpips_model, i3d) \
                if ranks.rank < len(batch) else None
            results = ranks.collect(mine)
            if ranks.main:
                problem = next((result for result in results if isinstance(result, str)), None)
                for (seed, index), result in zip(batch, results) if problem is None else ():
                    _keep(out_dir, stream, seed, *result)
                    done[(seed, index)] = result[0]
            bar.update(len(batch))
            problem = ranks.share(problem)
            if problem is not None:
                stop_together(ValueError(problem), reporter=0)
    run = _summarize_run([done[job] for job in jobs], config, name, out_dir, lpips_model, i3d) if ranks.main else None
    return ranks.share(run)


def _keep(out_dir: Path, stream: Any, seed: int, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write one video's arrays, then its record (a line of videos.jsonl)."""
    features = {k: v for k, v in arrays.items() if k.endswith("features")}
    _save_arrays(_array_file(out_dir, "features", seed, record["video"]), features)
    _save_arrays(_array_file(out_dir, "samples", seed, record["video"]), {k: v for k, v in arrays.items()
                                                                         if k not in features})
    stream.write(json.dumps(record) + "\n")
    stream.flush()


def _evaluate_job(predictor: Predictor, videos: list[TestVideo], config: ProtocolConfig, job: tuple[int, int],
                  lpips_model: LPIPS | None, i3d: Any | None) -> tuple[dict[str, Any], dict[str, np.ndarray]] | str:
    """`evaluate_video` of one (seed, video index), or why it failed (passed to rank 0, which stops every rank)."""
    seed, index = job
    try:
        return evaluate_video(predictor, videos[index], config, seed, lpips_model, i3d, index < config.visualize)
    except ValueError as error:
        return str(error)


def _summarize_run(records: list[dict[str, Any]], config: ProtocolConfig, name: str, out_dir: Path,
                   lpips_model: LPIPS | None, i3d: Any | None) -> ProtocolRun:
    """The summary of every record, written to results.json."""
    summary = summarize(records, config, name, out_dir if i3d is not None else None)
    if i3d is None:
        summary["metrics"]["fvd"] = {"skipped": f"I3D detector {metrics.I3D_FILENAME} not found"}
    if lpips_model is None:
        summary["metrics"]["lpips"] = {"skipped": "no VGG16 weights for LPIPS"}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return ProtocolRun(records, summary, out_dir)


def _usable(record: dict[str, Any], lpips_model: LPIPS | None, i3d: Any | None,
            feature_file: Path, sample_file: Path | None) -> bool:
    """A cached record serves if it has every metric asked for now, and its files exist."""
    if lpips_model is not None and "lpips" not in record["best"]:
        return False
    if i3d is not None and not (record.get("features") and feature_file.is_file()):
        return False
    return sample_file is None or sample_file.is_file()


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    if arrays:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npz")
        np.savez_compressed(temporary, **arrays)
        temporary.replace(path)


def _spread(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def summarize(records: list[dict[str, Any]], config: ProtocolConfig, predictor_name: str,
              features_dir: Path | None = None) -> dict[str, Any]:
    """Means and spreads (std across videos and across seeds) of every metric, FVD per seed."""
    summary: dict[str, Any] = {"predictor": predictor_name, "protocol": asdict(config),
                               "videos": len({r["video"] for r in records}),
                               "samples_per_video": max((r["samples"] for r in records), default=0),
                               "metrics": {}, "per_horizon": {}}
    for name in FRAME_METRICS:
        rows = [r for r in records if name in r["best"]]
        if not rows:
            continue
        per_seed = [float(np.mean([r["best"][name] for r in rows if r["seed"] == s])) for s in config.seeds]
        summary["metrics"][name] = {
            **_spread([r["best"][name] for r in rows]),  # std across videos (all seeds pooled)
            "std_across_seeds": _spread(per_seed)["std"], "per_seed": per_seed,
            "mean_over_samples": _spread([r["mean"][name] for r in rows])["mean"]}
        curves = np.asarray([r["best_per_frame"][name] for r in rows])  # (videos, horizon)
        summary["per_horizon"][name] = [float(v) for v in curves.mean(axis=0)]
    if features_dir is not None:
        per_seed = [_fvd_of_seed(records, seed, features_dir) for seed in config.seeds]
        if None in per_seed:
            summary["metrics"]["fvd"] = {"skipped": "FVD needs at least two test videos"}
        else:  # one FVD per seed (a statistic of the whole set): its spread is across seeds
            spread = _spread(per_seed)
            summary["metrics"]["fvd"] = {"mean": spread["mean"], "std_across_seeds": spread["std"], "per_seed": per_seed}
    return summary


def _fvd_of_seed(records: list[dict[str, Any]], seed: int, features_dir: Path) -> float | None:
    real, fake = [], []
    for record in records:
        if record["seed"] == seed:
            with np.load(_array_file(features_dir, "features", seed, record["video"])) as data:
                real.append(data["real_features"])
                fake.append(data["fake_features"])
    if len(real) < 2:
        return None  # a covariance needs at least two videos
    return metrics.fvd(np.concatenate(real), np.concatenate(fake))
