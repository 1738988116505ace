// float8_e4m3fn (safetensors "F8_E4M3"): 1 sign, 4 exponent (bias 7), 3 mantissa bits, no
// infinities, 0x7F/0xFF are NaN. Weights in it stay fp8 in the mapping; the GEMM upcasts tiles of
// rows (ops/quantized.h), other tensors are upcast at load.
#pragma once
#include <cstdint>

namespace zimage::fp8 {

// Marks an F8_E4M3 tensor in QuantizedTensor / ops::QuantizedMatrix (`ggml_type`). Not a ggml
// type id: no GGUF file can declare it (gguf::type_traits does not know it).
constexpr uint32_t kE4M3Type = 0xF8E4F8E4u;

// Bit-exact torch `.to(torch.float32)` (c10's fp8e4m3fn_to_fp32_value): every finite code is
// exact; the NaN codes give 0x7FF00000 / 0xFFF00000, as torch does.
float e4m3_to_f32(uint8_t code);
// dst[i] = f32(src[i]), times *scale in float32 when scale is not null (w.float() * scale).
void e4m3_to_f32(const uint8_t* src, float* dst, int64_t n, const float* scale = nullptr);

}  // namespace zimage::fp8
