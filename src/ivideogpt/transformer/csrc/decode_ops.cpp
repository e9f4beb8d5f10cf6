// A token step's small ops, each one call: RMSNorm, the q/k/v split with the rotary embedding, SwiGLU.
//
// Why hand-written: at batch 16 a Llama layer's elementwise work is tiny (16 x 768 values), but HF's
// modules spend it in ~40 PyTorch ops per layer (casts, pow, mean, rsqrt, slices, neg, cat, ...),
// each paying dispatch and allocation; with the hand-written linears and attention those ops and the
// Python around them were a third of a bf16 token step of transformer_small (benchmarks/README.md).
// Arithmetic is fp32, rounded once to the input's dtype where HF rounds.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <vector>

#include "simd.h"

namespace {

constexpr int64_t kRowsPerTask = 8;  // 16-row batches: one task per thread

template <typename T>
void rms_norm_rows(const T* x, const T* weight, T* out, int64_t rows, int64_t width, float eps) {
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = x + r * width;
      __m512 squares = _mm512_setzero_ps();
      for (int64_t i = 0; i < width; i += kLanes) {
        const __m512 v = load16(row + i);
        squares = _mm512_fmadd_ps(v, v, squares);
      }
      const __m512 scale = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(squares) / width + eps));
      for (int64_t i = 0; i < width; i += kLanes) {
        const __m512 normalised = rounded_as<T>(_mm512_mul_ps(load16(row + i), scale));  // as HF, before the weight
        store16(out + r * width + i, _mm512_mul_ps(load16(weight + i), normalised));
      }
    }
  });
}

// One row's head: x * cos + rotate_half(x) * sin, rotate_half(x) = (-x[D/2:], x[:D/2]).
template <typename T>
inline void rotate_head(const T* x, const T* cos, const T* sin, T* out, int64_t dim) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; i += kLanes) {
    const __m512 first = load16(x + i), second = load16(x + half + i);
    store16(out + i, _mm512_fmsub_ps(first, load16(cos + i), _mm512_mul_ps(second, load16(sin + i))));
    store16(out + half + i,
            _mm512_fmadd_ps(second, load16(cos + half + i), _mm512_mul_ps(first, load16(sin + half + i))));
  }
}

template <typename T>
void split_rotate_rows(const T* qkv, const T* cos, const T* sin, T* q, T* k, T* v, int64_t rows, int64_t heads,
                       int64_t dim) {
  const int64_t width = heads * dim;
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = qkv + r * 3 * width;
      for (int64_t h = 0; h < heads; ++h) {
        rotate_head(row + h * dim, cos, sin, q + r * width + h * dim, dim);
        rotate_head(row + width + h * dim, cos, sin, k + r * width + h * dim, dim);
      }
      std::copy(row + 2 * width, row + 3 * width, v + r * width);
    }
  });
}

template <typename T>
void swiglu_rows(const T* gate_up, T* out, int64_t rows, int64_t width) {
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* gate = gate_up + r * 2 * width;
      for (int64_t i = 0; i < width; i += kLanes) {
        const __m512 g = load16(gate + i);
        const __m512 exp_minus_g = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.f), exp_minus_g));
        const __m512 activated = rounded_as<T>(silu);  // as HF, before the product
        store16(out + r * width + i, _mm512_mul_ps(activated, load16(gate + width + i)));
      }
    }
  });
}

void check(const torch::Tensor& x, int64_t dims, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() == dims, name, " must be a contiguous CPU tensor of ",
              dims, " dims");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, name, " must be float32 or bfloat16");
}

}  // namespace

// x (M, H) -> HF's LlamaRMSNorm: weight * (x / sqrt(mean(x^2) + eps)), the normalised x rounded to x's dtype.
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor weight, double eps) {
  check(x, 2, "x");
  check(weight, 1, "weight");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && weight.size(0) == x.size(1) && x.size(1) % kLanes == 0,
              "weight must match x's dtype and width (a multiple of 16)");
  torch::Tensor out = torch::empty_like(x);
  with_element_type(x, [&](auto element) {
    using scalar_t = decltype(element);
    rms_norm_rows(x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.size(0), x.size(1),
                  static_cast<float>(eps));
  });
  return out;
}

// qkv (M, 3 * heads * D), cos and sin (D) -> [q, k, v], each (M, heads, 1, D): q and k rotated as HF's
// apply_rotary_pos_emb (in fp32, rounded once), v copied.
std::vector<torch::Tensor> split_rotate(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin, int64_t heads) {
  check(qkv, 2, "qkv");
  check(cos, 1, "cos");
  check(sin, 1, "sin");
  const int64_t dim = cos.size(0);
  TORCH_CHECK(dim % (2 * kLanes) == 0 && qkv.size(1) == 3 * heads * dim && sin.size(0) == dim,
              "qkv must be (M, 3 * heads * D), D a multiple of 32, with cos and sin (D)");
  TORCH_CHECK(cos.scalar_type() == qkv.scalar_type() && sin.scalar_type() == qkv.scalar_type(), "dtypes differ");
  const int64_t rows = qkv.size(0);
  std::vector<torch::Tensor> out;
  for (int i = 0; i < 3; ++i) out.push_back(torch::empty({rows, heads, 1, dim}, qkv.options()));
  with_element_type(qkv, [&](auto element) {
    using scalar_t = decltype(element);
    split_rotate_rows(qkv.data_ptr<scalar_t>(), cos.data_ptr<scalar_t>(), sin.data_ptr<scalar_t>(),
                      out[0].data_ptr<scalar_t>(), out[1].data_ptr<scalar_t>(), out[2].data_ptr<scalar_t>(), rows,
                      heads, dim);
  });
  return out;
}

// gate_up (M, 2F) -> (M, F): silu(gate) * up, the activation rounded to the input's dtype as HF's LlamaMLP.
torch::Tensor swiglu(torch::Tensor gate_up) {
  check(gate_up, 2, "gate_up");
  const int64_t width = gate_up.size(1) / 2;
  TORCH_CHECK(gate_up.size(1) % (2 * kLanes) == 0, "gate_up's width must be a multiple of 32");
  torch::Tensor out = torch::empty({gate_up.size(0), width}, gate_up.options());
  with_element_type(gate_up, [&](auto element) {
    using scalar_t = decltype(element);
    swiglu_rows(gate_up.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), gate_up.size(0), width);
  });
  return out;
}
