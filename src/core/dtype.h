// DType and the bit-exact conversions are public (include/zimage/dtype.h) because zimage::Tensor
// is. This path stays for the engine's own sources.
#pragma once
#include "zimage/dtype.h"
