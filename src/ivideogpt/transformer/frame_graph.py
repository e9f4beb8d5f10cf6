"""One future frame's tokens against a `StaticCache`: eagerly, or by replaying a captured CUDA graph.

A frame is 1 + h'w' sequential token steps (its slot, then its codes), each through every layer,
with sampling in between. At batch 16 on a GPU each kernel does microseconds of work, so launches
dominate; capturing the whole frame (every step and the sampling, with the uniforms drawn
beforehand) as one CUDA graph replaces ~3,000 launches with one. A graph is bound to fixed buffer
addresses, so each captured frame owns a `StaticCache` and its input buffers: a state's cache is
copied in when a different state is stepped (and the previous one handed a copy of its own), which
on a GPU costs well under a millisecond.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ivideogpt.transformer.decode import head_logits, layer_weights, static_decode_token
from ivideogpt.transformer.model import WorldModelTransformer
from ivideogpt.transformer.sampling import sample_tokens
from ivideogpt.transformer.static_cache import StaticCache, round_capacity

FRAMES_AHEAD = 8  # a new or full cache gets room for this many more frames (then rounded up)


@dataclass(frozen=True)
class FrameInputs:
    """What one frame's generation reads besides the cache.

    first: (B, 1, H) the slot's input embedding (action added); code_offset: (B, 1, H) added to every
    code's embedding (actions fed to the whole frame) or None; spatial: (1 + h'w', H) the spatial
    terms of the frame's tokens (`spatial_embedding`: the same for every future frame) or None;
    draws: (h'w', B) uniforms for sampling (None for greedy or forced codes); forced: (B, h'w') codes
    to feed instead of sampling, or None.
    """

    first: Tensor
    code_offset: Tensor | None
    spatial: Tensor | None
    draws: Tensor | None
    forced: Tensor | None

    def tensors(self) -> tuple[Tensor | None, ...]:
        return self.first, self.code_offset, self.spatial, self.draws, self.forced


def next_code(model: WorldModelTransformer, hidden: Tensor, j: int, inputs: FrameInputs, temperature: float,
              top_k: int | None) -> tuple[Tensor, Tensor]:
    """Code j of a frame (B,) from the hidden state (B, H) that predicts it (or forced), and its input (B, 1, H)."""
    if inputs.forced is not None:
        code = inputs.forced[:, j]
    else:
        k = model.config.codebook_size  # the future codes' rows, as `model.future_logits`, prepacked
        code = sample_tokens(head_logits(model.lm_head, k, k, hidden), temperature, top_k,
                             draws=None if inputs.draws is None else inputs.draws[j])
    embedded = model.embed((code + model.layout.future_offset)[:, None])
    return code, embedded if inputs.code_offset is None else embedded + inputs.code_offset


def generate_frame(model: WorldModelTransformer, cache: StaticCache, inputs: FrameInputs, temperature: float,
                   top_k: int | None) -> tuple[Tensor, Tensor]:
    """Codes (B, h'w') and hidden states (B, 1 + h'w', H) of the next frame; writes its keys and values.

    Reads `cache.position` (not `cache.length`) for everything that changes from frame to frame, so
    the same call, captured once, is valid for every later frame. The caller then `advance`s the cache.
    """
    layout, core = model.layout, model.core
    steps = layout.future_codes + 1
    positions = cache.position + torch.arange(steps, device=inputs.first.device)
    cos, sin = core.rotary_emb(inputs.first, positions[None])  # (1, steps, D)
    codes, hiddens, x = [], [], inputs.first
    for j in range(steps):
        embeds = x if inputs.spatial is None else x + inputs.spatial[j]
        hidden = static_decode_token(core, embeds, cos[:, j : j + 1], sin[:, j : j + 1], cache, j)[:, -1]
        hiddens.append(hidden)
        if j == steps - 1:  # the last code's keys are now cached; its hidden state gives the reward
            break
        code, x = next_code(model, hidden, j, inputs, temperature, top_k)
        codes.append(code)
    return torch.stack(codes, dim=1), torch.stack(hiddens, dim=1)


class Graph(Protocol):
    """What a captured frame needs of a CUDA graph (`torch.cuda.CUDAGraph` behind `CudaGraph`)."""

    def capture(self, run: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]: ...

    def replay(self) -> None: ...


class CudaGraph:
    """`run` warmed up on a side stream, then captured into a `torch.cuda.CUDAGraph`."""

    def __init__(self) -> None:
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, run: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # lazy initialisation (cuBLAS handles, kernel selection) must not be captured
                run()
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(self.graph):
            return run()

    def replay(self) -> None:
        self.graph.replay()


class CapturedFrame:
    """`generate_frame` captured once for one shape, with its own cache and input buffers.

    `run(cache, inputs)` binds `cache` (copies its contents into the owned buffers, after handing the
    previously bound cache a copy of its own), copies the inputs in, replays the graph and returns
    copies of the outputs. The bound cache then shares the owned buffers, so the next frame of the
    same rollout copies nothing.
    """

    def __init__(self, model: WorldModelTransformer, like: StaticCache, inputs: FrameInputs, temperature: float,
                 top_k: int | None, graph: Graph) -> None:
        self.cache = like.copy()
        self.inputs = FrameInputs(*(None if x is None else x.clone() for x in inputs.tensors()))
        self.graph = graph
        self.outputs = graph.capture(lambda: generate_frame(model, self.cache, self.inputs, temperature, top_k))
        self.bound: weakref.ref[StaticCache] | None = None

    def run(self, cache: StaticCache, inputs: FrameInputs) -> tuple[Tensor, Tensor]:
        self._bind(cache)
        for mine, given in zip(self.inputs.tensors(), inputs.tensors()):
            if mine is not None:
                mine.copy_(given)
        self.graph.replay()
        return self.outputs[0].clone(), self.outputs[1].clone()

    def _bind(self, cache: StaticCache) -> None:
        previous = None if self.bound is None else self.bound()
        if previous is cache:
            return
        if previous is not None:  # it may still be stepped or forked later: give it its own buffers back
            previous.keys = [k.clone() for k in previous.keys]
            previous.values = [v.clone() for v in previous.values]
            previous.position = previous.position.clone()
        self.cache.assign(cache)
        cache.keys, cache.values, cache.position = self.cache.keys, self.cache.values, self.cache.position
        self.bound = weakref.ref(cache)


class FrameGenerator:
    """Generates frames on `StaticCache`s: with a captured graph per shape on CUDA, eagerly elsewhere.

    graphs: True / False to force either way; None (default) captures when the cache is on a CUDA device.

    Graphs are keyed by everything baked into them (batch, capacity, dtype, temperature, top-k,
    which inputs exist) and recaptured when the model's weights are replaced.
    """

    def __init__(self, model: WorldModelTransformer, graphs: bool | None = None,
                 graph_factory: Callable[[], Graph] = CudaGraph) -> None:
        self.model = model
        self.graphs = graphs
        self.graph_factory = graph_factory
        self.captured: dict[tuple, CapturedFrame] = {}
        self.weights: object = None

    def capacity_for(self, length: int) -> int:
        """The capacity a cache of `length` tokens gets: room for FRAMES_AHEAD more frames, rounded up."""
        return round_capacity(length + FRAMES_AHEAD * (self.model.layout.future_codes + 1))

    def with_room(self, cache: StaticCache) -> StaticCache:
        """`cache`, or a copy with room for FRAMES_AHEAD more frames when the next one would not fit."""
        if cache.length + self.model.layout.future_codes + 1 <= cache.capacity:
            return cache
        return cache.grown(self.capacity_for(cache.length))

    def generate(self, cache: StaticCache, inputs: FrameInputs, temperature: float, top_k: int | None
                 ) -> tuple[Tensor, Tensor]:
        """Codes (B, h'w') and hidden states (B, 1 + h'w', H) of the next frame; advances `cache` past it."""
        if cache.length + self.model.layout.future_codes + 1 > cache.capacity:
            raise ValueError(f"a frame does not fit the cache ({cache.length} of {cache.capacity} tokens): "
                             f"use with_room() first")
        if self.graphs or (self.graphs is None and cache.keys[0].is_cuda):
            codes, hiddens = self._captured(cache, inputs, temperature, top_k).run(cache, inputs)
        else:
            codes, hiddens = generate_frame(self.model, cache, inputs, temperature, top_k)
        cache.advance(hiddens.shape[1])
        return codes, hiddens

    def _captured(self, cache: StaticCache, inputs: FrameInputs, temperature: float, top_k: int | None
                  ) -> CapturedFrame:
        weights = layer_weights(self.model.core)
        if weights is not self.weights:  # new weights (loaded, trained or cast): every graph read the old ones
            self.captured.clear()
            self.weights = weights
        key = (cache.batch_size, cache.capacity, cache.keys[0].dtype, temperature, top_k,
               *(x is None for x in inputs.tensors()),
               self.model.lm_head.weight.data_ptr(), self.model.core.embed_tokens.weight.data_ptr())
        if key not in self.captured:
            self.captured[key] = CapturedFrame(self.model, cache, inputs, temperature, top_k, self.graph_factory())
        return self.captured[key]
