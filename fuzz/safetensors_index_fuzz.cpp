// Fuzzes WeightStore::open_dir / open_index (src/core/safetensors.cpp): the input is a
// `model.safetensors.index.json`, placed in a component folder that holds a few real shards, a
// shard in a subfolder, a folder named like a shard, and a symlink to a shard outside the
// folder. Whatever the index says, the store must refuse it with an Error or give names whose
// tensors are all readable (paths that leave the folder must be refused).
#include <sys/stat.h>

#include <filesystem>

#include "core/safetensors.h"
#include "fuzz_util.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {

// A valid safetensors file: header JSON (offsets already right) + data_len zero bytes.
std::string safetensors_bytes(const std::string& header, size_t data_len) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_len, '\0');
}

struct Folder {
  std::string dir, outside;
  Folder() {
    const auto& s = fuzz::scratch();
    dir = s / "component";
    outside = s / "outside.safetensors";
    fs::create_directories(dir + "/sub");
    fs::create_directories(dir + "/dir.safetensors");
    fuzz::write_file(
        dir + "/a.safetensors",
        safetensors_bytes(R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("y":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}})",
                          12));
    fuzz::write_file(dir + "/sub/b.safetensors",
                     safetensors_bytes(R"({"z":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},)"
                                       R"("w":{"dtype":"I64","shape":[1],"data_offsets":[6,14]}})",
                                       14));
    fuzz::write_file(outside, safetensors_bytes(R"({"o":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", 4));
    fs::create_symlink(outside, dir + "/link.safetensors");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Folder folder;
  const std::string index = folder.dir + "/model.safetensors.index.json";
  fuzz::write_file(index, fuzz::as_view(data, size));
  ZIMAGE_FUZZ_EXPECT_ERRORS({
    WeightStore w = WeightStore::open_dir(folder.dir);
    ZIMAGE_FUZZ_CHECK(!w.has("o"));  // only reachable through the symlink that leaves the folder
    for (const std::string& name : w.names()) {
      const TensorInfo& ti = w.info(name);
      ZIMAGE_FUZZ_CHECK(ti.begin <= ti.end);
      ZIMAGE_FUZZ_EXPECT_ERRORS({
        Tensor t = w.get(name);
        fuzz::touch(t.raw(), t.nbytes());
      });
    }
    (void)w.stored_dtype();
    (void)w.bytes_on_disk();
    (void)w.num_params();
  });
  return 0;
}
