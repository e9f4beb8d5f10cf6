"""Does a world model use its actions? Prediction error under the true, shuffled and zero actions.

The same clips are rolled out three times from the same context with the same seed (greedy decoding
by default), once under the recorded actions, once under another clip's actions (the batch rolled by
one) and once under all-zero actions. A model that follows its actions is best under the true ones;
one that ignores them scores the same under all three, which this module flags.
"""

from __future__ import annotations

from typing import Any

import torch

from ivideogpt.eval.metrics import psnr, score_entry, ssim

IGNORES_ACTIONS_DB = 0.05  # a true-vs-shuffled PSNR gap below this many dB flags the model


def shuffled(actions: torch.Tensor) -> torch.Tensor:
    """(B, H, A) -> each clip gets the next clip's actions (B > 1), or its own in reverse order (B = 1)."""
    return actions.roll(1, dims=0) if actions.shape[0] > 1 else actions.flip(1)


def controllability(world_model: Any, context: torch.Tensor, actions: torch.Tensor, truth: torch.Tensor,
                    context_actions: torch.Tensor | None = None, seed: int = 0, batch_size: int = 64,
                    true_frames: torch.Tensor | None = None) -> dict[str, Any]:
    """Per-step PSNR (dB) against `truth` of rollouts under the true, shuffled and zero actions.

    context: (B, Tc, 3, H, W); actions: (B, H, A), actions[:, t] leads into predicted frame t;
    truth: (B, H, 3, H, W). Uses the world model's own decoding rule (set `temperature = 0` for greedy).
    true_frames: the rollouts under the true actions, when the caller has them already (not redone).
    Returns per condition {"psnr": [H], "ssim": [H], "psnr_mean", "ssim_mean"}, the gaps of the true actions over the others,
    and `ignores_actions` (true-vs-shuffled gap under IGNORES_ACTIONS_DB dB).
    """
    if world_model.action_dim == 0:
        raise ValueError("controllability needs an action-conditioned world model (action_dim > 0)")
    if actions.ndim != 3 or actions.shape[:2] != truth.shape[:2] or actions.shape[0] != context.shape[0]:
        raise ValueError(f"actions (B, H, A) must match truth (B, H, ...) and context (B, ...): got actions "
                         f"{tuple(actions.shape)}, truth {tuple(truth.shape)}, context {tuple(context.shape)}")
    conditions = {"true": actions, "shuffled": shuffled(actions), "zero": torch.zeros_like(actions)}

    def rolled_out(chosen: torch.Tensor) -> torch.Tensor:
        parts = []
        for first in range(0, context.shape[0], batch_size):
            rows = slice(first, first + batch_size)
            frames, _ = world_model.rollout(context[rows], chosen[rows], seed=seed + first,
                                            context_actions=None if context_actions is None else context_actions[rows])
            parts.append(frames.float().cpu())
        return torch.cat(parts)

    target = truth.float().cpu()
    results: dict[str, Any] = {}
    for name, chosen in conditions.items():
        frames = true_frames.float().cpu() if name == "true" and true_frames is not None else rolled_out(chosen)
        results[name] = score_entry(psnr(frames, target), ssim(frames, target))
    results["gap_over_shuffled_db"] = round(results["true"]["psnr_mean"] - results["shuffled"]["psnr_mean"], 3)
    results["gap_over_zero_db"] = round(results["true"]["psnr_mean"] - results["zero"]["psnr_mean"], 3)
    results["ignores_actions"] = results["gap_over_shuffled_db"] < IGNORES_ACTIONS_DB
    return results


def controllability_markdown(results: dict[str, Any]) -> str:
    """A per-step table of the three conditions and one line of verdict."""
    steps = len(results["true"]["psnr"])
    lines = ["| actions | " + " | ".join(f"+{t + 1}" for t in range(steps)) + " | mean |",
             "|---|" + "---|" * (steps + 1)]
    for name in ("true", "shuffled", "zero"):
        entry = results[name]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in entry["psnr"]) + f" | {entry['psnr_mean']:.2f} |")
    verdict = ("WARNING: the model ignores its actions" if results["ignores_actions"]
               else "the model follows its actions")
    lines.append(f"\nPSNR (dB) by predicted step. True actions beat shuffled ones by "
                 f"{results['gap_over_shuffled_db']:+.2f} dB and zero ones by {results['gap_over_zero_db']:+.2f} dB: "
                 f"{verdict} (flagged below {IGNORES_ACTIONS_DB} dB).")
    return "\n".join(lines)
