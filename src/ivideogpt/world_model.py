"""The interactive rollout engine: tokenizer + transformer behind `reset(context)` / `step(action)`.

`reset` tokenizes the context frames, prefills one KV cache with them and caches the tokenizer's
context decoder features. Each `step` then feeds only the new frame's 17 tokens ([S2] + action,
then 16 sampled codes) through that same cache, decodes only the new frame (or none: `decode=False`
keeps the codes for `decode_frames` later, for a planner that scores rewards only), and reads the
reward from the hidden state of the frame's last token. Everything is batched; `fork` repeats a state
along the batch so many candidate action sequences share one prefill (planning).

The cache grows with the rollout (no fixed maximum: RoPE positions simply continue), costing
`2 * layers * hidden * bytes` per token and batch row, e.g. ~74 KB fp32 for the small preset.
`cache="static"` keeps it in fixed buffers instead (`transformer/static_cache.py`) and generates each
frame with one captured CUDA graph on a GPU (`transformer/frame_graph.py`): the GPU's fast path,
sampling the same tokens as "kept" for the same seed. `cache="per_frame"` (re-process the whole
prefix at every frame, as naive implementations do) and `cache="none"` (no cache at all) exist to
check equivalence and to measure the speed-up.

Past `window` frames (the training clip length) `step` keeps growing the sequence into positions the
transformer never saw; `WindowedRollout` re-anchors there instead (the gym envs, `ivideogpt predict`,
evaluate-policy's imagined episodes and MBPO's branches step through it; `ivideogpt play` re-anchors at
the same boundary, `RolloutState.fills`).
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from ivideogpt.tokenizer.checks import is_integer, value_range
from ivideogpt.transformer.cache import GrowingCache
from ivideogpt.transformer.frame_graph import FrameGenerator, FrameInputs, next_code
from ivideogpt.transformer.model import WorldModelTransformer
from ivideogpt.transformer.static_cache import StaticCache

CacheMode = Literal["kept", "static", "per_frame", "none"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)
Precision = Literal["fp32", "bf16"]
PastWindow = Literal["reanchor", "refuse", "extend"]
PAST_WINDOW: tuple[str, ...] = get_args(PastWindow)


@dataclass
class RolloutState:
    """Everything needed to continue a batch of rollouts.

    ids: (B, L) vocabulary ids of every token so far; actions: (B, T-1, A) actions that led into
    frames 1..T-1 (None for action-free models); cache: keys/values of all L tokens ("kept" and
    "static" modes);
    decoder_features: the tokenizer's context decoder features, reused to decode every new frame.
    """

    ids: Tensor
    actions: Tensor | None
    num_context: int
    num_future: int
    cache: GrowingCache | StaticCache | None
    decoder_features: object

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    @property
    def length(self) -> int:
        return self.ids.shape[1]

    def fills(self, window: int | None) -> bool:
        """Whether the state holds `window` frames (context + predicted; None: unknown, never): the training clip
        length, so one more frame would take the transformer to positions it was never trained on."""
        return window is not None and self.num_context + self.num_future >= window

    def repeat(self, n: int) -> "RolloutState":
        """An independent copy with each batch row repeated n times in a row: (B, ...) -> (B*n, ...)."""
        n = _count(n, "repeat's n")
        return replace(
            self, ids=self.ids.repeat_interleave(n, 0),
            actions=None if self.actions is None else self.actions.repeat_interleave(n, 0),
            cache=None if self.cache is None else self.cache.copy(repeats=n),
            decoder_features=self.decoder_features.repeat(n) if n > 1 else self.decoder_features)

    @staticmethod
    def concat(states: list["RolloutState"]) -> "RolloutState":
        """One state holding the batch rows of `states` one after another (one forward steps them all).

        They must be at the same point: equal token length and context size (their caches then line up).
        """
        if not states:
            raise ValueError("concat needs at least one state, got none")
        first = states[0]
        if any(s.length != first.length or s.num_context != first.num_context for s in states):
            raise ValueError(f"only states of one length and context size concatenate, got "
                             f"{[(s.length, s.num_context) for s in states]}")
        return replace(
            first, ids=torch.cat([s.ids for s in states]),
            actions=None if first.actions is None else torch.cat([s.actions for s in states]),
            cache=None if first.cache is None else type(first.cache).concat([s.cache for s in states]),
            decoder_features=type(first.decoder_features).concat([s.decoder_features for s in states]))

    def index(self, rows: Tensor | list[int]) -> "RolloutState":
        """An independent copy holding only batch `rows`."""
        rows = _batch_rows(rows, self.batch_size).to(self.ids.device)
        return replace(
            self, ids=self.ids[rows], actions=None if self.actions is None else self.actions[rows],
            cache=None if self.cache is None else self.cache.copy(indices=rows),
            decoder_features=self.decoder_features.index(rows))


class WorldModel:
    """Batched, KV-cached, frame-by-frame rollouts of a tokenizer + transformer pair.

    Sampling: temperature (default 1.0) and top-k (default 100) over future codes, drawn from one
    `torch.Generator` seeded by `seed` (or by `reset(seed=...)`), so rollouts are reproducible.
    Both modules are put in eval mode; all calls run under `torch.inference_mode()`.
    `precision="bf16"` casts the transformer's weights to bfloat16 in place (its KV cache follows) and
    runs the tokenizer under bf16 autocast (convolutions in bf16, normalisations in fp32); frames
    and rewards come back as fp32. On CPUs with AVX-512 BF16 a full step runs ~1.8x faster.
    The default follows the transformer's weights (bf16 weights: "bf16").
    `window`: frames per training clip (context + predicted; `load_model` sets it from the run's
    `data.segment_length`), None when unknown; `WindowedRollout` keeps rollouts within it.
    """

    def __init__(self, tokenizer: torch.nn.Module, transformer: WorldModelTransformer, temperature: float = 1.0,
                 top_k: int | None = 100, seed: int | None = None, cache: CacheMode = "kept",
                 prefill_rows: int = 32, precision: Precision | None = None) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(map(repr, CACHE_MODES))}, got {cache!r}")
        check_compatible(tokenizer, transformer)
        self.tokenizer = tokenizer.eval()
        self.transformer = transformer.eval()
        self.layout = transformer.layout
        self.temperature, self.top_k, self.cache_mode = temperature, top_k, cache
        self.prefill_rows = prefill_rows
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(torch.randint(2**62, ())) if seed is None else seed)
        self.state: RolloutState | None = None
        self.num_context: int | None = None  # the context frames it was trained with (`load_model`), when known
        self.window: int | None = None
        self.frames = FrameGenerator(transformer) if cache == "static" else None
        bf16_weights = transformer.lm_head.weight.dtype == torch.bfloat16
        self.set_precision(precision or ("bf16" if bf16_weights else "fp32"))

    def set_precision(self, precision: Precision) -> None:
        """"fp32" or "bf16" (see the class docstring); casts the transformer's weights in place."""
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.transformer.to(torch.bfloat16 if precision == "bf16" else torch.float32)
        self.precision = precision

    def to(self, device: str | torch.device) -> "WorldModel":
        """Move both modules to `device` and return self, as `nn.Module.to` does: `load_model(path).to("cuda")`.

        The sampling generator moves with them, seeded from the current one, so a seeded model stays
        reproducible. A rollout in progress cannot follow (its cache lives on the old device): `reset` again.
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" means the current device, as for nn.Module.to
            device = torch.device("cuda", torch.cuda.current_device())
        here = self.device
        if device == here:
            return self
        seed = int(torch.randint(2**62, (), generator=self.generator, device=here))
        self.tokenizer.to(device)
        self.transformer.to(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.state = None
        if self.frames is not None:
            self.frames = FrameGenerator(self.transformer)  # graphs captured on the old device do not replay here
        return self

    @property
    def device(self) -> torch.device:
        return self.transformer.lm_head.weight.device

    @property
    def action_dim(self) -> int:
        return self.transformer.config.action_dim

    @property
    def predicts_reward(self) -> bool:
        return self.transformer.reward_head is not None

    # --- the interactive API ----------------------------------------------------------------
    @torch.inference_mode()
    def reset(self, context_frames: Tensor | np.ndarray, actions: Tensor | None = None,
              seed: int | None = None) -> RolloutState:
        """Start B rollouts from context frames (B, Tc, 3, H, W) in [-1, 1] (a tensor or an array).

        actions: (B, Tc-1, A) actions between the context frames (action-conditioned models, Tc > 1; optional
        for the official layout, whose sequence has no actions between context frames).
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        context_frames = _frames_tensor(context_frames, "context_frames")
        batch, tc = context_frames.shape[:2]
        actions = self._context_actions(actions, batch, tc)
        context_frames = context_frames.to(self._tok_device)
        with self._tokenizer_precision():
            context_ids, _ = self.tokenizer.encode_context(context_frames)  # (B, Tc, h, w)
            features = self.tokenizer.context_decoder_features(context_ids, context_frames)
        ids = self.layout.build_ids(context_ids.to(self.device))  # (B, Tc * (1 + h*w))
        self.state = RolloutState(ids=ids, actions=actions, num_context=tc, num_future=0, cache=None,
                                  decoder_features=features)
        if self.cache_mode in ("kept", "static"):
            self.state.cache = self._prefill(self.state)
        if self.cache_mode == "static":
            self.state.cache = StaticCache.from_growing(self.state.cache, self.frames.capacity_for(ids.shape[1]))
        return self.state

    @torch.inference_mode()
    def step(self, actions: Tensor | np.ndarray | None = None, decode: bool = True
             ) -> tuple[Tensor | None, Tensor | None]:
        """Advance every rollout by one frame.

        actions: (B, A) leading from the current frame to the next (None for action-free models).
        Returns frames (B, 3, H, W) in [-1, 1] and rewards (B,) (None without a reward head).
        `decode=False` skips the tokenizer's decode and returns None for the frames: the new codes are
        still kept in the state (`decode_frames` turns them into frames later, for any rows).
        """
        _, hidden = self._advance(actions)
        rewards = self.transformer.predict_reward(hidden[:, -1]).float() if self.predicts_reward else None
        if not decode:
            return None, rewards
        return self.decode_latest(), rewards

    @torch.inference_mode()
    def decode_latest(self) -> Tensor:
        """Frames (B, 3, H, W) in [-1, 1] of the newest future frame: what `step` returns, decoded on its own.

        `step(decode=False)` then `decode_latest()` times the transformer and the decoder apart (`ivideogpt play`).
        """
        state = self._require_state()
        if state.num_future == 0:
            raise ValueError("the state holds no future frame to decode")
        future_ids = self.layout.split_future(state.ids, state.num_context)[:, -1:]  # (B, 1, h', w')
        return self._decode(future_ids, state.decoder_features)[:, 0]

    @torch.inference_mode()
    def encode(self, context_frames: Tensor | np.ndarray, future_frames: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        """Observed frames -> their codes (context (B, Tc, h, w), future (B, F, h', w')) in the world model's precision.

        The future codes are what `score_step` takes to feed observed frames in place of predicted ones.
        """
        device = self._tok_device
        with self._tokenizer_precision():
            context_ids, future_ids = self.tokenizer.encode(_frames_tensor(context_frames, "context_frames").to(device),
                                                            _frames_tensor(future_frames, "future_frames").to(device))
        return context_ids.to(self.device), future_ids.to(self.device)

    @torch.inference_mode()
    def score_step(self, codes: Tensor | np.ndarray, actions: Tensor | np.ndarray | None = None
                   ) -> tuple[Tensor, Tensor | None]:
        """Advance every rollout by a given frame (teacher forcing) through the same cached path as `step`.

        codes: (B, h', w') future codebook indices of the frame (e.g. an observed frame's, or a
        reference sequence's). Returns the full-vocabulary logits (B, 1 + h'w', V) output at the
        frame's slot and codes (position j predicts the token after it: code j, then the next slot)
        and rewards (B,) (None without a reward head). No frame is decoded.
        """
        state = self._require_state()
        codes = self._frame_codes(codes, state.batch_size)
        _, hidden = self._advance(actions, codes)
        rewards = self.transformer.predict_reward(hidden[:, -1]).float() if self.predicts_reward else None
        return self.transformer.lm_head(hidden).float(), rewards

    def _advance(self, actions: Tensor | np.ndarray | None, forced: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Add one frame to the state (sampled, or `forced` codes (B, h'w')): its codes and the hidden states."""
        state = self._require_state()
        action = self._step_action(actions, state.batch_size)
        codes, hidden = self._generate_frame(state, action, forced)  # (B, h'w'), (B, 1 + h'w', H)
        state.ids = torch.cat([state.ids, self.layout.future_ids_block(codes)], dim=1)
        if action is not None:
            state.actions = torch.cat([state.actions, action[:, None].to(state.actions.dtype)], dim=1)
        state.num_future += 1
        return codes, hidden

    @torch.inference_mode()
    def decode_frames(self, state: RolloutState | None = None, rows: Tensor | list[int] | None = None,
                      frames: int | None = None) -> Tensor:
        """Frames (R, F, 3, H, W) in [-1, 1] of the future frames of `state` (default: the current one), in one call.

        rows: the batch rows to decode (default: all); frames: only the first F future frames (default: all).
        Frames decode independently of each other, so this equals what `step(decode=True)` returns frame by frame.
        """
        state = self._require_state() if state is None else state
        if state.num_future == 0:
            raise ValueError("the state holds no future frames to decode")
        if frames is not None and not 1 <= _count(frames, "frames") <= state.num_future:
            raise ValueError(f"frames must be in [1, {state.num_future}] (the state's future frames), got {frames}")
        if rows is not None:
            state = state.index(rows)
        future_ids = self.layout.split_future(state.ids, state.num_context)[:, :frames]  # (R, F, h', w')
        return self._decode(future_ids, state.decoder_features)

    @torch.inference_mode()
    def fork(self, n: int) -> RolloutState:
        """Repeat the current state n times along the batch (row b becomes rows b*n .. b*n+n-1)."""
        self.state = self._require_state().repeat(n)
        return self.state

    def set_state(self, state: RolloutState) -> None:
        """Continue from `state` (it will be advanced in place: pass `state.repeat(1)` to keep it)."""
        if not isinstance(state, RolloutState):
            raise ValueError(f"set_state takes a RolloutState (from reset, fork or rollout), "
                             f"got {type(state).__name__}")
        self.state = state

    def sibling(self, seed: int | None = None) -> "WorldModel":
        """The same modules and settings (`window` included) with its own rollout state and sampler, so a second
        user of the model (an imagined env beside a planner) neither disturbs it nor loses its training window."""
        other = WorldModel(self.tokenizer, self.transformer, temperature=self.temperature, top_k=self.top_k, seed=seed,
                           cache=self.cache_mode, prefill_rows=self.prefill_rows, precision=self.precision)
        other.num_context, other.window = self.num_context, self.window
        return other

    @torch.inference_mode()
    def rollout(self, context: Tensor | np.ndarray | RolloutState, actions: Tensor | np.ndarray | None = None,
                horizon: int | None = None,
                context_actions: Tensor | None = None, seed: int | None = None, decode: bool = True
                ) -> tuple[Tensor | None, Tensor | None]:
        """Open-loop rollouts: frames (N, H, 3, h, w) (None with `decode=False`) and rewards (N, H) or None.

        context: frames (B, Tc, 3, h, w) or a state from `reset` (left untouched, so it can be reused).
        actions: (N, H, A) with N a multiple of B; each context row is forked N/B times (one prefill).
        """
        if not isinstance(context, RolloutState):
            context = _frames_tensor(context, "context_frames")
        contexts = context.batch_size if isinstance(context, RolloutState) else context.shape[0]
        rows = contexts
        if actions is not None:
            actions = _actions_tensor(actions, "rollout actions")
            if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
                raise ValueError(f"rollout actions must be (N, H, A) with A = {self.action_dim}, got {tuple(actions.shape)}")
            _finite(actions.float(), "rollout actions")  # before any step: a refused rollout changes nothing
            horizon = actions.shape[1] if horizon is None else horizon
            if actions.shape[1] != horizon:
                raise ValueError(f"actions cover {actions.shape[1]} steps but horizon={horizon}")
            rows = actions.shape[0]
        if horizon is None:
            raise ValueError("rollout needs actions (N, H, A) or a horizon >= 1")
        horizon = _count(horizon, "rollout's horizon")
        if rows % contexts:
            raise ValueError(f"{rows} action sequences cannot be split over {contexts} contexts")
        if seed is not None:
            self.generator.manual_seed(seed)
        base = context if isinstance(context, RolloutState) else self.reset(context, context_actions)
        state = base.repeat(rows // base.batch_size) if base is context or rows != base.batch_size else base
        self.state = state
        frames, rewards = [], []
        for t in range(horizon):
            frame, reward = self.step(None if actions is None else actions[:, t], decode=decode)
            frames.append(frame)
            rewards.append(reward)
        return (torch.stack(frames, 1) if decode else None,
                torch.stack(rewards, 1) if self.predicts_reward else None)

    @torch.inference_mode()
    def action_sensitivity(self, context: Tensor, actions: Tensor, other_actions: Tensor | None = None,
                           seed: int = 0) -> dict[str, float]:
        """How much predictions change when actions change (same seed, same context).

        other_actions defaults to `actions` reversed along the batch. Returns the fraction of generated
        tokens that differ and the mean absolute frame difference; ~0 means the model ignores actions.
        """
        if self.action_dim == 0:
            raise ValueError("action_sensitivity needs an action-conditioned model (action_dim > 0)")
        other = actions.flip(0) if other_actions is None else other_actions
        if other.shape != actions.shape:
            raise ValueError(f"other_actions {tuple(other.shape)} must match actions {tuple(actions.shape)}")
        base = self.reset(context)
        frames_a, _ = self.rollout(base, actions, seed=seed)
        ids_a = self.state.ids
        frames_b, _ = self.rollout(base, other, seed=seed)
        ids_b = self.state.ids
        return {"token_change": float((ids_a != ids_b).float().sum() / (ids_a.shape[0] * actions.shape[1]
                                                                        * self.layout.future_codes)),
                "frame_l1": float((frames_a - frames_b).abs().mean())}

    # --- internals --------------------------------------------------------------------------
    @property
    def _tok_device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    def _decode(self, future_ids: Tensor, decoder_features: object) -> Tensor:
        """Future ids (B, F, h', w') -> fp32 frames (B, F, 3, H, W) in [-1, 1], in the world model's precision."""
        with self._tokenizer_precision():
            frames = self.tokenizer.decode_future(future_ids.to(self._tok_device), decoder_features)
        return frames.float().clamp(-1.0, 1.0)

    def _tokenizer_precision(self) -> contextlib.AbstractContextManager:
        """bf16 autocast around tokenizer calls when `precision="bf16"`, else nothing."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self._tok_device.type, dtype=torch.bfloat16)

    def _require_state(self) -> RolloutState:
        if self.state is None:
            raise RuntimeError("call reset(context_frames) before step()")
        return self.state

    def _frame_codes(self, codes: Tensor | np.ndarray, batch: int) -> Tensor:
        """`codes` as (B, h', w') integer ids in [0, codebook_size) on the model's device, refused otherwise before
        any token is fed: codes that fail inside the transformer would leave the cache a token ahead of the state."""
        grid, size = self.layout.future_grid, self.layout.codebook_size
        expected = f"codes must be ({batch}, {grid[0]}, {grid[1]}) (B, h', w') integer ids in [0, {size})"
        codes = torch.as_tensor(codes, device=self.device)
        if codes.shape != (batch, *grid):
            raise ValueError(f"{expected}, got shape {tuple(codes.shape)}")
        if not is_integer(codes):
            raise ValueError(f"{expected}, got dtype {codes.dtype}")
        low, high = value_range(codes)
        if low < 0 or high >= size:
            raise ValueError(f"{expected}, got ids in [{low}, {high}]")
        return codes.reshape(batch, -1)

    def _context_actions(self, actions: Tensor | None, batch: int, tc: int) -> Tensor | None:
        if self.action_dim == 0:
            if not _no_actions(actions):
                raise ValueError("this world model is action-free (action_dim=0) but context actions were given")
            return None
        if actions is None:
            if tc > 1 and self.layout.uses_context_actions:
                raise ValueError(f"an action-conditioned model needs the {tc - 1} actions between the {tc} "
                                 f"context frames: pass actions shaped ({batch}, {tc - 1}, {self.action_dim})")
            return torch.zeros(batch, tc - 1, self.action_dim, device=self.device)  # not in the sequence
        actions = _actions_tensor(actions, "context actions").to(self.device).float()
        if actions.shape != (batch, tc - 1, self.action_dim):
            raise ValueError(f"context actions must be shaped ({batch}, {tc - 1}, {self.action_dim}) "
                             f"(B, Tc-1, A), got {tuple(actions.shape)}")
        return _finite(actions, "context actions")

    def _step_action(self, actions: Tensor | np.ndarray | None, batch: int) -> Tensor | None:
        if self.action_dim == 0:
            if not _no_actions(actions):
                raise ValueError("this world model is action-free (action_dim=0); call step() without actions")
            return None
        if actions is None:
            raise ValueError(f"this world model is action-conditioned: step needs actions ({batch}, {self.action_dim})")
        actions = _actions_tensor(actions, "step actions")
        if actions.shape != (batch, self.action_dim):
            raise ValueError(f"step actions must be shaped ({batch}, {self.action_dim}) (B, A), "
                             f"got {tuple(actions.shape)}")
        if actions.device.type == "cpu":  # checked where it costs no device sync, so a GPU step never waits on
            _finite(actions, "step actions")  # the frame before it (`rollout` checks all its actions once)
        return actions.to(self.device).float()

    def _history_embeds(self, state: RolloutState, rows: slice = slice(None)) -> Tensor:
        """(B, L, H) embeddings of every token so far (batch `rows`), actions included."""
        actions = None if state.actions is None else state.actions[rows]
        return self.transformer.embed(state.ids[rows], actions, state.num_context)

    def _prefill(self, state: RolloutState) -> GrowingCache:
        """Run the context through the transformer once, `prefill_rows` batch rows at a time (bounded memory)."""
        caches = []
        for start in range(0, state.batch_size, self.prefill_rows):
            cache = GrowingCache(self.transformer.config.num_layers)
            self.transformer.backbone(self._history_embeds(state, slice(start, start + self.prefill_rows)), 0, cache,
                                      state.num_context)
            caches.append(cache)
        return caches[0] if len(caches) == 1 else GrowingCache.concat(caches)

    def _generate_frame(self, state: RolloutState, action: Tensor | None, forced: Tensor | None = None
                        ) -> tuple[Tensor, Tensor]:
        """Sample one future frame's codes (B, h'w') (or take `forced` ones) and return them with the hidden
        states (B, 1 + h'w', H) of its slot and codes (the last one's gives the reward)."""
        model, layout = self.transformer, self.layout
        slot_ids = torch.full((state.batch_size, 1), layout.future_slot, device=self.device)
        inputs = model.embed(slot_ids)  # (B, 1, H)
        action_offset = None if action is None else model.project_actions(action)[:, None]  # (B, 1, H)
        if action_offset is not None:
            inputs = inputs + action_offset
        draws = (torch.rand(layout.future_codes, state.batch_size, generator=self.generator, device=self.device)
                 if forced is None and self.temperature > 0 else None)  # one uniform per code, drawn up front
        code_offset = action_offset if action_offset is not None and model.config.action_to_frame else None
        if self.cache_mode == "static":
            state.cache = self.frames.with_room(state.cache)
            spatial = None
            if model.spatial_proj is not None:  # computed here, so the captured frame holds no layout arithmetic
                positions = torch.arange(state.length, state.length + layout.future_codes + 1, device=self.device)
                spatial = model.spatial_embedding(positions, state.num_context).to(inputs.dtype)
            return self.frames.generate(state.cache, FrameInputs(inputs, code_offset, spatial, draws, forced),
                                        self.temperature, self.top_k)
        frame = FrameInputs(inputs, code_offset, None, draws, forced)  # what next_code reads
        cache, start = state.cache, state.length
        if self.cache_mode == "per_frame":  # fresh cache: the whole prefix is processed again
            cache, start = GrowingCache(model.config.num_layers), 0
            inputs = torch.cat([self._history_embeds(state), inputs], dim=1)
        elif self.cache_mode == "none":
            inputs = torch.cat([self._history_embeds(state), inputs], dim=1)
        codes, hiddens = [], []
        for j in range(layout.future_codes + 1):
            if self.cache_mode == "none":
                hidden = model.backbone(inputs, num_context=state.num_context)[:, -1]  # (B, H)
            elif self.cache_mode == "kept":
                hidden = model.decode_step(inputs, start, cache, state.num_context)[:, -1]
                start += 1
            else:
                hidden = model.backbone(inputs, start, cache, state.num_context)[:, -1]
                start += inputs.shape[1]
            hiddens.append(hidden)
            if j == layout.future_codes:  # the last code is now in the cache; its hidden gives the reward
                break
            code, embedded = next_code(model, hidden, j, frame, self.temperature, self.top_k)  # (B,), (B, 1, H)
            codes.append(code)
            inputs = torch.cat([inputs, embedded], dim=1) if self.cache_mode == "none" else embedded
        return torch.stack(codes, dim=1), torch.stack(hiddens, dim=1)


class WindowedRollout:
    """`reset` / `step` of a world model for as long as wanted, its transformer never reading more than `window` frames.

    Once the sequence holds `window` frames (context + predicted: the training clip length), the next step
    depends on `past_window`. "reanchor" first restarts from the newest Tc frames (its own decoded predictions,
    encoded afresh as context, with the Tc - 1 actions between them), then predicts: every window looks like
    a training clip and memory stays bounded, but errors of the decoded frames carry over. "refuse" raises
    ValueError and steps nothing. "extend" lets the sequence grow (plain `WorldModel.step`). `window=None`
    (unknown) never re-anchors. A re-anchor does not reseed the sampler: seeded rollouts stay reproducible.
    """

    def __init__(self, world_model: WorldModel, window: int | None, past_window: PastWindow = "reanchor") -> None:
        if past_window not in PAST_WINDOW:
            raise ValueError(f"past_window must be one of {', '.join(map(repr, PAST_WINDOW))}, got {past_window!r}")
        if window is not None and window < 2:
            raise ValueError(f"window must be >= 2 frames (a context and a predicted frame), got {window}")
        self.world_model, self.window, self.past_window = world_model, window, past_window
        self.recent: Tensor | None = None
        """(B, Tc, 3, H, W) the newest Tc frames: the context of the next re-anchor."""

    def reset(self, context_frames: Tensor | np.ndarray, actions: Tensor | None = None,
              seed: int | None = None) -> RolloutState:
        """`WorldModel.reset`, refused when the Tc context frames leave no room for a predicted frame in the window."""
        context_frames = _frames_tensor(context_frames, "context_frames")
        tc = context_frames.shape[1]
        if self.past_window != "extend" and self.window is not None and tc >= self.window:
            raise ValueError(f"{tc} context frames leave no room for a predicted frame in the model's "
                             f"{self.window}-frame training window")
        state = self.world_model.reset(context_frames, actions, seed=seed)
        self.recent = context_frames
        return state

    def step(self, actions: Tensor | np.ndarray | None = None) -> tuple[Tensor, Tensor | None]:
        """`WorldModel.step`'s frames (B, 3, H, W) and rewards, after re-anchoring (or refusing) at a full window."""
        state = self.world_model.state
        if self.past_window != "extend" and state is not None and state.fills(self.window):
            if self.past_window == "refuse":
                raise ValueError(f"the rollout holds {self.window} frames, the clip length the world model was trained "
                                 f"on: reset it, or pass past_window='reanchor' to go on from its newest frames")
            tc = state.num_context
            between = None if state.actions is None or tc == 1 else state.actions[:, -(tc - 1):]
            self.world_model.reset(self.recent, between)
        frames, rewards = self.world_model.step(actions)
        self.recent = torch.cat([self.recent[:, 1:].to(frames), frames[:, None]], dim=1)
        return frames, rewards


def check_compatible(tokenizer: torch.nn.Module, transformer: WorldModelTransformer) -> None:
    """Raise ValueError unless the tokenizer's codebook and token grids match the transformer's layout."""
    facts = tokenizer.describe()
    layout = transformer.layout
    mine = {"codebook_size": layout.codebook_size, "context_tokens": list(layout.context_grid),
            "future_tokens": list(layout.future_grid)}
    theirs = {key: facts.get(key) for key in mine}
    if mine != theirs:
        raise ValueError(f"tokenizer and transformer do not match: tokenizer has {theirs}, transformer expects {mine}")


def _no_actions(actions: Tensor | np.ndarray | None) -> bool:
    """None or zero-width actions (..., 0): all an action-free model may be given (a (B, H, 0) batch is valid)."""
    return actions is None or tuple(np.shape(actions))[-1:] == (0,)


def _finite(actions: Tensor, what: str) -> Tensor:
    """`actions`, refused when any is NaN/inf: it would poison every later frame of the rollout silently."""
    if not bool(torch.isfinite(actions).all()):
        rows = sorted({int(r) for r in (~torch.isfinite(actions)).nonzero()[:, 0].tolist()})
        raise ValueError(f"{what} contain NaN or inf (batch rows {rows}); nothing was stepped")
    return actions


def _frames_tensor(frames: Tensor | np.ndarray, what: str) -> Tensor:
    """`frames` (B, T, 3, H, W) as a tensor, float ones as float32 (numpy's float64 too, which the tokenizer's
    float32 convolutions would refuse deep inside torch); resolution, dtype and range are the tokenizer's to check."""
    frames = torch.as_tensor(frames)
    if frames.ndim != 5 or 0 in frames.shape[:2]:
        raise ValueError(f"{what} must be (B, T, 3, H, W) with B, T >= 1, got {tuple(frames.shape)}")
    return frames.float() if frames.is_floating_point() else frames


def _actions_tensor(actions: Tensor | np.ndarray | list, what: str) -> Tensor:
    """`actions` as a tensor of real numbers, refused otherwise: bool or complex ones would be cast silently."""
    try:
        tensor = torch.as_tensor(actions)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{what} must be numbers (a tensor, array or nested list), got {actions!r:.80}") from None
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{what} must be real numbers, got dtype {tensor.dtype}")
    return tensor


def _count(value: int, what: str) -> int:
    """`value` as an int >= 1, refused otherwise (a float count would fail deep inside torch, maybe after a reset)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def _batch_rows(rows: Tensor | list[int], batch: int) -> Tensor:
    """`rows` as long batch indices in [-batch, batch), refused otherwise (float rows would be truncated silently)."""
    rows = torch.as_tensor(rows)
    if not is_integer(rows):
        raise ValueError(f"rows must be integer batch indices, got dtype {rows.dtype}")
    low, high = value_range(rows) if rows.numel() else (-batch, batch - 1)  # no rows: nothing out of range
    if low < -batch or high >= batch:
        raise ValueError(f"rows must be batch indices in [0, {batch}), got {rows.tolist()}")
    return rows.long()
