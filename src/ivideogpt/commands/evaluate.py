"""`ivideogpt evaluate`: the paper's video prediction protocol on a checkpoint or a baseline.

    ivideogpt evaluate --checkpoint runs/bair --data data/bair/test --protocol bair --samples 100
    ivideogpt evaluate --baseline copy-last-frame --data data/pusht/test --protocol custom --horizon 8
    ivideogpt evaluate --checkpoint runs/pusht --data data/pusht/test --protocol custom --context-frames 1 \
        --horizon 8 --controllability     # greedy error under true / shuffled / zero actions
    ivideogpt evaluate --checkpoint checkpoints/pusht --data data/pusht_reference --episodes 'episode_00098*.npz' \
        --protocol custom --context-frames 1 --horizon 32 --horizon-curve --reanchor-every 8   # past training
        # add --true-history: each frame also predicted from the true frames before it (what compounding costs)

Writes results.json, results.md and sample grids (GIF/PNG) to --output; a rerun resumes.
Launched as several processes (torchrun, accelerate launch), the protocol's videos are shared out
among them and process 0 writes the same files a single process would; bad input (missing data, checkpoint
or weights) stops every process and is said once:

    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 -m ivideogpt evaluate --checkpoint ...
LPIPS and FVD need local weight files (see `ivideogpt.perceptual` and `ivideogpt.eval.metrics`);
when they are missing those metrics are skipped with a message, unless --require-all.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HELP = "evaluate video prediction (PSNR, SSIM, LPIPS, FVD; best of N samples) on test episodes"
BASELINES = ("copy-last-frame",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="directory of a trained world model")
    source.add_argument("--baseline", choices=BASELINES, help="evaluate a baseline predictor instead")
    parser.add_argument("--data", type=Path, required=True, help="directory of test episodes (*.npz)")
    parser.add_argument("--protocol", choices=("bair", "robonet", "custom"), default="bair",
                        help="bair: 1 context + 15 predicted; robonet: 2 + 10, action-conditioned; custom: set below")
    parser.add_argument("--samples", type=int, help="futures sampled per video (default 100)")
    parser.add_argument("--context-frames", type=int, help="override the protocol's context frames")
    parser.add_argument("--horizon", type=int, help="override the protocol's number of predicted frames")
    conditioning = parser.add_mutually_exclusive_group()
    conditioning.add_argument("--action-conditioned", dest="action_conditioned", action="store_true", default=None,
                              help="feed the episodes' recorded actions (the default for an action-conditioned model)")
    conditioning.add_argument("--action-free", dest="action_conditioned", action="store_false",
                              help="predict from the context frames alone (action-free models)")
    parser.add_argument("--seeds", type=int, nargs="+", help="one run per seed (default: 0)")
    parser.add_argument("--max-videos", type=int, help="evaluate only the first N test videos")
    parser.add_argument("--episodes", default="*.npz", help="glob of the episode files under --data to use")
    parser.add_argument("--clips-per-episode", type=int, default=1,
                        help="clips per episode, spread evenly over it (default 1: its first frames)")
    parser.add_argument("--batch-size", type=int, help="samples per prediction call (default 20)")
    parser.add_argument("--output", type=Path,
                        help="results directory (default: <checkpoint>/eval-<protocol>; for a checkpoint "
                             "RUN/checkpoints/step_N: RUN/eval/step_N-<protocol>, which keep_last never deletes)")
    parser.add_argument("--lpips-weights", type=Path, help="torchvision vgg16 weights file for LPIPS")
    parser.add_argument("--i3d", type=Path, help="i3d_torchscript.pt file for FVD")
    parser.add_argument("--require-all", action="store_true", help="fail instead of skipping LPIPS/FVD")
    parser.add_argument("--device", default=None,
                        help="torch device (default: this process's GPU, cuda:<local rank>, if any, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--controllability", action="store_true",
                        help="instead of the protocol: greedy PSNR by step under the true, shuffled and zero actions, "
                             "and a warning when the model ignores its actions (controllability.json)")
    parser.add_argument("--horizon-curve", action="store_true",
                        help="instead of the protocol: greedy PSNR by step beside copying the last frame, to see how "
                             "far past its training horizon a model holds (horizon.json)")
    parser.add_argument("--reanchor-every", type=int,
                        help="with --horizon-curve: also roll out restarting every K frames from the model's own "
                             "last frames (K: the horizon it was trained on)")
    parser.add_argument("--true-history", action="store_true",
                        help="with --horizon-curve: also predict each frame from the true frames before it; its "
                             "lead over the one-sequence rollout is what the model's own errors cost as they feed back")


def load_world_model(checkpoint_dir: Path, device: str) -> Any:
    """The world model (tokenizer + transformer) saved in `checkpoint_dir`, as a `Predictor` (the paper's
    sampling, temperature 1 and top-k 100, as `load_model` builds it; `.num_context` as trained)."""
    from ivideogpt.eval.predictors import WorldModelPredictor
    from ivideogpt.train import load_model

    model = load_model(checkpoint_dir)
    if getattr(model, "tokenizer", None) is None or getattr(model, "transformer", None) is None:
        raise ValueError(f"{checkpoint_dir} holds a {type(model).__name__}, not a tokenizer + transformer world model")
    return WorldModelPredictor(model.to(device), name=Path(checkpoint_dir).resolve().name)


def note_context_mismatch(predictor: Any, config: Any) -> None:
    """Say so when the protocol gives the model another number of context frames than it was trained with
    (allowed: the model takes any count, but its scores are then not those of its training setting)."""
    trained = getattr(getattr(predictor, "world_model", None), "num_context", None)
    if trained is not None and trained != config.context_frames:
        log.info("note: the model was trained with %d context frame(s); this protocol gives it %d "
                 "(`--protocol custom --context-frames %d` matches its training)", trained, config.context_frames,
                 trained)


def match_conditioning(config: Any, predictor: Any, asked: bool | None) -> Any:
    """The protocol config with the recorded actions fed to an action-conditioned model unless the user
    chose (such a model cannot predict without actions, so asking for an action-free run is an error)."""
    world_model = getattr(predictor, "world_model", None)
    action_dim = 0 if world_model is None else world_model.action_dim
    if action_dim == 0 or config.action_conditioned:
        return config
    if asked is False:
        raise ValueError(f"this world model is action-conditioned ({action_dim}-d actions) and cannot predict "
                         "without them: drop --action-free")
    return dataclasses.replace(config, action_conditioned=True)


def check_videos_fit(videos: list[Any], predictor: Any, config: Any, data: Path) -> None:
    """Refuse test clips whose frame size or action width the world model does not take, naming both
    (the rollout's own shape error would name neither the data nor the model)."""
    world_model = getattr(predictor, "world_model", None)
    if world_model is None:
        return
    size, frames = world_model.tokenizer.config.resolution, videos[0].frames
    if tuple(frames.shape[-2:]) != (size, size):
        raise ValueError(f"the episodes under {data} have {frames.shape[-1]}x{frames.shape[-2]} (width x height) "
                         f"frames; the world model takes {size}x{size} (resize them with `ivideogpt data convert "
                         f"... --resolution {size}`)")
    actions = videos[0].actions
    if config.action_conditioned and actions is not None and actions.shape[-1] != world_model.action_dim:
        raise ValueError(f"the episodes under {data} have {actions.shape[-1]}-d actions; the world model "
                         f"was trained on {world_model.action_dim}-d ones")


def _output_dir(args: argparse.Namespace) -> Path:
    if args.output is not None:
        return args.output
    if args.checkpoint is not None:
        from ivideogpt.train.checkpoint import run_of

        checkpoint, run = Path(args.checkpoint), run_of(args.checkpoint)
        if run is not None:  # beside the run's checkpoints: keep_last may delete the step folder itself
            return run / "eval" / f"{checkpoint.name}-{args.protocol}"
        return checkpoint / f"eval-{args.protocol}"
    return Path("eval") / f"{args.baseline}-{args.protocol}"


def run(args: argparse.Namespace) -> int:
    from ivideogpt.eval.protocol import run_protocol
    from ivideogpt.eval.ranks import Ranks
    from ivideogpt.eval.report import results_markdown, write_report
    from ivideogpt.launch import failing_together, process_state

    state = process_state()  # joins the process group of a multi-process launch; this process's device
    ranks = Ranks.current()
    device = args.device or str(state.device)
    greedy = args.controllability or args.horizon_curve
    with failing_together():  # bad input (missing data or weights, a wrong model): said once, via ivideogpt.cli
        predictor, videos, config = _set_up(args, device)
        lpips_model, i3d = (None, None) if greedy else _scorers(args, device)
    if greedy:
        return _greedy_curve(args, predictor, videos, config) if ranks.main else 0  # on one process
    result = run_protocol(predictor, videos, config, _output_dir(args), lpips_model, i3d,
                          progress=not args.no_progress, ranks=ranks)
    if not ranks.main:
        return 0
    paths = write_report(result.out_dir)
    print(results_markdown(result.summary))
    print(f"wrote {result.out_dir / 'results.json'} and {len(paths)} report file(s) in {result.out_dir} "
          f"({ranks.size} process{'es' if ranks.size > 1 else ''})")
    return 0


def _set_up(args: argparse.Namespace, device: str) -> tuple[Any, list[Any], Any]:
    """The predictor, the test videos and the protocol config, checked to fit one another. Reads files only, no
    collective: every process of a launch gets through it, failed or not, to agree on the outcome."""
    from ivideogpt.eval.predictors import CopyLastFrame
    from ivideogpt.eval.protocol import protocol_config
    from ivideogpt.eval.videos import load_test_videos

    config = protocol_config(args.protocol, samples=args.samples, context_frames=args.context_frames,
                             horizon=args.horizon, action_conditioned=args.action_conditioned,
                             seeds=args.seeds, batch_size=args.batch_size)
    videos = load_test_videos(args.data, config.clip_length, args.max_videos, args.episodes,
                              args.clips_per_episode)
    if not videos:
        raise ValueError(f"no episode under {args.data} has the {config.clip_length} frames the protocol needs")
    predictor = CopyLastFrame() if args.baseline else load_world_model(args.checkpoint, device)
    config = match_conditioning(config, predictor, args.action_conditioned)
    check_videos_fit(videos, predictor, config, args.data)
    note_context_mismatch(predictor, config)
    return predictor, videos, config


def _scorers(args: argparse.Namespace, device: str) -> tuple[Any, Any]:
    """LPIPS and the I3D detector for FVD on `device`; None for either whose weights are missing (unless
    --require-all, which raises)."""
    from ivideogpt.eval.metrics import load_i3d
    from ivideogpt.perceptual import load_lpips

    lpips_model = load_lpips(args.lpips_weights, required=args.require_all)
    i3d = load_i3d(args.i3d, required=args.require_all)
    return (None if lpips_model is None else lpips_model.to(device)), (None if i3d is None else i3d.to(device))


def _greedy_curve(args: argparse.Namespace, predictor: Any, videos: list[Any], config: Any) -> int:
    """--controllability or --horizon-curve instead of the protocol."""
    if args.controllability:
        return _controllability(predictor, videos, config, _output_dir(args))
    return _horizon_curve(predictor, videos, config, _output_dir(args), args.reanchor_every, args.true_history)


def _greedy_clips(predictor: Any, videos: list[Any], config: Any, flag: str) -> tuple[Any, dict[str, Any]]:
    """The greedy world model behind `predictor` and the clips split as context / actions / truth."""
    import torch

    world_model = getattr(predictor, "world_model", None)
    if world_model is None:
        raise ValueError(f"{flag} needs --checkpoint (a world model), not a baseline")
    frames = torch.stack([video.frames for video in videos])
    if world_model.action_dim == 0:  # zero-width actions: an action-free model rolls out without any
        actions = frames.new_zeros(*frames.shape[:2], 0)
    elif any(video.actions is None for video in videos):
        raise ValueError(f"{flag} needs test episodes with actions for an action-conditioned model")
    else:
        actions = torch.stack([video.actions for video in videos])
    tc, horizon = config.context_frames, config.horizon
    world_model.temperature = 0.0
    return world_model, {"context": frames[:, :tc], "actions": actions[:, tc - 1 : tc - 1 + horizon],
                         "truth": frames[:, tc:], "context_actions": actions[:, : tc - 1] if tc > 1 else None}


def _write_json(out_dir: Path, name: str, results: dict[str, Any], clips: int) -> None:
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_text(json.dumps({"clips": clips, **results}, indent=2))
    print(f"wrote {out_dir / name} ({clips} clips)")


def _controllability(predictor: Any, videos: list[Any], config: Any, out_dir: Path) -> int:
    """Greedy rollouts of every test clip under the true, shuffled and zero actions; writes controllability.json."""
    from ivideogpt.eval.controllability import controllability, controllability_markdown

    world_model, clips = _greedy_clips(predictor, videos, config, "--controllability")
    if world_model.action_dim == 0:
        raise ValueError("--controllability measures how a model follows its actions; this one is action-free")
    results = controllability(world_model, **clips, batch_size=config.batch_size)
    print(controllability_markdown(results))
    _write_json(out_dir, "controllability.json", results, len(videos))
    return 0


def _horizon_curve(predictor: Any, videos: list[Any], config: Any, out_dir: Path, reanchor_every: int | None,
                   true_history: bool) -> int:
    """Greedy rollouts of every test clip (one sequence, re-anchored, from the true history) beside copying;
    writes horizon.json."""
    from ivideogpt.eval.horizon import horizon_curve, horizon_markdown

    world_model, clips = _greedy_clips(predictor, videos, config, "--horizon-curve")
    results = horizon_curve(world_model, **clips, reanchor_every=reanchor_every, batch_size=config.batch_size,
                            true_history=true_history)
    print(horizon_markdown(results, every=max(config.horizon // 8, 1)))
    _write_json(out_dir, "horizon.json", results, len(videos))
    return 0
