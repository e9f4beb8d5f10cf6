"""How far a world model holds past the horizon it was trained on: greedy PSNR by step beside copying.

Two ways to roll out longer than training: `extended` keeps one growing token sequence (the
transformer sees positions it never saw in training; RoPE simply continues), `reanchored` restarts
every `reanchor_every` frames from the model's own last predicted frames, encoded afresh as context
(each window then looks like a training clip, but errors of the decoded frames feed back; the same
`WindowedRollout` keeps the gym envs and `ivideogpt play` within the training window).
`true_history` predicts each frame from the true frames before it: its lead over `extended` is what
the model's own errors cost as they feed back, apart from what a single step gets wrong.
"""

from __future__ import annotations

from typing import Any

import torch

from ivideogpt.eval.metrics import psnr, score_entry, ssim
from ivideogpt.world_model import WindowedRollout


def reanchored_rollout(world_model: Any, context: torch.Tensor, actions: torch.Tensor, reanchor_every: int,
                       context_actions: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Frames (B, H, 3, h, w) rolled out `reanchor_every` frames at a time, each window from the last Tc frames.

    context: (B, Tc, 3, h, w); actions: (B, H, A), actions[:, t] leads into predicted frame t;
    context_actions: (B, Tc-1, A) between the context frames (Tc > 1). The re-anchoring is
    `WindowedRollout`'s, with a window of Tc + `reanchor_every` frames: what the gym envs and `ivideogpt play`
    do past the training window.
    """
    if reanchor_every < 1:
        raise ValueError(f"reanchor_every must be >= 1, got {reanchor_every}")
    rollout = WindowedRollout(world_model, context.shape[1] + reanchor_every)
    rollout.reset(context, context_actions, seed=seed)
    return torch.stack([rollout.step(actions[:, t])[0].float().cpu() for t in range(actions.shape[1])], dim=1)


def true_history_rollout(world_model: Any, context: torch.Tensor, actions: torch.Tensor, future_codes: torch.Tensor,
                         context_actions: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Frames (B, H, 3, h, w), frame t rolled out one step from the true frames before it.

    future_codes: (B, H, h', w') the true future frames' codes (`WorldModel.encode`), fed in place of
    the model's own after each step (teacher forcing through the cached path, one sequence in all).
    """
    world_model.reset(context, context_actions, seed=seed)
    predicted = []
    for t in range(actions.shape[1]):
        true_state = world_model.state.repeat(1)  # an independent copy: the step below advances in place
        frame, _ = world_model.step(actions[:, t])
        predicted.append(frame.float().cpu())
        world_model.set_state(true_state)
        world_model.score_step(future_codes[:, t], actions[:, t])
    return torch.stack(predicted, dim=1)


def horizon_curve(world_model: Any, context: torch.Tensor, actions: torch.Tensor, truth: torch.Tensor,
                  context_actions: torch.Tensor | None = None, reanchor_every: int | None = None, seed: int = 0,
                  batch_size: int = 32, true_history: bool = False) -> dict[str, Any]:
    """Per-step PSNR/SSIM against `truth` (B, H, 3, h, w) of the extended (reanchored, true-history) rollouts
    and of copying.

    Uses the world model's own decoding rule (set `temperature = 0` for greedy). Returns one
    `score_entry` per method and `gain_over_copy_db` per method and step.
    """
    if actions.ndim != 3 or actions.shape[:2] != truth.shape[:2] or context.shape[0] != truth.shape[0]:
        raise ValueError(f"actions (B, H, A) must match truth (B, H, ...) and context (B, ...): got actions "
                         f"{tuple(actions.shape)}, truth {tuple(truth.shape)}, context {tuple(context.shape)}")
    methods: dict[str, list[torch.Tensor]] = {"extended": []}
    if reanchor_every is not None:
        methods["reanchored"] = []
    if true_history:
        methods["true_history"] = []
    for first in range(0, context.shape[0], batch_size):
        rows = slice(first, first + batch_size)
        between = None if context_actions is None else context_actions[rows]
        frames, _ = world_model.rollout(context[rows], actions[rows], context_actions=between, seed=seed + first)
        methods["extended"].append(frames.float().cpu())
        if reanchor_every is not None:
            methods["reanchored"].append(reanchored_rollout(world_model, context[rows], actions[rows], reanchor_every,
                                                            between, seed=seed + first))
        if true_history:
            codes = world_model.encode(context[rows], truth[rows])[1]
            methods["true_history"].append(true_history_rollout(world_model, context[rows], actions[rows], codes,
                                                                between, seed=seed + first))
    truth = truth.float().cpu()
    copy = context[:, -1:].float().cpu().expand_as(truth)
    results: dict[str, Any] = {"copy_last_frame": score_entry(psnr(copy, truth), ssim(copy, truth))}
    for name, parts in methods.items():
        predicted = torch.cat(parts)
        results[name] = score_entry(psnr(predicted, truth), ssim(predicted, truth))
    results["gain_over_copy_db"] = {
        name: [round(a - b, 3) for a, b in zip(results[name]["psnr"], results["copy_last_frame"]["psnr"])]
        for name in methods}
    if reanchor_every is not None:
        results["reanchor_every"] = reanchor_every
    return results


def horizon_markdown(results: dict[str, Any], every: int = 1) -> str:
    """PSNR (dB) by predicted step (every `every`-th step and the last), one row per method."""
    steps = len(results["copy_last_frame"]["psnr"])
    shown = sorted({*range(every - 1, steps, every), steps - 1})
    methods = [name for name in ("extended", "reanchored", "true_history", "copy_last_frame") if name in results]
    lines = ["| rollout | " + " | ".join(f"+{t + 1}" for t in shown) + " | mean |",
             "|---|" + "---|" * (len(shown) + 1)]
    for name in methods:
        entry = results[name]
        label = {"extended": "world model, one sequence",
                 "reanchored": f"world model, re-anchored every {results.get('reanchor_every')}",
                 "true_history": "world model, each frame from the true frames before it",
                 "copy_last_frame": "copy last frame"}[name]
        lines.append(f"| {label} | " + " | ".join(f"{entry['psnr'][t]:.2f}" for t in shown)
                     + f" | {entry['psnr_mean']:.2f} |")
    return "\n".join(lines)
