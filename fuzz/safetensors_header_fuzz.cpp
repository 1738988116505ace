// Fuzzes SafeTensorsFile (src/core/safetensors.cpp): the input is a whole .safetensors file
// (8-byte little-endian header length, JSON header, data section). A file the parser accepts
// must hold together: every tensor lies inside the data section, and every float tensor can be
// viewed and read completely (ASan checks the reads stay inside the mapping).
#include <cstring>

#include "core/safetensors.h"
#include "fuzz_util.h"

using namespace zimage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch() / "input.safetensors";
  fuzz::write_file(path, fuzz::as_view(data, size));
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    SafeTensorsFile f(path);
    ZIMAGE_FUZZ_CHECK(f.file_size() == size);
    for (auto& [name, ti] : f.tensors()) {
      ZIMAGE_FUZZ_CHECK(ti.begin <= ti.end && ti.end <= size);
      ZIMAGE_FUZZ_EXPECT_ERRORS({  // get() refuses non-float dtypes with an Error
        Tensor t = f.get(name);
        ZIMAGE_FUZZ_CHECK(uint64_t(t.nbytes()) == ti.end - ti.begin);
        fuzz::touch(t.raw(), t.nbytes());
      });
    }
  });
  return 0;
}
