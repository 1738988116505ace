// The float math of torch's CPU normal sampler, lane by lane.
//
// For float tensors of >= 16 contiguous elements torch (x86 builds, AVX2 and AVX512 CPU
// capability) runs normal_fill_16_AVX2: Box-Muller over blocks of 16 uniforms with the
// Cephes-derived vector log and sincos of avx_mathfun.h, compiled by GCC with FMA contraction.
// The functions here repeat those lane operations one by one in scalar IEEE float arithmetic,
// fusing exactly the multiply-adds that torch's binary fuses (read from its disassembly), so the
// results are bit-identical.
#pragma once

namespace zimage::random {

// log(x) as avx_mathfun's log256_ps computes it (x <= 0 gives NaN).
float cephes_logf(float x);
// sin(x) and cos(x) as avx_mathfun's sincos256_ps computes them.
void cephes_sincosf(float x, float* s, float* c);

// One block of torch's normal_fill_16: data[0..16) holds uniforms in [0, 1) on entry and
// normals on exit: data[j] = r*cos(t), data[j+8] = r*sin(t) with r = sqrt(-2 log(1 - data[j])),
// t = 2*pi*data[j+8], then scaled by std and shifted by mean.
void normal_fill_16(float* data, float mean, float std);

}  // namespace zimage::random
