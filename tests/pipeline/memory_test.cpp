// Memory of the quantized pipeline (README "Memory"): what stays resident of a component's weights
// (/proc/self/pagemap over its file mapping, core/mapping.h) and the integer GEMM's packed copies
// (ops::live_packed_bytes), and that releasing either changes no value.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include "core/gguf.h"
#include "core/mapping.h"
#include "ops/quantized.h"
#include "util/gguf_writer.h"
#include "util/single_files.h"
#include "util/test_util.h"
#include "weights/prefetch.h"
#include "zimage/pipeline.h"

namespace zimage {
namespace {
namespace fs = std::filesystem;

// One Q8_0 [256, 4096] weight (1.1 MB of blocks) in a GGUF file, mapped (no page of it resident).
struct MappedWeight {
  static constexpr int64_t N = 256, K = 4096;
  std::string dir, path, blocks;
  std::shared_ptr<gguf::File> file;
  const uint8_t* data = nullptr;
  explicit MappedWeight(const std::string& tag) {
    const uint32_t t = uint32_t(gguf::GgmlType::Q8_0);
    blocks = test::random_blocks(t, N * K, 41, 1e-3f);
    dir = test::temp_dir(tag);
    path = dir + "/w.gguf";
    test::write_file(path, test::gguf_bytes({{"w", {N, K}, t, blocks}}));
    file = std::make_shared<gguf::File>(path);
    data = file->data(*file->find("w"));
    // Reading the header mapped its pages, and the kernel may map a large page-cache folio that
    // reaches into the weight: start with nothing of the file mapped.
    release_file_mappings(path);
  }
  ~MappedWeight() {
    file.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  ops::QuantizedMatrix matrix(ops::QuantCompute mode) const {
    ops::QuantizedMatrix q;
    q.ggml_type = uint32_t(gguf::GgmlType::Q8_0);
    q.rows = N;
    q.cols = K;
    q.data = data;
    q.row_bytes = blocks.size() / size_t(N);
    q.keepalive = file->owner();
    q.compute = DType::BF16;
    q.mode = mode;
    return q;
  }
  size_t resident() const { return resident_bytes(data, blocks.size()); }
  // The pages the weight shares with the file's header or end (never released with it alone).
  size_t edge_pages() const { return 2 * size_t(sysconf(_SC_PAGESIZE)); }
  void touch() const { ASSERT_EQ(std::memcmp(data, blocks.data(), blocks.size()), 0); }
};

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(QuantMemory, ResidentBytesSeesTouchedAndReleasedPages) {
  const MappedWeight w("mem_resident");
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(w.resident(), 0u);
  w.touch();
  EXPECT_GE(w.resident(), w.blocks.size() - page);
  EXPECT_GE(resident_file_bytes(w.path), w.blocks.size() - page);
  EXPECT_GE(release_file_mappings(w.path), w.blocks.size());
  EXPECT_EQ(w.resident(), 0u);
  EXPECT_EQ(resident_file_bytes(w.path), 0u);
  w.touch();  // the file's bytes come back from the page cache
  // Anonymous memory is never released (its pages would be lost).
  std::vector<uint8_t> anon(64 * page, 7);
  EXPECT_EQ(release_file_pages(anon.data(), anon.size()), 0u);
  EXPECT_EQ(anon[5 * page], 7);
}

// Inside a TransientPacking scope the integer GEMM packs, computes and frees: the same bits as
// the kept copy, nothing packed left behind, and the weight's file pages gone from the process.
TEST(QuantMemory, TransientPackingIsBitIdenticalAndKeepsNothing) {
  const MappedWeight w("mem_transient");
  const Tensor x = test::randn({7, MappedWeight::K}, 42);
  const size_t live0 = ops::live_packed_bytes();
  const ops::QuantizedMatrix kept = w.matrix(ops::QuantCompute::Int);
  const Tensor y_kept = ops::linear(x, kept);
  ASSERT_GT(ops::packed_bytes(kept), 0u);
  EXPECT_EQ(ops::live_packed_bytes(), live0 + ops::packed_bytes(kept));

  const ops::QuantizedMatrix q = w.matrix(ops::QuantCompute::Int);  // a pack cache of its own
  w.touch();
  EXPECT_FALSE(ops::TransientPacking::active());
  Tensor y;
  {
    const ops::TransientPacking transient;
    EXPECT_TRUE(ops::TransientPacking::active());
    {
      const ops::TransientPacking off(false);  // scopes nest
      EXPECT_FALSE(ops::TransientPacking::active());
    }
    EXPECT_TRUE(ops::TransientPacking::active());
    y = ops::linear(x, q);
    EXPECT_EQ(ops::packed_bytes(q), 0u);
    EXPECT_EQ(ops::live_packed_bytes(), live0 + ops::packed_bytes(kept));
    EXPECT_LE(w.resident(), w.edge_pages()) << "the weight's file pages stayed mapped";
    EXPECT_TRUE(same(ops::linear(x, kept), y_kept)) << "a kept copy is still used inside the scope";
  }
  EXPECT_FALSE(ops::TransientPacking::active());
  EXPECT_TRUE(same(y, y_kept)) << "transient packing changed the result";
}

// The dequantizing path (float32 runs, ZIMAGE_QUANT_COMPUTE=dequant) reads the mapping in place:
// it stays resident, except inside a TransientPacking scope.
TEST(QuantMemory, DequantPathReleasesPagesOnlyWhenTransient) {
  const MappedWeight w("mem_dequant");
  const Tensor x = test::randn({3, MappedWeight::K}, 43);
  const ops::QuantizedMatrix q = w.matrix(ops::QuantCompute::Dequant);
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const Tensor y0 = ops::linear(x, q);
  EXPECT_GE(w.resident(), w.blocks.size() - page);
  Tensor y1;
  {
    const ops::TransientPacking transient;
    y1 = ops::linear(x, q);
  }
  EXPECT_LE(w.resident(), w.edge_pages());
  EXPECT_EQ(ops::packed_bytes(q), 0u);
  EXPECT_TRUE(same(y0, y1));
}

// Quantized weights are prefetched into the page cache, not into the process: mapping them ahead
// would count the whole file in the resident set on top of the packed copies.
TEST(QuantMemory, PrefetchOfUnmappedRangesLeavesThemOutOfTheProcess) {
  namespace pf = weights::prefetch;
  pf::set_enabled(true);
  const MappedWeight w("mem_prefetch");
  const std::shared_ptr<const void> owner = w.file->owner();
  pf::wait_idle();
  const pf::Stats s0 = pf::stats();
  pf::enqueue("quantized", {{owner, w.data, w.blocks.size(), /*map=*/false}});
  pf::wait_idle();
  const pf::Stats s1 = pf::stats();
  EXPECT_EQ(s1.jobs_done, s0.jobs_done + 1);
  EXPECT_GE(s1.bytes_read - s0.bytes_read, w.blocks.size());
  EXPECT_EQ(s1.method, "willneed");
  EXPECT_LE(w.resident(), w.edge_pages()) << "prefetch mapped the quantized weight into the process";
  pf::enqueue("dense", {{owner, w.data, w.blocks.size(), /*map=*/true}});
  pf::wait_idle();
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  if (pf::stats().method == "populate_read") {
    EXPECT_GE(w.resident(), w.blocks.size() - page);
  }
  pf::use_environment();
}

// The pipeline on GGUF single files in a bfloat16 run (the integer GEMM): the default mode keeps
// the transformer's packed copies and nothing of the text encoder (its file pages leave the
// process after encoding, it packs per GEMM); --low-memory keeps no packed copy at all. The
// images are the same bits in both modes and on a second call.
struct Observed {
  size_t live_after_text_encoder = 0;
  std::vector<size_t> live_at_step;
  PipelineOutput out;
};

Observed generate(ZImagePipeline& pipe) {
  Observed o;
  CallParams p;
  p.prompt = {"a red fox in the snow"};
  p.height = p.width = 64;
  p.num_inference_steps = 2;
  p.guidance_scale = 2.0f;  // a negative prompt too: two encodes
  p.generator = {Generator{7}};
  p.callback_on_step_end = [&](ZImagePipeline&, int, float, Tensor&) {
    o.live_at_step.push_back(ops::live_packed_bytes());
  };
  o.out = pipe(p, [&](const Progress& pr) {
    if (pr.stage == "text_encoder") o.live_after_text_encoder = ops::live_packed_bytes();
  });
  return o;
}

const test::SingleFiles& files() { return test::shared_single_files(); }

PretrainedOptions options(bool low_memory) {
  PretrainedOptions o;
  o.transformer_file = files().transformer;
  o.text_encoder_file = files().text_encoder;
  o.vae_file = files().vae;
  o.torch_dtype = "bfloat16";
  o.low_memory = low_memory;
  o.num_threads = 2;
  return o;
}

TEST(PipelineMemory, DefaultModeKeepsOnlyTheTransformersPackedCopies) {
  const size_t live0 = ops::live_packed_bytes();
  Observed a, b;
  {
    ZImagePipeline pipe = ZImagePipeline::from_pretrained("", options(false));
    a = generate(pipe);
    EXPECT_EQ(a.live_after_text_encoder, live0) << "the text encoder kept packed copies";
    ASSERT_EQ(a.live_at_step.size(), 2u);
    EXPECT_GT(a.live_at_step[0], live0) << "the transformer's packed copies are kept in the default mode";
    EXPECT_EQ(a.live_at_step[1], a.live_at_step[0]);
    EXPECT_EQ(resident_file_bytes(files().text_encoder), 0u) << "the text encoder's file pages stayed mapped";
    b = generate(pipe);  // the text encoder's pages come back from the page cache
    EXPECT_EQ(b.live_after_text_encoder, a.live_at_step[0]);
    EXPECT_EQ(resident_file_bytes(files().text_encoder), 0u);
  }
  EXPECT_EQ(ops::live_packed_bytes(), live0);
  ASSERT_EQ(a.out.images.size(), 1u);
  ASSERT_EQ(b.out.images.size(), 1u);
  EXPECT_EQ(a.out.images[0].pixels, b.out.images[0].pixels) << "the second call differs";

  ZImagePipeline low = ZImagePipeline::from_pretrained("", options(true));
  const Observed c = generate(low);
  EXPECT_EQ(c.live_after_text_encoder, live0);
  ASSERT_EQ(c.live_at_step.size(), 2u);
  for (size_t s : c.live_at_step) EXPECT_EQ(s, live0) << "--low-memory kept packed copies of the transformer";
  ASSERT_EQ(c.out.images.size(), 1u);
  EXPECT_EQ(c.out.images[0].pixels, a.out.images[0].pixels) << "--low-memory changed the image";
  EXPECT_TRUE(same(c.out.latents, a.out.latents));
}

}  // namespace
}  // namespace zimage
