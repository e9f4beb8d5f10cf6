// AVX-512 helpers shared by the CPU kernels: 16 fp32 lanes loaded from and stored to fp32 or bf16, and exp.
#ifndef IVIDEOGPT_SIMD_H  // also prepended to the sources by cpu_kernels.py, so a guard, not #pragma once
#define IVIDEOGPT_SIMD_H

#include <torch/extension.h>
#include <immintrin.h>

#include <cstdint>

constexpr int64_t kLanes = 16;  // fp32 lanes of a 512-bit register

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }

inline __m512 load16(const at::BFloat16* p) {  // bf16 -> fp32 is a 16-bit shift
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

inline void store16(float* p, __m512 x) { _mm512_storeu_ps(p, x); }

inline void store16(at::BFloat16* p, __m512 x) {  // fp32 -> bf16, rounding to nearest even
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16)));
}

// x as T holds it: rounded to bf16 for bf16 (where HF's bf16 modules round an intermediate), unchanged for fp32.
template <typename T>
inline __m512 rounded_as(__m512 x) {
  alignas(64) T stored[kLanes];
  store16(stored, x);
  return load16(stored);
}

// exp(x), x clamped to [-87, 88] (fp32's range): x = n ln2 + r, exp(r) by Cephes' polynomial, times 2^n.
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.f)), _mm512_set1_ps(88.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

// f(T{}) for a float32 or bfloat16 tensor's element type T.
template <typename F>
void with_element_type(const torch::Tensor& x, F&& f) {
  if (x.scalar_type() == at::kBFloat16) {
    f(at::BFloat16{});
  } else {
    f(float{});
  }
}

#endif  // IVIDEOGPT_SIMD_H
