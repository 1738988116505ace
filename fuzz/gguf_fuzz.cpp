// Fuzzes the GGUF reader (src/core/gguf.cpp) and the dequantisation (src/core/gguf_dequant.cpp):
// the input is a whole .gguf file, parsed from memory. A file the reader accepts must hold
// together: the data section lies in the file, every tensor lies inside it, and every tensor of
// a supported type dequantizes completely (ASan checks every read stays inside the input).
#include <cstring>
#include <memory>

#include "core/gguf.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace zimage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A heap copy of exactly `size` bytes: a read past the end is an ASan finding.
  std::shared_ptr<uint8_t[]> buf(new uint8_t[size ? size : 1]);
  if (size) std::memcpy(buf.get(), data, size);
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    gguf::File f(buf, buf.get(), size, "input.gguf");
    ZIMAGE_FUZZ_CHECK(f.version() == 2 || f.version() == 3);
    ZIMAGE_FUZZ_CHECK(f.alignment() >= 1 && (f.alignment() & (f.alignment() - 1)) == 0);
    // Integer metadata arrays read back within the file; a tokenizer in the metadata (Qwen2Tokenizer::
    // from_gguf) is built or refused with an Error.
    for (const auto& [key, v] : f.metadata())
      if (v.type == gguf::ValueType::ARRAY)
        ZIMAGE_FUZZ_EXPECT_ERRORS(fuzz::touch(f.int_array(key).data(), size_t(v.count) * 8));
    ZIMAGE_FUZZ_EXPECT_ERRORS(Qwen2Tokenizer::from_gguf(f));
    for (const gguf::TensorInfo& t : f.tensors()) {
      ZIMAGE_FUZZ_CHECK(f.find(t.name) == &t);
      ZIMAGE_FUZZ_CHECK(f.data_offset() <= size && t.offset <= size - f.data_offset() &&
                        t.nbytes <= size - f.data_offset() - t.offset);
      ZIMAGE_FUZZ_CHECK(t.ne.size() >= 1 && t.ne.size() <= 4);
      const gguf::TypeTraits* tt = gguf::type_traits(t.type);
      ZIMAGE_FUZZ_CHECK(tt != nullptr);
      ZIMAGE_FUZZ_CHECK(uint64_t(t.numel() / tt->block * tt->bytes) == t.nbytes);
      fuzz::touch(f.data(t), size_t(t.nbytes));
      if (tt->dequantize) {
        Tensor x = f.dequantize(t.name);
        ZIMAGE_FUZZ_CHECK(x.numel() == t.numel());
        fuzz::touch(x.raw(), x.nbytes());
      } else {
        ZIMAGE_FUZZ_EXPECT_ERRORS(f.dequantize(t.name));
      }
    }
  });
  return 0;
}
