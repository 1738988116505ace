// Configs inferred from single files (pipeline/single_file.h): what the tensors and a GGUF's
// metadata give, and a clear error (file and tensor named) for what is missing or inconsistent.
// The same image as the model folder + overrides: tests/cli/cli_single_file_test.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "pipeline/single_file.h"
#include "util/gguf_writer.h"
#include "util/single_files.h"
#include "util/test_util.h"
#include "zimage/pipeline.h"

namespace zimage {
namespace {
namespace fs = std::filesystem;

// Written once per test binary, removed at its exit.
const test::SingleFiles& files() {
  struct Files {
    test::SingleFiles f;
    ~Files() {
      std::error_code ec;
      fs::remove_all(f.dir, ec);
    }
  };
  static const Files h{test::write_single_files(test::temp_dir("singlefiles"))};
  return h.f;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The generated transformer GGUF's entries, changed by `edit` (return false to drop one).
std::string transformer_variant(const std::string& name, const std::function<bool(test::GgufEntry&)>& edit) {
  gguf::File g(files().transformer);
  std::vector<test::GgufEntry> es;
  for (const gguf::TensorInfo& t : g.tensors()) {
    test::GgufEntry e{t.name, t.shape(), t.type,
                      std::string(reinterpret_cast<const char*>(g.data(t)), size_t(t.nbytes))};
    if (edit(e)) es.push_back(std::move(e));
  }
  const std::string path = files().dir + "/" + name;
  test::write_file(path, test::gguf_bytes(es));
  return path;
}
}  // namespace

TEST(SingleFileConfig, TransformerFromGgufShapes) {
  const ZImageTransformerConfig c = infer_transformer_config(files().transformer);
  const ZImageTransformerConfig want = test::single_file_transformer_config();
  EXPECT_EQ(c.dim, 128);
  EXPECT_EQ(c.n_heads, 1);
  EXPECT_EQ(c.n_layers, 1);
  EXPECT_EQ(c.n_refiner_layers, 1);
  EXPECT_EQ(c.cap_feat_dim, 32);
  EXPECT_EQ(c.in_channels, 16);
  EXPECT_EQ(c.all_patch_size, want.all_patch_size);
  EXPECT_EQ(c.all_f_patch_size, want.all_f_patch_size);
  EXPECT_EQ(c.axes_dims, want.axes_dims);
  EXPECT_EQ(c.axes_lens, want.axes_lens);
  EXPECT_EQ(c.rope_theta, 256.0);
  EXPECT_EQ(c.norm_eps, 1e-5);
}

TEST(SingleFileConfig, TransformerErrorsNameFileAndTensor) {
  const std::string tail = " (inferring the config from the file without -m)";
  {  // the tiny fixture: head_dim 24, whose RoPE split is not Z-Image-Turbo's
    const std::string f = test::fixture("models/tiny-fp32/transformer/diffusion_pytorch_model.safetensors");
    EXPECT_EQ(test::error_of([&] { infer_transformer_config(f); }),
              "[transformer] " + f +
                  ": head_dim is 24 (the length of 'layers.0.attention.norm_q.weight'), not Z-Image-Turbo's "
                  "128: its RoPE axes_dims cannot be inferred (give -m MODEL for the config)" +
                  tail);
  }
  {
    const std::string f =
        transformer_variant("no_cap.gguf", [](test::GgufEntry& e) { return e.name != "cap_embedder.0.weight"; });
    EXPECT_EQ(test::error_of([&] { infer_transformer_config(f); }),
              "[transformer] " + f + ": missing tensor 'cap_embedder.0.weight'" + tail);
  }
  {  // a context refiner layer missing
    const std::string f = transformer_variant(
        "no_ctx.gguf", [](test::GgufEntry& e) { return e.name.rfind("context_refiner.0.", 0) != 0; });
    EXPECT_EQ(test::error_of([&] { infer_transformer_config(f); }),
              "[transformer] " + f +
                  ": it has 1 noise_refiner and 0 context_refiner layers (missing tensor "
                  "'context_refiner.0.attention.to_q.weight')" +
                  tail);
  }
  {  // x_embedder columns that are no multiple of the patch
    const std::string f = transformer_variant("bad_x.gguf", [](test::GgufEntry& e) {
      if (e.name == "x_embedder.weight") {
        e.shape = {128, 62};
        e.type = 0;
        e.bytes.assign(128 * 62 * 4, '\0');
      }
      return true;
    });
    EXPECT_EQ(test::error_of([&] { infer_transformer_config(f); }),
              "[transformer] " + f +
                  ": tensor 'all_x_embedder.2-1.weight' columns (patch 2-1): 62 is not a multiple of 4" + tail);
  }
  {  // a layer whose FFN disagrees with dim: the component's own check names the tensor
    const std::string f = transformer_variant("bad_ffn.gguf", [](test::GgufEntry& e) {
      if (e.name == "layers.0.feed_forward.w2.weight") {
        e.shape = {128, 340};
        e.bytes.assign(128 * 340 * 4, '\0');
      }
      return true;
    });
    const std::string e = test::error_of([&] { infer_transformer_config(f); });
    EXPECT_TRUE(contains(e, "[transformer]") && contains(e, f) && contains(e, "layers.0.feed_forward.w2.weight") &&
                contains(e, "[128, 340]"))
        << e;
  }
}

TEST(SingleFileConfig, TextEncoderFromGgufMetadataAndShapes) {
  const Qwen3Config c = infer_text_encoder_config(files().text_encoder);
  const Qwen3Config want = Qwen3Config::load(test::fixture("models/tiny-fp32/text_encoder/config.json"));
  EXPECT_EQ(c.vocab_size, want.vocab_size);
  EXPECT_EQ(c.hidden_size, want.hidden_size);
  EXPECT_EQ(c.intermediate_size, want.intermediate_size);
  EXPECT_EQ(c.num_hidden_layers, want.num_hidden_layers);
  EXPECT_EQ(c.num_attention_heads, want.num_attention_heads);
  EXPECT_EQ(c.num_key_value_heads, want.num_key_value_heads);
  EXPECT_EQ(c.head_dim, want.head_dim);
  EXPECT_EQ(c.rope_theta, want.rope_theta);  // qwen3.rope.freq_base
  EXPECT_EQ(float(c.rms_norm_eps), float(want.rms_norm_eps));
  EXPECT_EQ(c.max_position_embeddings, want.max_position_embeddings);
  // a safetensors file: the shapes, and Qwen3-4B's rope_theta
  const Qwen3Config s = infer_text_encoder_config(test::fixture("models/tiny-fp32/text_encoder/model.safetensors"));
  EXPECT_EQ(s.hidden_size, 32);
  EXPECT_EQ(s.num_hidden_layers, 3);
  EXPECT_EQ(s.num_attention_heads, 4);
  EXPECT_EQ(s.num_key_value_heads, 1);
  EXPECT_EQ(s.head_dim, 8);
  EXPECT_EQ(s.intermediate_size, 48);
  EXPECT_EQ(s.rope_theta, 1e6);
}

TEST(SingleFileConfig, TextEncoderMetadataDisagreeingWithShapesIsAnError) {
  namespace kv = test::gguf_kv;
  auto variant = [&](const std::string& name, const std::string& key, const test::GgufKv& repl,
                     bool drop_q_norm = false) {
    std::vector<test::GgufKv> kvs;
    for (const test::GgufKv& e : test::tiny_qwen3_kvs()) kvs.push_back(e.key == key ? repl : e);
    std::vector<test::GgufEntry> es;
    for (test::GgufEntry& e : test::tiny_text_encoder_entries())
      if (!(drop_q_norm && e.name == "blk.0.attn_q_norm.weight")) es.push_back(std::move(e));
    const std::string path = files().dir + "/" + name;
    test::write_file(path, test::gguf_bytes(es, kvs));
    return path;
  };
  {
    const std::string f = variant("te_emb.gguf", "qwen3.embedding_length", kv::u32("qwen3.embedding_length", 64));
    EXPECT_EQ(test::error_of([&] { infer_text_encoder_config(f); }),
              "[text_encoder] " + f +
                  ": metadata qwen3.embedding_length = 64 disagrees with the tensors (token_embd.weight columns: 32)");
  }
  {
    const std::string f =
        variant("te_heads.gguf", "qwen3.attention.head_count", kv::u32("qwen3.attention.head_count", 8));
    EXPECT_EQ(test::error_of([&] { infer_text_encoder_config(f); }),
              "[text_encoder] " + f +
                  ": metadata qwen3.attention.head_count = 8 disagrees with the tensors (blk.0.attn_q.weight "
                  "rows / key_length: 4)");
  }
  {
    const std::string f = variant("te_blocks.gguf", "qwen3.block_count", kv::u32("qwen3.block_count", 4));
    EXPECT_EQ(test::error_of([&] { infer_text_encoder_config(f); }),
              "[text_encoder] " + f + ": metadata qwen3.block_count = 4 disagrees with the tensors (blk.N layers: 3)");
  }
  {
    const std::string f = variant("te_arch.gguf", "general.architecture", kv::str("general.architecture", "llama"));
    EXPECT_EQ(test::error_of([&] { infer_text_encoder_config(f); }),
              "[text_encoder] " + f + ": general.architecture is 'llama', expected 'qwen3' (a Qwen3 text encoder)");
  }
  {
    const std::string f = variant("te_noqn.gguf", "", {}, /*drop_q_norm=*/true);
    EXPECT_EQ(test::error_of([&] { infer_text_encoder_config(f); }),
              "[text_encoder] " + f +
                  ": missing tensor 'layers.0.self_attn.q_norm.weight' (inferring the config from the file "
                  "without -m)");
  }
}

TEST(SingleFileConfig, VaeFromLdmAndDiffusersLayouts) {
  // The tiny fixture VAE in both layouts gives the same inferred config.json.
  const nlohmann::json ldm = infer_vae_config_json(test::fixture("single_file/vae_ldm.safetensors"));
  const nlohmann::json dif =
      infer_vae_config_json(test::fixture("models/tiny-fp32/vae/diffusion_pytorch_model.safetensors"));
  EXPECT_EQ(ldm, dif);
  EXPECT_EQ(ldm["block_out_channels"], nlohmann::json({8, 16, 16}));
  EXPECT_EQ(ldm["layers_per_block"], 2);
  EXPECT_EQ(ldm["latent_channels"], 16);
  EXPECT_EQ(ldm["use_quant_conv"], false);
  EXPECT_EQ(ldm["mid_block_add_attention"], true);
  EXPECT_EQ(ldm["scaling_factor"], 0.3611);
  EXPECT_EQ(ldm["shift_factor"], 0.1159);
  // ... which the Flux VAE's 32 norm groups cannot divide: an error naming the file
  const std::string f = test::fixture("single_file/vae_ldm.safetensors");
  const std::string e = test::error_of([&] { infer_vae_config(f); });
  EXPECT_TRUE(contains(e, "[vae]") && contains(e, f) && contains(e, "block_out_channels") &&
              contains(e, "norm_num_groups = 32"))
      << e;
  // The generated 32-channel VAE: its config, every field as the folder's.
  const AutoencoderKLConfig c = infer_vae_config(files().vae);
  const AutoencoderKLConfig want = AutoencoderKLConfig::load(files().model + "/vae/config.json");
  EXPECT_EQ(c.block_out_channels, want.block_out_channels);
  EXPECT_EQ(c.layers_per_block, want.layers_per_block);
  EXPECT_EQ(c.latent_channels, want.latent_channels);
  EXPECT_EQ(c.norm_num_groups, want.norm_num_groups);
  EXPECT_EQ(c.scaling_factor, want.scaling_factor);
  EXPECT_EQ(c.shift_factor, want.shift_factor);
  EXPECT_EQ(c.use_quant_conv, want.use_quant_conv);
  EXPECT_EQ(c.use_post_quant_conv, want.use_post_quant_conv);
  EXPECT_EQ(c.mid_block_add_attention, want.mid_block_add_attention);
}

TEST(SingleFileConfig, VaeErrors) {
  WeightStore ws = WeightStore::open_file(files().vae);
  std::map<std::string, Tensor> t;
  for (const std::string& n : ws.names()) t[n] = ws.get(n).to(DType::F32);
  {  // 4 latent channels (an SD VAE): no known scaling without -m
    std::map<std::string, Tensor> v = t;
    v["decoder.conv_in.weight"] = Tensor::zeros(DType::F32, {32, 4, 3, 3});
    v["encoder.conv_out.weight"] = Tensor::zeros(DType::F32, {8, 32, 3, 3});
    const std::string f = files().dir + "/vae4.safetensors";
    save_safetensors(f, v);
    EXPECT_EQ(test::error_of([&] { infer_vae_config(f); }),
              "[vae] " + f +
                  ": the latent has 4 channels (decoder.conv_in.weight); without -m only the Flux VAE's 16 are known "
                  "(scaling_factor 0.3611, shift_factor 0.1159): give -m MODEL for another VAE's config (inferring the "
                  "config "
                  "from the file without -m)");
  }
  {
    std::map<std::string, Tensor> v = t;
    v.erase("decoder.conv_in.weight");
    const std::string f = files().dir + "/vae_noin.safetensors";
    save_safetensors(f, v);
    EXPECT_EQ(
        test::error_of([&] { infer_vae_config(f); }),
        "[vae] " + f + ": missing tensor 'decoder.conv_in.weight' (inferring the config from the file without -m)");
  }
}

TEST(SingleFileConfig, PipelineWithoutModelNeedsEveryFileAndATokenizer) {
  PretrainedOptions o;
  o.transformer_file = files().transformer;
  o.vae_file = files().vae;
  EXPECT_EQ(test::error_of([&] { ZImagePipeline::from_pretrained("", o); }),
            "[from_pretrained] no model folder or hub id: give one, or every component as a single file (missing: "
            "text_encoder_file (--text-encoder))");
  o.text_encoder_file = test::fixture("models/tiny-fp32/text_encoder/model.safetensors");
  EXPECT_EQ(test::error_of([&] { ZImagePipeline::from_pretrained("", o); }),
            "[from_pretrained] no tokenizer: the text encoder '" + o.text_encoder_file +
                "' is not a GGUF file (only a GGUF carries its tokenizer); give a tokenizer/ folder (tokenizer.json + "
                "tokenizer_config.json): --tokenizer DIR (PretrainedOptions::tokenizer), or -m MODEL");
}

}  // namespace zimage
