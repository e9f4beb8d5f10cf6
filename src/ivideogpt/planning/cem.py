"""Cross-entropy-method model-predictive control over any batched `Dynamics`.

Each `plan` call samples `candidates` action sequences from a diagonal Gaussian, rolls all of
them out through the dynamics in **one batched call** per iteration (for the world model: one
prefill, then one KV-cached step per frame for the whole batch), scores them, and refits the
Gaussian to the `elites`. The caller executes the first `execute_steps` actions and plans again;
the next plan starts from the previous mean shifted by those steps (warm start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Dynamics(Protocol):
    """What the planner needs from a model: batched open-loop rollouts from a start state.

    `state` is opaque to the planner (context frames for a world model, a simulator snapshot for
    the oracle). `actions` is `(N, H, A)`; the result is `frames (N, H, 3, h, w)` in [-1, 1] and
    `rewards (N, H)`, either of which may be None when the dynamics cannot or need not produce it.
    """

    def rollout(self, state: Any, actions: Tensor) -> tuple[Tensor | None, Tensor | None]: ...


@runtime_checkable
class Objective(Protocol):
    """Scores rollouts: `(frames | None, rewards | None) -> (N,)`, higher is better."""

    needs_frames: bool

    def __call__(self, frames: Tensor | None, rewards: Tensor | None) -> Tensor: ...


@dataclass
class CEMConfig:
    """CEM settings. Defaults are sized for a CPU: 64 candidates x 8 steps x 3 iterations."""

    horizon: int = 8
    """planned steps per rollout (H)."""
    candidates: int = 64
    """action sequences sampled per iteration (N), all rolled out in one batch."""
    elites: int = 8
    """best candidates the Gaussian is refitted to."""
    iterations: int = 3
    """sample-score-refit rounds per plan."""
    action_dim: int = 2
    """size of one action (A)."""
    action_low: tuple[float, ...] = (-1.0,)
    """lower action bound, one value (broadcast) or one per action dimension."""
    action_high: tuple[float, ...] = (1.0,)
    """upper action bound, one value (broadcast) or one per action dimension."""
    init_std: float = 0.5
    """initial standard deviation as a fraction of the half-range (high - low) / 2."""
    increments: bool = False
    """search over the per-step changes of the action, summed from the plan's `init_mean` (on Push-T
    the agent's position): candidates are drifting paths, not independent jumps around one point."""
    noise_beta: float = 0.0
    """colour of the sampling noise along the horizon (iCEM): power spectrum ~ 1/f^beta. 0 is white
    (every step drawn independently); 2 gives smooth, drifting sequences, like the ones a world model
    trained on demonstrations has seen."""
    min_std: float = 0.02
    """floor on the standard deviation, same unit as `init_std`; keeps sampling from collapsing."""
    keep_elites: int = 0
    """elites of one iteration re-entered (and re-scored) among the next iteration's candidates."""
    momentum: float = 0.1
    """smoothing of the refit: new = momentum * old + (1 - momentum) * elite statistics."""
    execute_steps: int = 1
    """actions executed from each plan before replanning (the replanning interval)."""
    execute: str = "mean"
    """which sequence to execute: the refitted `mean` (robust) or the single `best` candidate."""
    seed: int = 0
    """seed of the planner's own sampling generator (plans are deterministic given it)."""

    def __post_init__(self) -> None:
        self.action_low = tuple(float(v) for v in self.action_low)
        self.action_high = tuple(float(v) for v in self.action_high)
        for name in ("horizon", "candidates", "elites", "iterations", "action_dim", "execute_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CEMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.elites > self.candidates:
            raise ValueError(f"CEMConfig.elites ({self.elites}) must be <= candidates ({self.candidates})")
        if not 0 <= self.keep_elites <= min(self.elites, self.candidates - 1):
            raise ValueError(f"CEMConfig.keep_elites must be in [0, min(elites, candidates - 1)], got {self.keep_elites}")
        if self.execute_steps > self.horizon:
            raise ValueError(f"CEMConfig.execute_steps ({self.execute_steps}) must be <= horizon ({self.horizon})")
        for name in ("action_low", "action_high"):
            if len(getattr(self, name)) not in (1, self.action_dim):
                raise ValueError(f"CEMConfig.{name} must have 1 or action_dim={self.action_dim} values, "
                                 f"got {getattr(self, name)}")
        if any(lo >= hi for lo, hi in zip(*self.bounds())):
            raise ValueError(f"CEMConfig.action_low {self.action_low} must be below action_high {self.action_high}")
        if not self.init_std > 0:
            raise ValueError(f"CEMConfig.init_std must be > 0, got {self.init_std}")
        if not 0 <= self.noise_beta <= 4:
            raise ValueError(f"CEMConfig.noise_beta must be in [0, 4], got {self.noise_beta}")
        if not 0 <= self.min_std <= self.init_std:
            raise ValueError(f"CEMConfig.min_std must be in [0, init_std={self.init_std}], got {self.min_std}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"CEMConfig.momentum must be in [0, 1), got {self.momentum}")
        if self.execute not in ("mean", "best"):
            raise ValueError(f"CEMConfig.execute must be 'mean' or 'best', got {self.execute!r}")

    def bounds(self) -> tuple[list[float], list[float]]:
        """Per-dimension (low, high) lists of length action_dim."""
        def expand(values: tuple[float, ...]) -> list[float]:
            return list(values) * self.action_dim if len(values) == 1 else list(values)

        return expand(self.action_low), expand(self.action_high)


@dataclass
class PlanResult:
    """One plan: the sequence chosen, the best candidate and what the model imagined for it."""

    actions: Tensor
    """(H, A) the sequence chosen by `CEMConfig.execute`; run its first `execute` rows."""
    execute: Tensor
    """(execute_steps, A) the actions to run now."""
    best_actions: Tensor
    """(H, A) the highest-scoring candidate of the last iteration."""
    best_score: float
    best_index: int
    """row of `best_actions` in the last iteration's batch of candidates."""
    best_frames: Tensor | None
    """(H, 3, h, w) frames the dynamics predicted for `best_actions`, when it produced frames."""
    best_rewards: Tensor | None
    """(H,) rewards predicted for `best_actions`, when it produced rewards."""
    history: list[dict[str, float]] = field(default_factory=list)
    """per iteration: best and elite-mean score, mean std (diagnostics)."""


class CEMPlanner:
    """CEM MPC over a `Dynamics` and an `Objective`, with a warm-started mean across calls."""

    def __init__(self, dynamics: Dynamics, objective: Objective, config: CEMConfig) -> None:
        self.dynamics = dynamics
        self.objective = objective
        self.config = config
        low, high = config.bounds()
        self.low = torch.tensor(low, dtype=torch.float32)
        self.high = torch.tensor(high, dtype=torch.float32)
        self.generator = torch.Generator().manual_seed(config.seed)
        self._warm_mean: Tensor | None = None

    def reset(self, seed: int | None = None) -> None:
        """Forget the warm start (new episode); optionally reseed the sampler."""
        self._warm_mean = None
        if seed is not None:
            self.generator.manual_seed(seed)

    def _checked_mean(self, init_mean: Tensor | list[float]) -> Tensor:
        """`init_mean` as float32 (A,) or (H, A), refused otherwise (it would fail as a broadcast deep in the plan)."""
        cfg = self.config
        mean = torch.as_tensor(init_mean, dtype=torch.float32)
        if mean.shape not in ((cfg.action_dim,), (cfg.horizon, cfg.action_dim)):
            raise ValueError(f"init_mean must be ({cfg.action_dim},) (A,) or ({cfg.horizon}, {cfg.action_dim}) (H, A), "
                             f"got {tuple(mean.shape)}")
        return mean

    def _initial_mean(self, init_mean: Tensor | None) -> Tensor:
        """(H, A) the first sampling mean of a plan: the warm start, else `init_mean` (zero increments)."""
        cfg = self.config
        if self._warm_mean is not None:
            return self._warm_mean
        if cfg.increments:
            return torch.zeros(cfg.horizon, cfg.action_dim)
        if init_mean is None:
            return ((self.low + self.high) / 2).expand(cfg.horizon, cfg.action_dim).clone()
        init_mean = torch.as_tensor(init_mean, dtype=torch.float32)
        return init_mean.expand(cfg.horizon, cfg.action_dim).clone().clamp(self.low, self.high)

    def _anchor(self, init_mean: Tensor | None) -> Tensor:
        """(A,) the action increments are summed from: `init_mean`'s first row, else the bounds' centre."""
        if init_mean is None:
            return (self.low + self.high) / 2
        anchor = torch.as_tensor(init_mean, dtype=torch.float32)
        return (anchor if anchor.ndim == 1 else anchor[0]).clamp(self.low, self.high)

    def _to_actions(self, samples: Tensor, anchor: Tensor | None) -> Tensor:
        """Search variables (..., H, A) -> actions within the bounds (increments are summed from `anchor`)."""
        if anchor is not None:
            samples = anchor + samples.cumsum(-2)
        return samples.clamp(self.low, self.high)

    def _from_actions(self, actions: Tensor, anchor: Tensor | None) -> Tensor:
        """Actions (..., H, A) -> search variables: what a clipped sample effectively was."""
        if anchor is None:
            return actions
        return torch.diff(actions, dim=-2, prepend=anchor.expand(*actions.shape[:-2], 1, actions.shape[-1]))

    def plan(self, state: Any, init_mean: Tensor | None = None) -> PlanResult:
        """Optimise an H-step action sequence from `state`; remembers the shifted mean for next time.

        `init_mean` ((A,) or (H, A)) seeds the first plan after `reset` (e.g. "stay where you are");
        later plans start from the previous mean shifted by `execute_steps`. With `increments`, it is
        the action every plan's increments start from, so pass it on every call.
        """
        cfg = self.config
        if init_mean is not None:
            init_mean = self._checked_mean(init_mean)
        half_range = (self.high - self.low) / 2  # (A,)
        anchor = self._anchor(init_mean) if cfg.increments else None
        mean = self._initial_mean(init_mean)  # (H, A) in search variables
        std = (cfg.init_std * half_range).expand(cfg.horizon, cfg.action_dim).clone()
        min_std = cfg.min_std * half_range
        history: list[dict[str, float]] = []
        best = None
        elites: Tensor | None = None
        for _ in range(cfg.iterations):
            noise = colored_noise(cfg.noise_beta, (cfg.candidates, cfg.horizon, cfg.action_dim), self.generator)
            actions = self._to_actions(mean + std * noise, anchor)  # (N, H, A)
            if elites is not None and cfg.keep_elites:
                actions[-cfg.keep_elites:] = elites[: cfg.keep_elites]
            frames, rewards = self.dynamics.rollout(state, actions)
            scores = self.objective(frames, rewards).detach().float().cpu()  # (N,)
            if scores.shape != (cfg.candidates,):
                raise ValueError(f"objective returned shape {tuple(scores.shape)}, expected ({cfg.candidates},)")
            scores = torch.nan_to_num(scores, nan=-float("inf"))
            elite_scores, elite_idx = scores.topk(cfg.elites)
            elites = actions[elite_idx]  # (E, H, A)
            elite_samples = self._from_actions(elites, anchor)
            mean = cfg.momentum * mean + (1 - cfg.momentum) * elite_samples.mean(0)
            std = cfg.momentum * std + (1 - cfg.momentum) * elite_samples.std(0, unbiased=False)
            std = torch.maximum(std, min_std)
            top = int(elite_idx[0])
            best = (actions[top], float(elite_scores[0]), top, _pick(frames, top), _pick(rewards, top))
            history.append({"best": float(elite_scores[0]), "elite_mean": float(elite_scores.mean()),
                            "std": float(std.mean())})
        assert best is not None  # iterations >= 1
        chosen = self._to_actions(mean, anchor) if cfg.execute == "mean" else best[0]
        k = cfg.execute_steps
        # Warm start: drop the executed steps and refill the horizon by holding the last planned action
        # (for increments: zero change).
        searched = self._from_actions(chosen, anchor)
        tail = torch.zeros_like(searched[-1:]) if cfg.increments else searched[-1:]
        self._warm_mean = torch.cat([searched[k:], tail.expand(k, -1)])
        return PlanResult(actions=chosen.clone(), execute=chosen[:k].clone(), best_actions=best[0].clone(),
                          best_score=best[1], best_index=best[2], best_frames=best[3], best_rewards=best[4],
                          history=history)


def colored_noise(beta: float, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Unit-variance Gaussian noise of `shape` (..., length, dim) with power spectrum ~ 1/f^beta along `length`.

    Written here (the `colorednoise` package does the same with numpy's global RNG) so that plans stay
    seeded by the planner's own torch generator. beta = 0 is plain `torch.randn(shape)`.
    """
    if beta == 0:
        return torch.randn(*shape, generator=generator)
    *rows, length, dim = shape
    even = length % 2 == 0
    freqs = torch.fft.rfftfreq(length).clamp_min(1.0 / length)  # lowest frequency floored at 1/length
    scale = freqs ** (-beta / 2)
    spectrum = torch.complex(torch.randn(*rows, dim, len(freqs), generator=generator),
                             torch.randn(*rows, dim, len(freqs), generator=generator)) * scale
    # The DC term (and the Nyquist term for an even length) must be real for a real signal.
    spectrum[..., 0] = spectrum[..., 0].real * 2 ** 0.5
    if even:
        spectrum[..., -1] = spectrum[..., -1].real * 2 ** 0.5
    # Exact variance of each step of the inverse transform: DC (and an even length's Nyquist) term
    # contributes 2 s^2, every other frequency 4 s^2, all over length^2. Dividing makes it unit.
    term_variance = 4 * scale.square()
    term_variance[0] /= 2
    if even:
        term_variance[-1] /= 2
    sigma = term_variance.sum().sqrt() / length
    signal = torch.fft.irfft(spectrum, n=length) / sigma  # (*rows, dim, length)
    return signal.transpose(-1, -2).contiguous()


def _pick(values: Tensor | None, index: int) -> Tensor | None:
    return None if values is None else values[index].detach().cpu()
