"""The rollout's CPU kernels against the PyTorch / oneDNN ops they replace, on one token step's shapes.

    python benchmarks/cpu_kernels.py --quick     # smoke run, ~30 s on 2 cores (plus the kernels' first build)
    python benchmarks/cpu_kernels.py             # transformer_small, batch 16, 585 cached tokens

Each row times the 12 layers' worth of one piece of a token step (`transformer/decode.py`), the
kernel and its baseline alternated in one process (medians over repeats), with random weights of
`transformer_small`'s shapes:
- linears: q|k|v, o, gate|up and down of 12 layers plus the future-code head, bf16; the kernel
  (`decode_linear.cpp`, AVX512_BF16 only) against oneDNN's prepacked linear; FLOP/s as a fraction
  of the bf16 matmul peak measured in the same run;
- attention: one query per row over a prefix and a tail in the cache; the kernel
  (`decode_attention.cpp`) against batched matmuls per part; bytes/s as a fraction of the read
  bandwidth measured in the same run;
- small ops: two RMSNorms, the q/k/v split with the rotary embedding and SwiGLU per layer; the fused
  ops (`decode_ops.cpp`) against HF's modules;
- token steps: a frame's 17 bf16 token steps (`decode_step`, from a copy of a filled cache), every
  layer in one C++ call (`decode_layers.cpp`, AVX512_BF16 only) against the Python loop over the
  same kernels.
The weights (~240 MB) and the cache (~340 MB) are larger than any cache level, as in a rollout.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from unittest import mock

import torch
from _common import add_common_args, markdown_table, matmul_peak, median_seconds, read_bandwidth, setup
from transformers.activations import SiLUActivation
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ivideogpt.transformer import GrowingCache, decode, transformer_small
from ivideogpt.transformer.cache import SplitLayer
from ivideogpt.transformer.cpu_kernels import PackedBf16Weight, bf16_linear_available, cpu_extension

HIDDEN, FFN, HEADS, LAYERS, CODES = 768, 3072, 12, 12, 8192  # transformer_small, tokenizer_64's codebook
FRAME_TOKENS = 17  # a future frame's slot token and 4x4 codes
Paths = dict[str, Callable[[], object]]  # a piece's path name -> one run of it over every layer


def alternate(pair: Paths, seconds: float, rounds: int) -> dict[str, float]:
    """Median seconds of each callable, measured in `rounds` alternating turns of ~seconds / rounds."""
    turns: dict[str, list[float]] = {name: [] for name in pair}
    for _ in range(rounds):
        for name, fn in pair.items():
            turns[name].append(median_seconds(fn, torch.device("cpu"), seconds / rounds))
    return {name: sorted(times)[len(times) // 2] for name, times in turns.items()}


def linears(batch: int, layers: int) -> tuple[Paths, float]:
    """Both paths over every linear of `layers` layers and the head; their FLOPs."""
    shapes = [(3 * HIDDEN, HIDDEN), (HIDDEN, HIDDEN), (2 * FFN, HIDDEN), (HIDDEN, FFN)] * layers + [(CODES, HIDDEN)]
    weights = [torch.randn(n, k, dtype=torch.bfloat16) * 0.02 for n, k in shapes]
    inputs = {k: torch.randn(batch, 1, k, dtype=torch.bfloat16) for _, k in shapes}
    kernel = [PackedBf16Weight(w) for w in weights]
    onednn = [torch.ops.mkldnn._reorder_linear_weight(w, decode.PACK_ROWS) for w in weights]

    def run(packed: list) -> Callable[[], None]:
        return lambda: [decode.linear(inputs[w.shape[1]], p, None) for w, p in zip(weights, packed)]

    return {"kernel": run(kernel), "oneDNN": run(onednn)}, sum(2 * batch * n * k for n, k in shapes)


def attention(batch: int, layers: int, tokens: int, dtype: torch.dtype) -> tuple[Paths, float]:
    """Both paths over `layers` caches of `tokens` (a folded prefix and a 21-token tail); bytes read."""
    dim = HIDDEN // HEADS
    caches = []
    for _ in range(layers):
        layer = SplitLayer()
        for count in (tokens - 21, 21):  # the prefix arrives at once (a prefill), the tail stays a view
            layer.append(*(torch.randn(batch, HEADS, count, dim, dtype=dtype) for _ in range(2)))
        caches.append(layer)
    query = torch.randn(batch, HEADS, 1, dim, dtype=dtype)

    def kernel() -> None:
        for layer in caches:
            decode.attend(query, layer, dim**-0.5)

    def matmuls() -> None:
        with mock.patch.object(decode, "kernel_applies", lambda *args: False):
            kernel()

    itemsize = torch.finfo(dtype).bits // 8
    return {"kernel": kernel, "batched matmuls": matmuls}, 2 * layers * batch * HIDDEN * tokens * itemsize


def small_ops(batch: int, layers: int) -> Paths:
    """Both paths over each layer's two RMSNorms, q/k/v split with rotation, and SwiGLU (bf16)."""
    dim, bf16 = HIDDEN // HEADS, torch.bfloat16
    norm = LlamaRMSNorm(HIDDEN).to(bf16)
    hidden, qkv = torch.randn(batch, 1, HIDDEN, dtype=bf16), torch.randn(batch, 1, 3 * HIDDEN, dtype=bf16)
    gate_up, act = torch.randn(batch, 1, 2 * FFN, dtype=bf16), SiLUActivation()
    cos, sin = torch.rand(1, 1, dim, dtype=bf16), torch.rand(1, 1, dim, dtype=bf16)

    def fused() -> None:
        for _ in range(layers):
            decode.rms_norm(norm, hidden)
            decode.split_rotate(qkv, cos, sin, dim)
            decode.rms_norm(norm, hidden)
            decode.swiglu(act, gate_up)

    def hf_ops() -> None:
        with mock.patch.object(decode, "fused_ops_apply", lambda *tensors: False):
            fused()

    return {"fused": fused, "HF ops": hf_ops}


def layer_loop(batch: int, layers: int, tokens: int) -> Paths:
    """Both paths of a frame's bf16 token steps, `layers` layers of transformer_small, after `tokens` cached."""
    model = transformer_small(num_layers=layers).build().to(torch.bfloat16).eval()
    cache, bf16 = GrowingCache(layers), torch.bfloat16
    with torch.inference_mode():
        model.backbone(torch.randn(batch, tokens, HIDDEN, dtype=bf16), 0, cache)
    embeds = torch.randn(batch, 1, HIDDEN, dtype=bf16)

    def in_cpp() -> None:
        with torch.inference_mode():
            frame = cache.copy()
            for position in range(tokens, tokens + FRAME_TOKENS):
                model.decode_step(embeds, position, frame)

    def in_python() -> None:
        with mock.patch.object(decode, "cpu_layer_loop", lambda *args: None):
            in_cpp()

    return {"C++ loop": in_cpp, "Python loop": in_python}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=585,
                        help="cached tokens (2 context + 8 future frames: 585 at the end)")
    args = parser.parse_args()
    setup(args, "CPU kernels")
    if cpu_extension() is None:
        raise SystemExit("the CPU kernels are not available here (see the warning above)")
    layers, seconds, rounds = (2, 0.5, 2) if args.quick else (LAYERS, 4.0, 4)
    cpu = torch.device("cpu")
    peak, bandwidth = matmul_peak(torch.bfloat16, cpu, seconds / 2), read_bandwidth(cpu, seconds / 2)
    print(f"this machine: bf16 matmul peak (2048x2048 mm) {peak / 1e9:.0f} GFLOP/s; "
          f"memory read {bandwidth / 1e9:.1f} GB/s")
    print(f"batch {args.batch}, {layers} layers of transformer_small, {args.tokens} cached tokens\n")
    rows = []
    if bf16_linear_available():
        pair, flops = linears(args.batch, layers)
        times = alternate(pair, seconds, rounds)
        for name, t in times.items():
            rows.append(["linears + head, bf16", name, f"{t * 1e3:.2f}", f"{flops / t / 1e9:.0f} GFLOP/s",
                         f"{flops / t / peak:.0%} of peak", f"{times['oneDNN'] / t:.2f}x"])
    else:
        print("no AVX512_BF16 here: the bf16 linears use oneDNN (no kernel row)")
    for dtype in (torch.bfloat16, torch.float32):
        pair, nbytes = attention(args.batch, layers, args.tokens, dtype)
        times = alternate(pair, seconds, rounds)
        for name, t in times.items():
            rows.append([f"attention, {str(dtype).removeprefix('torch.')}", name, f"{t * 1e3:.2f}",
                         f"{nbytes / t / 1e9:.1f} GB/s", f"{nbytes / t / bandwidth:.0%} of read",
                         f"{times['batched matmuls'] / t:.2f}x"])
    times = alternate(small_ops(args.batch, layers), seconds, rounds)
    for name, t in times.items():
        rows.append(["small ops, bf16", name, f"{t * 1e3:.2f}", "-", "-", f"{times['HF ops'] / t:.2f}x"])
    if bf16_linear_available():
        times = alternate(layer_loop(args.batch, layers, args.tokens), seconds, rounds)
        for name, t in times.items():
            speed_up = f"{times['Python loop'] / t:.2f}x"
            rows.append(["a frame's token steps, bf16", name, f"{t * 1e3:.2f}", "-", "-", speed_up])
    print(markdown_table(["piece (all layers)", "path", "ms", "rate", "of the machine", "speed-up"], rows))


if __name__ == "__main__":
    main()
