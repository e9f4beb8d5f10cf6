"""`ivideogpt predict MODEL EPISODE`: roll a world model out from an episode's first frames and write a video.

MODEL is a checkpoint (or run) directory or a released iVideoGPT snapshot folder; EPISODE is a
`.npz` episode (`docs/data.md`). The model's context frames start at `--start`; action-conditioned
models follow the episode's own actions (normalised with the checkpoint's training bounds when its data
normalised them, as training did). Writes ground truth | prediction side by side and prints
the PSNR of each predicted frame against the episode.

A rollout longer than the model's training window (`data.segment_length` frames, context included)
re-anchors there on its newest predicted frames (`WindowedRollout`, as the gym envs and `play` do);
`--past-window refuse` stops at the window instead, `extend` lets the sequence grow past it.
"""

from __future__ import annotations

import argparse

from ivideogpt.commands.plan import add_precision_argument, check_within_window

HELP = "predict future frames of an episode with a world model (checkpoint or released snapshot)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint/run directory or released snapshot folder")
    parser.add_argument("episode", help="episode .npz file (frames, and actions for action-conditioned models)")
    parser.add_argument("--start", type=int, default=0, help="index of the first context frame")
    parser.add_argument("--horizon", type=int, help="frames to predict (default: the rest of the episode)")
    parser.add_argument("--out", default="prediction.gif", help="video file (.gif, .mp4, .mkv, .webm or .avi)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: greedy)")
    parser.add_argument("--top-k", type=int, default=100, help="sample among the k most likely codes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device to roll out on (e.g. cuda)")
    parser.add_argument("--past-window", choices=("reanchor", "refuse", "extend"), default="reanchor",
                        help="past the model's training window (its clip length, context included): re-anchor on "
                             "the newest predicted frames (default), refuse a longer --horizon, or extend the "
                             "sequence into positions it was never trained on")
    add_precision_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from ivideogpt.data import load_episode
    from ivideogpt.eval.metrics import psnr
    from ivideogpt.frames import to_model, to_uint8
    from ivideogpt.media import check_video_path, side_by_side, write_video
    from ivideogpt.train import load_model
    from ivideogpt.world_model import WindowedRollout

    check_video_path(args.out)  # before the rollout, not after it
    model = load_model(args.model)  # bad input raises, reported in one line by `ivideogpt.cli`
    if not hasattr(model, "rollout"):
        raise ValueError(f"{args.model} holds a {type(model).__name__}, not a world model")
    model.to(args.device).set_precision(args.precision)
    model.temperature, model.top_k = args.temperature, args.top_k
    episode = load_episode(args.episode)
    context, actions, horizon = _window(model, episode, args.start, args.horizon, _action_bounds(args.model, model))
    window = getattr(model, "window", None)
    if args.past_window == "refuse":
        check_within_window(window, context, horizon, other_way=", or --past-window reanchor")
    frames = to_model(episode.frames[args.start: args.start + context + horizon])[None]  # (1, T, 3, H, W)
    context_actions = None if actions is None else actions[:, :context - 1]
    future_actions = None if actions is None else actions[:, context - 1:]
    rollout = WindowedRollout(model, window, args.past_window)
    rollout.reset(frames[:, :context], context_actions, seed=args.seed)
    predicted = torch.stack([rollout.step(None if future_actions is None else future_actions[:, t])[0].cpu()
                             for t in range(horizon)], dim=1)
    truth = frames[:, context:]
    for t in range(horizon):
        print(f"t+{t + 1}: PSNR {float(psnr(predicted[:, t], truth[:, t])):.2f} dB")
    video = side_by_side(to_uint8(frames[0]), to_uint8(torch.cat([frames[0, :context], predicted[0]])),
                         labels=["truth", "prediction"])
    print(f"wrote {write_video(args.out, video)}")
    return 0


def _action_bounds(path: str, model) -> "ActionBounds | None":
    """The bounds a checkpoint's training data normalised its actions with (None: raw actions, or a released
    snapshot), so that the episode's raw actions reach the model on the scale it learned."""
    from ivideogpt.commands.plan import training_action_facts
    from ivideogpt.data.actions import ActionBounds
    from ivideogpt.official import is_snapshot

    if not model.action_dim or is_snapshot(path):
        return None
    low, high, _ = training_action_facts(path)
    return None if low is None else ActionBounds(low, high)


def _window(model, episode, start: int, horizon: int | None, bounds: "ActionBounds | None" = None
            ) -> tuple[int, "torch.Tensor | None", int]:
    """(context frames, the actions (1, context - 1 + horizon, A) or None, horizon) for a rollout from `start`;
    actions normalised with `bounds` when given."""
    import torch

    context = int(getattr(model, "num_context", None) or 1)
    resolution = model.tokenizer.config.resolution
    if episode.frames.shape[1:3] != (resolution, resolution):
        raise ValueError(f"the episode's frames are {episode.frames.shape[2]}x{episode.frames.shape[1]} (width x "
                         f"height); the model takes {resolution}x{resolution} (resize the episode first, see "
                         "docs/data.md)")
    available = len(episode) - start - context
    horizon = available if horizon is None else horizon
    if start < 0 or horizon < 1 or horizon > available:
        asked = "" if horizon == available else f"; asked for {horizon}"
        raise ValueError(f"an episode of {len(episode)} frames has {max(available, 0)} frames to predict after "
                         f"{context} context frames from index {start}{asked}")
    if not model.action_dim:
        return context, None, horizon
    if episode.action_dim != model.action_dim:
        raise ValueError(f"the model is action-conditioned on {model.action_dim}-d actions; the episode has "
                         f"{episode.action_dim or 'no'} actions")
    actions = episode.actions[start: start + context - 1 + horizon]
    actions = torch.as_tensor(actions if bounds is None else bounds.normalize(actions), dtype=torch.float32)
    return context, actions[None], horizon
