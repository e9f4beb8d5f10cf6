"""One new token per row through the Llama layers, against a `GrowingCache`: the rollout's inner step.

It computes what `LlamaModel` computes for a single query token, with the same weights, but:
- attends to each of the cache's contiguous parts (`transformer/cache.py`: shared by forked rows,
  each row's prefix, its tail) as one softmax, so the cache is read once and never concatenated
  (HF's forward, through `Cache.update`, wants all keys as one tensor: a copy of the whole cache
  per token per layer); on CPU a hand-written kernel does it (`transformer/cpu_kernels.py`);
- runs q/k/v as one matmul and gate/up as one, on CPU with weights prepacked once: for oneDNN, or
  in bf16 on a CPU with AVX512_BF16 for the hand-written linear kernel (~1.4x faster again).
  A batch-16 token step reads every weight once with only 16 rows to multiply, and unpacked
  matmuls re-pack the weight on every call: prepacked ones ran ~1.7x (fp32) to 2x (bf16) faster
  on this project's 2-core machine (`benchmarks/rollout_throughput.py`).
- on CPU in bf16, runs every layer in one C++ call (`CpuLayerLoop`) when all the kernels apply.
The packed copy (as large as the layers' weights) is rebuilt whenever a weight changes (training).
`static_decode_token` runs the same layers against a `StaticCache` (fixed buffers, masked attention),
the step a CUDA graph captures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.activations import SiLUActivation
from transformers.models.llama.modeling_llama import LlamaModel, LlamaRMSNorm, apply_rotary_pos_emb

from ivideogpt.transformer.cache import GrowingCache, SplitLayer
from ivideogpt.transformer.cpu_kernels import (MAX_HEAD_DIM, PackedBf16Weight, bf16_linear, cpu_extension,
                                               decode_attention_kernel, fused_ops_apply, kernel_applies,
                                               packs_for_bf16_kernel)
from ivideogpt.transformer.static_cache import StaticCache

PACK_ROWS = 16  # the batch size oneDNN lays the packed weights out for (any batch works)


@dataclass
class LayerWeights:
    """One layer's matmuls, fused: q|k|v, o, gate|up, down (prepacked on CPU), and their biases."""

    qkv: Tensor | PackedBf16Weight
    qkv_bias: Tensor | None
    o: Tensor | PackedBf16Weight
    o_bias: Tensor | None
    gate_up: Tensor | PackedBf16Weight
    gate_up_bias: Tensor | None
    down: Tensor | PackedBf16Weight
    down_bias: Tensor | None


_PACKED: WeakKeyDictionary = WeakKeyDictionary()  # module -> (its weights' identity, what was prepared from them)


def decode_token(core: LlamaModel, embeds: Tensor, position: int, cache: GrowingCache) -> Tensor:
    """(B, 1, H) input embeddings of the token at `position` (= tokens cached) -> (B, 1, H) final hidden states."""
    if embeds.shape[1] != 1:
        raise ValueError(f"decode_token takes one token per row, got {embeds.shape[1]}")
    if cache.get_seq_length() != position:
        raise ValueError(f"the cache holds {cache.get_seq_length()} tokens but the token is at position {position}")
    positions = torch.full((1, 1), position, dtype=torch.long, device=embeds.device)
    cos, sin = core.rotary_emb(embeds, positions)
    loop = cpu_layer_loop(core, embeds, cache)
    if loop is not None:
        return loop.run(core, embeds, cos, sin, cache)

    def attend_cached(index: int, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        stored = cache.layers[index]
        stored.append(key, value)
        return attend(query, stored, core.layers[index].self_attn.scaling)

    return run_layers(core, embeds, cos, sin, attend_cached)


def static_decode_token(core: LlamaModel, embeds: Tensor, cos: Tensor, sin: Tensor, cache: StaticCache,
                        offset: int) -> Tensor:
    """(B, 1, H) embeddings of the token at `cache.position + offset` -> (B, 1, H) final hidden states.

    Its keys and values are written into the fixed buffers at that position and attention masks the
    rest, so no shape depends on the position: the step can be captured once (`transformer/frame_graph.py`).
    cos, sin: (1, 1, D) rotary terms of the position. Earlier tokens of the frame (offsets below this
    one) must have been written already; `cache.advance` counts them once the frame is done.
    """
    index = (cache.position + offset).view(1)
    visible = (torch.arange(cache.capacity, device=embeds.device) <= index).view(1, 1, 1, -1)  # (1, 1, 1, capacity)
    batch = embeds.shape[0]

    def attend_static(layer: int, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        keys, values = cache.keys[layer], cache.values[layer]
        keys.index_copy_(2, index, key.to(keys.dtype))
        values.index_copy_(2, index, value.to(values.dtype))
        attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=visible,
                                                  scale=core.layers[layer].self_attn.scaling)
        return attended.transpose(1, 2).reshape(batch, 1, -1)

    return run_layers(core, embeds, cos, sin, attend_static)


def run_layers(core: LlamaModel, embeds: Tensor, cos: Tensor, sin: Tensor,
               attend_layer: Callable[[int, Tensor, Tensor, Tensor], Tensor]) -> Tensor:
    """The Llama layers for one token per row, (B, 1, H) -> (B, 1, H) after the final norm.

    attend_layer(layer index, query, key, value) with (B, heads, 1, D) rotated queries and keys stores
    the key and value in its cache and returns the attention output (B, 1, heads * D).
    """
    hidden = embeds
    for index, (layer, weights) in enumerate(zip(core.layers, layer_weights(core))):
        attention = layer.self_attn
        qkv = linear(rms_norm(layer.input_layernorm, hidden), weights.qkv, weights.qkv_bias)
        query, key, value = split_rotate(qkv, cos, sin, attention.head_dim)  # (B, heads, 1, D) each
        attended = attend_layer(index, query, key, value)  # (B, 1, heads * D)
        hidden = hidden + linear(attended, weights.o, weights.o_bias)
        gate_up = linear(rms_norm(layer.post_attention_layernorm, hidden), weights.gate_up, weights.gate_up_bias)
        hidden = hidden + linear(swiglu(layer.mlp.act_fn, gate_up), weights.down, weights.down_bias)
    return rms_norm(core.norm, hidden)


@dataclass
class CpuLayerLoop:
    """`run_layers` for a `GrowingCache` as one C++ call (`csrc/decode_layers.cpp`): the same kernels in
    the same order, so the same results, without ~0.25 ms of Python per layer. The per-model arguments."""

    norms: list[Tensor]  # every layer's input and post-attention RMSNorm weights
    weights: list[Tensor]  # every layer's packed q|k|v, o, gate|up and down weights
    columns: list[int]  # their output widths
    heads: int
    head_dim: int
    scale: float
    eps: float

    def run(self, core: LlamaModel, embeds: Tensor, cos: Tensor, sin: Tensor, cache: GrowingCache) -> Tensor:
        """`decode_token`'s result: (B, 1, H) embeddings -> (B, 1, H) final hidden states, the token cached."""
        batch, _, width = embeds.shape
        slots, keys, values, shares = [], [], [], []
        for stored in cache.layers:
            slots.append(stored.reserve((batch, self.heads, 1, self.head_dim), embeds.dtype, embeds.device))
            parts = stored.parts()
            keys.append([part[0] for part in parts])
            values.append([part[1] for part in parts])
            shares.append([part[2] for part in parts])
        hidden = cpu_extension().decode_layers(
            embeds.reshape(batch, width).contiguous(), [*self.norms, core.norm.weight], self.weights, self.columns,
            cos.reshape(-1).contiguous(), sin.reshape(-1).contiguous(), self.heads, [slot[0] for slot in slots],
            [slot[1] for slot in slots], keys, values, shares, self.scale, self.eps)
        return hidden.view(batch, 1, width)


_LOOPS: WeakKeyDictionary = WeakKeyDictionary()  # core -> (the layer_weights it was made from, its CpuLayerLoop)


def cpu_layer_loop(core: LlamaModel, embeds: Tensor, cache: GrowingCache) -> CpuLayerLoop | None:
    """The C++ layer loop where every kernel of `run_layers` applies (bf16 on a CPU with AVX512_BF16, a
    bf16 cache), else None."""
    if (embeds.device.type != "cpu" or embeds.dtype != torch.bfloat16
            or any(stored.is_initialized and stored.dtype != torch.bfloat16 for stored in cache.layers)):
        return None
    layers = layer_weights(core)
    cached = _LOOPS.get(core)
    if cached is None or cached[0] is not layers:
        cached = (layers, _build_layer_loop(core, layers))
        _LOOPS[core] = cached
    loop = cached[1]
    if loop is None or core.norm.weight.dtype != torch.bfloat16 or core.norm.variance_epsilon != loop.eps:
        return None
    return loop


def _build_layer_loop(core: LlamaModel, layers: list[LayerWeights]) -> CpuLayerLoop | None:
    """The loop's arguments for `core` with its prepared `layers`, or None where a kernel would not apply."""
    attention = core.layers[0].self_attn
    heads, head_dim = core.config.num_attention_heads, attention.head_dim
    norms = [norm for layer in core.layers for norm in (layer.input_layernorm, layer.post_attention_layernorm)]
    weights = [w for layer in layers for w in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    biases = [b for layer in layers for b in (layer.qkv_bias, layer.o_bias, layer.gate_up_bias, layer.down_bias)]
    applies = (all(isinstance(w, PackedBf16Weight) for w in weights) and all(b is None for b in biases)
               and all(isinstance(layer.mlp.act_fn, SiLUActivation | torch.nn.SiLU) for layer in core.layers)
               and all(norm.weight.dtype == torch.bfloat16 for norm in norms)
               and len({norm.variance_epsilon for norm in norms}) == 1
               and core.config.num_key_value_heads == heads and layers[0].qkv.shape[0] == 3 * heads * head_dim
               and head_dim % 32 == 0 and head_dim <= MAX_HEAD_DIM and core.config.hidden_size % 16 == 0
               and weights[2].shape[0] % 32 == 0)
    if not applies:
        return None
    return CpuLayerLoop([norm.weight for norm in norms], [w.packed for w in weights], [w.shape[0] for w in weights],
                        heads, head_dim, attention.scaling, norms[0].variance_epsilon)


def rms_norm(norm: LlamaRMSNorm, x: Tensor) -> Tensor:
    """`norm(x)`, on CPU as one call of the fused op (`transformer/cpu_kernels.py`) where it applies."""
    width = x.shape[-1]
    if width % 16 == 0 and fused_ops_apply(x, norm.weight):
        flat = x.reshape(-1, width).contiguous()
        return cpu_extension().rms_norm(flat, norm.weight, norm.variance_epsilon).view(x.shape)
    return norm(x)


def split_rotate(qkv: Tensor, cos: Tensor, sin: Tensor, head_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 1, 3 * heads * D) fused projections -> query, key, value (B, heads, 1, D), query and key rotated."""
    batch, heads = qkv.shape[0], qkv.shape[-1] // (3 * head_dim)
    if head_dim % 32 == 0 and fused_ops_apply(qkv, cos, sin):
        rotation = (cos.reshape(-1).contiguous(), sin.reshape(-1).contiguous())  # (D) each
        query, key, value = cpu_extension().split_rotate(qkv.reshape(batch, -1).contiguous(), *rotation, heads)
        return query, key, value
    query, key, value = (part.view(batch, 1, heads, head_dim).transpose(1, 2) for part in qkv.chunk(3, dim=-1))
    query, key = apply_rotary_pos_emb(query, key, cos, sin)
    return query, key, value


def swiglu(act_fn: torch.nn.Module, gate_up: Tensor) -> Tensor:
    """(..., 2F) fused gate|up projections -> act_fn(gate) * up, one fused call for SiLU on CPU."""
    width = gate_up.shape[-1]
    if isinstance(act_fn, SiLUActivation | torch.nn.SiLU) and width % 32 == 0 and fused_ops_apply(gate_up):
        return cpu_extension().swiglu(gate_up.reshape(-1, width).contiguous()).view(*gate_up.shape[:-1], width // 2)
    gate, up = gate_up.chunk(2, -1)
    return act_fn(gate) * up


def layer_weights(core: LlamaModel) -> list[LayerWeights]:
    """The fused (and on CPU prepacked) weights of every layer, rebuilt when any parameter changed."""
    return _prepared(core, list(core.layers.parameters()), lambda: [_fuse(layer) for layer in core.layers])


def head_logits(head: torch.nn.Linear, first: int, count: int, hidden: Tensor) -> Tensor:
    """(..., H) hidden -> (..., count) logits of the head's outputs first .. first + count - 1 (sampling's
    range), with those rows prepacked once (rebuilt when the weight changed)."""
    weight = _prepared(head, [head.weight], lambda: pack(head.weight[first : first + count]), (first, count))
    return linear(hidden, weight, None)


def _prepared(owner: torch.nn.Module, parameters: list[Tensor], build: Callable[[], Any], extra: tuple = ()) -> Any:
    """`build()`, remembered per `owner` until a parameter's storage, version or dtype (or `extra`) changes."""
    identity = (*((p.data_ptr(), p._version, p.dtype) for p in parameters), *extra)
    cached = _PACKED.get(owner)
    if cached is None or cached[0] != identity:
        cached = (identity, build())
        _PACKED[owner] = cached
    return cached[1]


def _fuse(layer: torch.nn.Module) -> LayerWeights:
    attention, mlp = layer.self_attn, layer.mlp
    qkv, o = (attention.q_proj, attention.k_proj, attention.v_proj), attention.o_proj
    gate_up, down = (mlp.gate_proj, mlp.up_proj), mlp.down_proj
    return LayerWeights(pack(torch.cat([m.weight for m in qkv])), _cat_bias(qkv), pack(o.weight), o.bias,
                        pack(torch.cat([m.weight for m in gate_up])), _cat_bias(gate_up), pack(down.weight),
                        down.bias)


def _cat_bias(modules: tuple[torch.nn.Linear, ...]) -> Tensor | None:
    return None if modules[0].bias is None else torch.cat([m.bias for m in modules])


def pack(weight: Tensor) -> Tensor | PackedBf16Weight:
    """(out, in) weight -> prepacked on CPU (for the bf16 linear kernel where it applies, else for oneDNN);
    elsewhere the weight itself, detached (no copy)."""
    weight = weight.detach().contiguous()
    if packs_for_bf16_kernel(weight):
        return PackedBf16Weight(weight)
    if weight.device.type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)
    return weight


def linear(x: Tensor, weight: Tensor | PackedBf16Weight, bias: Tensor | None) -> Tensor:
    """`F.linear` for a plain or a prepacked (`pack`) weight."""
    if isinstance(weight, PackedBf16Weight):
        out = bf16_linear(x, weight)
        return out if bias is None else out + bias
    if weight.is_mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def attend(query: Tensor, stored: SplitLayer, scale: float) -> Tensor:
    """Softmax attention of (B, heads, 1, D) queries over every cached token -> (B, 1, heads * D).

    On CPU this is one call of the hand-written kernel (`transformer/cpu_kernels.py`). Elsewhere
    each part's scores and weighted values come from batched matmuls over contiguous (rows * heads, L, D)
    views; a part shared by groups of r rows is read once for the r queries of each group. The parts
    are merged with their log-sum-exp, exactly as one softmax over all keys would.
    """
    batch, heads, _, dim = query.shape
    parts = stored.parts()
    all_keys, all_values, shares = (list(column) for column in zip(*parts))
    if kernel_applies(query, all_keys + all_values):
        kernel = decode_attention_kernel()
        return kernel(query.view(batch, heads, dim), all_keys, all_values, shares, scale).view(batch, 1, -1)
    rows_first = query.reshape(batch, heads, dim)
    scores = []
    for keys, _, share in parts:
        q = _to_groups(rows_first, share)  # (B / share * heads, share, D)
        scores.append(torch.bmm(q, keys.flatten(0, 1).transpose(1, 2)).float() * scale)  # (groups * heads, share, L)
    top = torch.stack([_to_rows(s.amax(-1), batch, heads) for s in scores]).amax(0)  # (B, heads)
    total = torch.zeros_like(top)
    output = torch.zeros(batch, heads, dim, device=query.device)
    for s, (_, values, share) in zip(scores, parts):
        weights = torch.exp(s - _to_groups(top.unsqueeze(-1), share))
        total = total + _to_rows(weights.sum(-1), batch, heads)
        output = output + _to_rows(torch.bmm(weights.to(values.dtype), values.flatten(0, 1)).float(), batch, heads)
    return (output / total.unsqueeze(-1)).to(query.dtype).view(batch, 1, heads * dim)


def _to_groups(per_row: Tensor, share: int) -> Tensor:
    """(B, heads, X) -> (B / share * heads, share, X): the rows of each group of `share` side by side, per head."""
    batch, heads, width = per_row.shape
    return per_row.view(batch // share, share, heads, width).transpose(1, 2).reshape(-1, share, width)


def _to_rows(grouped: Tensor, batch: int, heads: int) -> Tensor:
    """(B / share * heads, share[, X]) -> (B, heads[, X]): the inverse of `_to_groups`."""
    share = grouped.shape[1]
    shaped = grouped.view(batch // share, heads, share, *grouped.shape[2:]).transpose(1, 2)
    return shaped.reshape(batch, heads, *grouped.shape[2:])
