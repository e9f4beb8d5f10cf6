// x @ W^T for a few rows of bf16 activations against a prepacked bf16 weight, on CPUs with AVX512_BF16.
//
// Why hand-written: a rollout's token step multiplies 16 rows by every layer weight. oneDNN's packed
// bf16 linear ran those at ~60% of this project's 2-core machine's bf16 peak once the weights stream
// from memory (14 ms of a ~33 ms token step for transformer_small); this kernel, which reads each
// weight once as one sequential stream and keeps 8 rows x 48 columns of fp32 sums in registers,
// ran them at ~90% (benchmarks/README.md).
//
// Packed layout (`cpu_kernels.pack_bf16_weight`): W (N, K) padded with zero rows to G * 48, as
// (G, K / 2, 48, 2): for each group of 48 output columns, each pair of inputs k, k + 1 holds the 48
// columns' two weights side by side, which is the operand order of `vdpbf16ps`.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>

namespace {

constexpr int64_t kBlock = 16;               // output columns per register
constexpr int64_t kBlocks = 3;               // registers per row: a group of 48 columns
constexpr int64_t kGroup = kBlock * kBlocks;
constexpr int64_t kRows = 8;                 // rows per tile: 8 x 3 accumulators of the 32 registers

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// Rows x 48 outputs from the K / 2 input pairs of `a` (rows `a_pairs` apart) and one packed group.
// Columns at or past `columns` (the padding of the last group) are not written.
template <int64_t Rows>
BF16_TARGET void tile(const int32_t* a, int64_t a_pairs, const int32_t* group, int64_t pairs, at::BFloat16* out,
                      int64_t out_stride, int64_t columns) {
  __m512 acc[Rows][kBlocks];
  for (int64_t r = 0; r < Rows; ++r)
    for (int64_t c = 0; c < kBlocks; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    const int32_t* weights = group + p * kGroup;
    __m512i w[kBlocks];
    for (int64_t c = 0; c < kBlocks; ++c) w[c] = _mm512_loadu_si512(weights + c * kBlock);
    for (int64_t r = 0; r < Rows; ++r) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(a[r * a_pairs + p]);  // row r's inputs 2p, 2p + 1
      for (int64_t c = 0; c < kBlocks; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], x, (__m512bh)w[c]);
    }
  }
  for (int64_t c = 0; c < kBlocks; ++c) {
    const int64_t valid = std::clamp<int64_t>(columns - c * kBlock, 0, kBlock);
    const __mmask16 mask = valid == kBlock ? 0xffff : static_cast<__mmask16>((1u << valid) - 1);
    for (int64_t r = 0; r < Rows; ++r) {
      _mm256_mask_storeu_epi16(out + r * out_stride + c * kBlock, mask, (__m256i)_mm512_cvtneps_pbh(acc[r][c]));
    }
  }
}

// tile<Rows> for the runtime row count 1 .. kRows (the last tile of a batch that is not a multiple of 8).
template <int64_t Rows = 1>
BF16_TARGET void tile_any_rows(int64_t rows, const int32_t* a, int64_t a_pairs, const int32_t* group, int64_t pairs,
                               at::BFloat16* out, int64_t out_stride, int64_t columns) {
  if constexpr (Rows <= kRows) {
    if (rows == Rows) return tile<Rows>(a, a_pairs, group, pairs, out, out_stride, columns);
    tile_any_rows<Rows + 1>(rows, a, a_pairs, group, pairs, out, out_stride, columns);
  }
}

// Groups [begin, end) for every row: a function of its own, because a lambda would not inherit the
// target attribute the intrinsics need.
BF16_TARGET void run_groups(int64_t begin, int64_t end, const int32_t* a, int64_t rows, int64_t pairs,
                            const int32_t* packed, at::BFloat16* out, int64_t columns) {
  for (int64_t g = begin; g < end; ++g) {
    for (int64_t r0 = 0; r0 < rows; r0 += kRows) {  // each later tile reads the group from L2
      tile_any_rows(std::min(kRows, rows - r0), a + r0 * pairs, pairs, packed + g * pairs * kGroup, pairs,
                    out + r0 * columns + g * kGroup, columns, columns - g * kGroup);
    }
  }
}

}  // namespace

bool has_bf16_dot() { return __builtin_cpu_supports("avx512bf16"); }

// x (M, K) bf16, packed (G, K / 2, 48, 2) bf16 -> (M, columns) bf16, fp32 sums rounded to nearest even.
torch::Tensor bf16_linear(torch::Tensor x, torch::Tensor packed, int64_t columns) {
  TORCH_CHECK(has_bf16_dot(), "this CPU lacks AVX512_BF16");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kBFloat16 && x.device().is_cpu(), "x must be (M, K) bf16 on CPU");
  TORCH_CHECK(packed.dim() == 4 && packed.scalar_type() == at::kBFloat16 && packed.is_contiguous() &&
              packed.size(2) == kGroup && packed.size(3) == 2,
              "packed must be a contiguous (G, K / 2, 48, 2) bf16 weight");
  TORCH_CHECK(x.size(1) == 2 * packed.size(1), "x has ", x.size(1), " inputs, the weight ", 2 * packed.size(1));
  TORCH_CHECK(columns > (packed.size(0) - 1) * kGroup && columns <= packed.size(0) * kGroup, "columns out of range");
  const torch::Tensor input = x.contiguous();
  torch::Tensor out = torch::empty({x.size(0), columns}, x.options());
  const auto* a = reinterpret_cast<const int32_t*>(input.data_ptr<at::BFloat16>());
  const auto* weights = reinterpret_cast<const int32_t*>(packed.data_ptr<at::BFloat16>());
  at::BFloat16* o = out.data_ptr<at::BFloat16>();
  const int64_t rows = x.size(0), pairs = packed.size(1);
  at::parallel_for(0, packed.size(0), 1, [&](int64_t begin, int64_t end) {
    run_groups(begin, end, a, rows, pairs, weights, o, columns);
  });
  return out;
}
