// A bf16 token step's Llama layers in one call: the same kernels, in the same order, as the Python
// loop of `decode.run_layers` with every CPU kernel applying, so the results are identical.
//
// Why hand-written: with the kernels in place, a token step of transformer_small at batch 16 spent
// ~0.25 ms per layer in Python wrappers and dispatch between them (3.7-4.1 ms for the same 12-layer
// step with 64-wide layers, where the arithmetic vanishes; benchmarks/README.md).
// Follows decode_attention.cpp, decode_linear.cpp and decode_ops.cpp in one translation unit.
#include <torch/extension.h>

#include <vector>

// hidden (B, H) -> (B, H) after every layer and the final norm. Per layer l: norms[2l], norms[2l + 1]
// (input and post-attention RMSNorm weights), weights[4l .. 4l + 3] the packed q|k|v, o, gate|up and
// down weights with columns[4l .. 4l + 3] outputs; its new key and value go into key_slots[l] and
// value_slots[l] ((B, heads, 1, D) views of its cache), then it attends over keys[l] / values[l] /
// shares[l] (its cache's parts, the slots included). norms[2L] is the final norm's weight.
torch::Tensor decode_layers(torch::Tensor hidden, std::vector<torch::Tensor> norms, std::vector<torch::Tensor> weights,
                            std::vector<int64_t> columns, torch::Tensor cos, torch::Tensor sin, int64_t heads,
                            std::vector<torch::Tensor> key_slots, std::vector<torch::Tensor> value_slots,
                            std::vector<std::vector<torch::Tensor>> keys, std::vector<std::vector<torch::Tensor>> values,
                            std::vector<std::vector<int64_t>> shares, double scale, double eps) {
  const size_t layers = key_slots.size();
  TORCH_CHECK(hidden.dim() == 2, "hidden must be (B, H)");
  TORCH_CHECK(norms.size() == 2 * layers + 1 && weights.size() == 4 * layers && columns.size() == 4 * layers &&
                  value_slots.size() == layers && keys.size() == layers && values.size() == layers &&
                  shares.size() == layers,
              "expected 2 norms, 4 weights, a key and a value slot and the cache parts of every layer");
  const int64_t batch = hidden.size(0), dim = cos.size(0);
  torch::Tensor x = hidden;
  for (size_t l = 0; l < layers; ++l) {
    const torch::Tensor qkv = bf16_linear(rms_norm(x, norms[2 * l], eps), weights[4 * l], columns[4 * l]);
    const std::vector<torch::Tensor> rotated = split_rotate(qkv, cos, sin, heads);  // (B, heads, 1, D) each
    key_slots[l].copy_(rotated[1]);
    value_slots[l].copy_(rotated[2]);
    const torch::Tensor attended = attend_parts(rotated[0].view({batch, heads, dim}), keys[l], values[l], shares[l],
                                                scale);
    x = x + bf16_linear(attended.view({batch, heads * dim}), weights[4 * l + 1], columns[4 * l + 1]);
    const torch::Tensor gate_up = bf16_linear(rms_norm(x, norms[2 * l + 1], eps), weights[4 * l + 2],
                                              columns[4 * l + 2]);
    x = x + bf16_linear(swiglu(gate_up), weights[4 * l + 3], columns[4 * l + 3]);
  }
  return rms_norm(x, norms[2 * layers], eps);
}
