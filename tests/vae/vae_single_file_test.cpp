// The VAE from one file in the original LDM / Flux layout (ComfyUI's vae/ae.safetensors):
// tests/fixtures/single_file/vae_ldm.safetensors is the tiny-fp32 VAE written in that layout by
// tools/reference/make_single_file_fixtures.py and loaded back bit for bit by diffusers'
// from_single_file. The converted views equal the folder's tensors and decode the same pixels.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "core/safetensors.h"
#include "util/test_util.h"
#include "vae/autoencoder_kl.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {
const std::string kDir = "models/tiny-fp32/vae";
std::string ldm() { return test::fixture("single_file/vae_ldm.safetensors"); }
AutoencoderKLConfig cfg() { return AutoencoderKLConfig::load(test::fixture(kDir + "/config.json")); }
}  // namespace

TEST(VaeSingleFile, LdmLayoutEqualsFolder) {
  const WeightStore a = AutoencoderKL::open_weights(test::fixture(kDir), cfg());
  const WeightStore b = AutoencoderKL::open_weights(test::fixture(kDir), cfg(), ldm());
  int n = 0;
  for (const TensorSpec& s : AutoencoderKL::expected_tensors(cfg())) {
    const Tensor x = a.get(s.name, s.shape).to(DType::F32), y = b.get(s.name, s.shape).to(DType::F32);
    ASSERT_EQ(x.to_vector(), y.to_vector()) << s.name;
    ++n;
  }
  EXPECT_EQ(n, 196);
  // attention projections were 1x1 convolutions [C, C, 1, 1] in the file
  EXPECT_EQ(b.info("decoder.mid_block.attentions.0.to_q.weight").shape, (Shape{16, 16}));
  const AutoencoderKL va = AutoencoderKL::load(test::fixture(kDir)),
                      vb = AutoencoderKL::load(test::fixture(kDir), DType::F32, ldm());
  const Tensor z = test::randn({1, 16, 4, 4}, 5);
  EXPECT_EQ(va.decode(z).to_vector(), vb.decode(z).to_vector());
}

TEST(VaeSingleFile, PrefixedLdmKeysAndMissingKeys) {
  const std::string dir = test::temp_dir("vae_sf");
  SafeTensorsFile f(ldm());
  std::map<std::string, Tensor> pre, missing;
  for (auto& [name, ti] : f.tensors()) {
    pre["first_stage_model." + name] = f.get(name);
    if (name.rfind("decoder.up.2.", 0) != 0 && name != "encoder.conv_in.bias") missing[name] = f.get(name);
  }
  pre["model.diffusion_model.x"] = Tensor::zeros(DType::F32, {1});  // not the VAE's: ignored
  save_safetensors(dir + "/pre.safetensors", pre);
  save_safetensors(dir + "/missing.safetensors", missing);
  const WeightStore w = AutoencoderKL::open_weights("", cfg(), dir + "/pre.safetensors");
  EXPECT_TRUE(w.has("decoder.up_blocks.0.resnets.0.conv1.weight"));  // LDM's up.2 is diffusers' up_blocks.0
  try {
    AutoencoderKL::open_weights("", cfg(), dir + "/missing.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(
        m.find(
            "[vae] weights: " + dir +
            "/missing.safetensors: missing tensor 'encoder.conv_in.bias' (27 of "
            "the 196 expected tensors are missing: encoder.conv_in.bias, decoder.up_blocks.0.resnets.0.norm1.weight, "),
        std::string::npos)
        << m;
    EXPECT_NE(m.find(", ...)"), std::string::npos) << m;
  }
  fs::remove_all(dir);
}
