// Softmax attention of one query token per (row, head) over a KV cache held in parts, on CPU with AVX-512.
//
// Why hand-written: a rollout step attends a single query to every cached token, which is a
// matrix-vector product per head. PyTorch runs it as batched matmuls that read the bf16 cache at
// ~16 GB/s on this project's 2-core machine (bf16 bmm output is also rounded before the softmax);
// this kernel reads each key and value once, in one pass, at the machine's read speed (benchmarks/README.md),
// with scores, softmax and weighted sum kept in fp32.
//
// Parts are (stored rows, heads, tokens, D) with unit stride along D, keys laid out as their values;
// any other strides. Part p's stored row r serves batch rows r * shares[p] ... (r + 1) * shares[p] - 1
// (forks share a context).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "simd.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kMaxChunks = 16;  // head dims up to 256

// Lane j = the sum of v[j]'s lanes: 16 horizontal sums in 15 shuffle-and-add pairs, against ~8 ops
// each one by one (the per-token sum was the kernel's largest cost once keys sit in cache).
inline __m512 sum_each(const __m512* v) {
  __m512 halves[8], quarters[4], eighths[2];
  for (int i = 0; i < 8; ++i) {  // lanes 0-7: v[2i]'s two 256-bit halves added, lanes 8-15: v[2i+1]'s
    halves[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                              _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
  }
  for (int i = 0; i < 4; ++i) {  // one 128-bit lane per vector
    quarters[i] = _mm512_add_ps(_mm512_shuffle_f32x4(halves[2 * i], halves[2 * i + 1], 0x88),
                                _mm512_shuffle_f32x4(halves[2 * i], halves[2 * i + 1], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {  // two floats per vector and 128-bit lane
    eighths[i] = _mm512_add_ps(_mm512_shuffle_ps(quarters[2 * i], quarters[2 * i + 1], 0x88),
                               _mm512_shuffle_ps(quarters[2 * i], quarters[2 * i + 1], 0xDD));
  }
  const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(eighths[0], eighths[1], 0x88),
                                    _mm512_shuffle_ps(eighths[0], eighths[1], 0xDD));
  // The shuffles leave vector j's sum in lane 4 * (j % 4) + j / 4, a 4x4 transpose: undo it.
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, sums);
}

// One (row, head)'s running softmax: the largest score so far, the sum of exp(score - top), and the
// weighted values, rescaled whenever `top` grows (the online softmax of flash attention).
struct Running {
  float top = -std::numeric_limits<float>::infinity();
  float total = 0.f;
  __m512 acc[kMaxChunks];
};

// Up to 16 consecutive tokens of one part: their scores, then their values, so each thread reads
// keys and values as two interleaved streams and the scores never leave registers and L1.
template <int64_t Chunks, typename T>
inline void attend_block(const __m512* query, const T* keys, const T* values, int64_t stride, int64_t tokens,
                         Running& state) {
  __m512 q[Chunks];  // in registers: the head dim is a compile-time constant, so these loops unroll
  for (int64_t c = 0; c < Chunks; ++c) q[c] = query[c];
  __m512 dots[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) {
    if (j >= tokens) {
      dots[j] = _mm512_setzero_ps();
      continue;
    }
    const T* key = keys + j * stride;
    dots[j] = _mm512_mul_ps(q[0], load16(key));
    for (int64_t c = 1; c < Chunks; ++c) dots[j] = _mm512_fmadd_ps(q[c], load16(key + c * kLanes), dots[j]);
  }
  const __mmask16 valid = tokens == kLanes ? 0xffff : static_cast<__mmask16>((1u << tokens) - 1);
  const __m512 scores = sum_each(dots);
  alignas(64) float block[kLanes];
  const float top = std::max(state.top, _mm512_mask_reduce_max_ps(valid, scores));
  if (top > state.top) {  // exp16 clamps -inf (the first block) to exp(-87) ~ 0
    const __m512 shrink = exp16(_mm512_set1_ps(state.top - top));
    for (int64_t c = 0; c < Chunks; ++c) state.acc[c] = _mm512_mul_ps(state.acc[c], shrink);
    state.total *= _mm512_cvtss_f32(shrink);
    state.top = top;
  }
  const __m512 weights = _mm512_maskz_mov_ps(valid, exp16(_mm512_sub_ps(scores, _mm512_set1_ps(top))));
  state.total += _mm512_reduce_add_ps(weights);
  _mm512_store_ps(block, weights);
  for (int64_t j = 0; j < tokens; ++j) {
    const __m512 weight = _mm512_set1_ps(block[j]);
    const T* value = values + j * stride;
    for (int64_t c = 0; c < Chunks; ++c) {
      state.acc[c] = _mm512_fmadd_ps(weight, load16(value + c * kLanes), state.acc[c]);
    }
  }
}

template <typename T, int64_t Chunks>
void attend(const torch::Tensor& query, const std::vector<torch::Tensor>& keys,
            const std::vector<torch::Tensor>& values, const std::vector<int64_t>& shares, float scale,
            torch::Tensor& out) {
  const int64_t batch = query.size(0), heads = query.size(1);
  // One task per (group of rows sharing the widest-shared part, head). Within a task, rows that share
  // a stored row go through each block of 16 tokens together, so the block is read from memory once
  // and from L1 for the others: n forks of one context cost about one read of that context.
  const int64_t group = *std::max_element(shares.begin(), shares.end());
  const T* queries = query.data_ptr<T>();
  T* outputs = out.data_ptr<T>();
  at::parallel_for(0, batch / group * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<__m512> q(group * Chunks);
    std::vector<Running> states(group);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t first_row = task / heads * group, head = task % heads;
      for (int64_t r = 0; r < group; ++r) {
        const T* q_row = queries + ((first_row + r) * heads + head) * Chunks * kLanes;
        for (int64_t c = 0; c < Chunks; ++c) {
          q[r * Chunks + c] = _mm512_mul_ps(load16(q_row + c * kLanes), _mm512_set1_ps(scale));
          states[r].acc[c] = _mm512_setzero_ps();
        }
        states[r].top = -std::numeric_limits<float>::infinity();
        states[r].total = 0.f;
      }
      for (size_t p = 0; p < keys.size(); ++p) {
        const torch::Tensor& k = keys[p];
        const int64_t share = shares[p], tokens = k.size(2), stride = k.stride(2);
        for (int64_t r0 = 0; r0 < group; r0 += share) {  // rows r0 .. r0 + share - 1 read one stored row
          const int64_t offset = (first_row + r0) / share * k.stride(0) + head * k.stride(1);
          const T* key_base = k.data_ptr<T>() + offset;
          const T* value_base = values[p].data_ptr<T>() + offset;
          for (int64_t t = 0; t < tokens; t += kLanes) {
            for (int64_t r = r0; r < r0 + share; ++r) {
              attend_block<Chunks>(&q[r * Chunks], key_base + t * stride, value_base + t * stride, stride,
                                   std::min(kLanes, tokens - t), states[r]);
            }
          }
        }
      }
      for (int64_t r = 0; r < group; ++r) {
        const __m512 inverse = _mm512_set1_ps(1.f / states[r].total);
        T* out_row = outputs + ((first_row + r) * heads + head) * Chunks * kLanes;
        for (int64_t c = 0; c < Chunks; ++c) store16(out_row + c * kLanes, _mm512_mul_ps(states[r].acc[c], inverse));
      }
    }
  });
}

// attend<T, Chunks> for the runtime head dim / 16 (1 .. kMaxChunks).
template <typename T, int64_t Chunks = 1>
void attend_any_dim(int64_t chunks, const torch::Tensor& query, const std::vector<torch::Tensor>& keys,
                    const std::vector<torch::Tensor>& values, const std::vector<int64_t>& shares, float scale,
                    torch::Tensor& out) {
  if constexpr (Chunks <= kMaxChunks) {
    if (chunks == Chunks) return attend<T, Chunks>(query, keys, values, shares, scale, out);
    attend_any_dim<T, Chunks + 1>(chunks, query, keys, values, shares, scale, out);
  }
}

}  // namespace

// query (B, heads, D); keys[p], values[p] (B / shares[p], heads, L_p, D) -> (B, heads, D) in the query's dtype.
torch::Tensor attend_parts(torch::Tensor query, std::vector<torch::Tensor> keys, std::vector<torch::Tensor> values,
                           std::vector<int64_t> shares, double scale) {
  TORCH_CHECK(query.dim() == 3 && query.device().is_cpu(), "query must be a (B, heads, D) CPU tensor");
  TORCH_CHECK(query.scalar_type() == at::kFloat || query.scalar_type() == at::kBFloat16, "float32 or bfloat16 only");
  const int64_t batch = query.size(0), heads = query.size(1), dim = query.size(2);
  TORCH_CHECK(dim % kLanes == 0 && dim / kLanes <= kMaxChunks, "head dim must be a multiple of 16, at most 256");
  TORCH_CHECK(!keys.empty() && keys.size() == values.size() && keys.size() == shares.size(), "one share per part");
  int64_t group = 1, tokens = 0;
  for (size_t p = 0; p < keys.size(); ++p) {
    tokens += keys[p].size(2);
    for (const torch::Tensor* part : {&keys[p], &values[p]}) {
      TORCH_CHECK(part->scalar_type() == query.scalar_type(), "cache and query dtypes differ");
      TORCH_CHECK(part->dim() == 4 && part->size(1) == heads && part->size(3) == dim && part->stride(3) == 1,
                  "parts must be (rows, heads, tokens, D) with contiguous D");
      TORCH_CHECK(part->size(0) * shares[p] == batch && part->size(2) == keys[p].size(2),
                  "part rows times share != batch");
    }
    TORCH_CHECK(keys[p].strides() == values[p].strides(), "a part's keys and values must be laid out alike");
    group = std::max(group, shares[p]);
  }
  TORCH_CHECK(tokens > 0, "the cache is empty");
  for (int64_t share : shares) TORCH_CHECK(group % share == 0, "each part's share must divide the largest");
  torch::Tensor q = query.contiguous();
  torch::Tensor out = torch::empty_like(q);
  with_element_type(q, [&](auto element) {
    attend_any_dim<decltype(element)>(dim / kLanes, q, keys, values, shares, static_cast<float>(scale), out);
  });
  return out;
}
