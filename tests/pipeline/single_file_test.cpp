// Configs inferred from single files (pipeline/single_file.h): what the tensors and a GGUF's
// metadata give, and a clear error (file and tensor named) for what is missing or inconsistent.
// The same image as the model folder + overrides: tests/cli/cli_single_file_test.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "pipeline/single_file.h"
#include "transformer/controlnet_z_image.h"
#include "util/gguf_writer.h"
#include "util/single_files.h"
#include "util/test_util.h"
#include "zimage/pipeline.h"

namespace zimage {
namespace {
namespace fs = std::filesystem;

// Written once per test binary (shared with the other pipeline tests), removed at its exit.
const test::SingleFiles& files() { return test::shared_single_files(); }

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

// ControlNet single files (--controlnet FILE): the config inferred from the tensors for the
// transformer is the one the diffusers folder was saved with, for every fixture ControlNet (the
// three add_control_noise_refiner variants, two transformers).
namespace {
ZImageTransformerConfig tiny_transformer(const std::string& model) {
  return ZImageTransformerConfig::load(test::fixture("models/" + model + "/transformer/config.json"));
}
void expect_same_config(const ZImageControlNetConfig& a, const ZImageControlNetConfig& b, const std::string& what) {
  EXPECT_EQ(a.control_layers_places, b.control_layers_places) << what;
  EXPECT_EQ(a.control_refiner_layers_places, b.control_refiner_layers_places) << what;
  EXPECT_EQ(a.control_in_dim, b.control_in_dim) << what;
  EXPECT_EQ(a.add_control_noise_refiner, b.add_control_noise_refiner) << what;
  EXPECT_EQ(a.all_patch_size, b.all_patch_size) << what;
  EXPECT_EQ(a.all_f_patch_size, b.all_f_patch_size) << what;
  EXPECT_EQ(a.dim, b.dim) << what;
  EXPECT_EQ(a.n_refiner_layers, b.n_refiner_layers) << what;
  EXPECT_EQ(a.n_heads, b.n_heads) << what;
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads) << what;
  EXPECT_EQ(a.norm_eps, b.norm_eps) << what;
  EXPECT_EQ(a.qk_norm, b.qk_norm) << what;
}
}  // namespace

TEST(SingleFileControlNet, ConfigOfEachFixtureNetIsTheSavedOne) {
  const std::pair<const char*, const char*> nets[] = {{"tiny-fp32", "cn_plain"},
                                                      {"tiny-fp32", "cn_layers"},
                                                      {"tiny-fp32", "cn_refiner"},
                                                      {"tiny-bf16", "cn_plain"},
                                                      {"tiny-bf16", "cn_refiner"}};
  for (auto& [model, net] : nets) {
    const std::string folder = test::fixture(std::string("controlnet/") + model + "/" + net);
    const std::string file = folder + "/diffusion_pytorch_model.safetensors";  // already one file
    expect_same_config(infer_controlnet_config(file, tiny_transformer(model)),
                       ZImageControlNetConfig::load(folder + "/config.json"), std::string(model) + "/" + net);
  }
}

// Union 2.x files carry control_noise_refiner control blocks: a non-zero before_proj makes it
// "control_noise_refiner" (2.1), a zeroed or missing one "control_layers" (2.0: the blocks are
// dropped, as diffusers' conversion drops them); plain blocks are Union 1.0's null.
TEST(SingleFileControlNet, RefinerVariantFromTheRefinerBlocks) {
  const ZImageTransformerConfig t = tiny_transformer("tiny-fp32");
  const ZImageControlNetConfig layers =
      ZImageControlNetConfig::load(test::fixture("controlnet/tiny-fp32/cn_layers/config.json"));
  const std::string dir = files().dir;
  {  // 2.0: zeroed before_proj -> the saved "control_layers" config; the refiner is not loaded
    const std::string f = test::write_controlnet_file("tiny-fp32", "cn_layers", dir + "/cn20.safetensors",
                                                      test::control_refiner_tensors(t, 2, true, true, 7000));
    expect_same_config(infer_controlnet_config(f, t), layers, "2.0");
    WeightStore ws = ZImageControlNetModel::open_weights(f, infer_controlnet_config(f, t), t);
    EXPECT_FALSE(ws.has("control_noise_refiner.0.before_proj.weight"));
    EXPECT_TRUE(ws.has("control_layers.0.before_proj.weight"));
  }
  {  // a control refiner without before_proj: "control_layers" too (diffusers' rule)
    const std::string f = test::write_controlnet_file("tiny-fp32", "cn_layers", dir + "/cn20b.safetensors",
                                                      test::control_refiner_tensors(t, 2, false, false, 7100));
    expect_same_config(infer_controlnet_config(f, t), layers, "2.0 without before_proj");
  }
  {  // 2.1: non-zero before_proj -> "control_noise_refiner", one hint per refiner block
    const std::string f = test::write_controlnet_file("tiny-fp32", "cn_layers", dir + "/cn21.safetensors",
                                                      test::control_refiner_tensors(t, 2, true, false, 7200));
    const ZImageControlNetConfig c = infer_controlnet_config(f, t);
    EXPECT_EQ(c.add_control_noise_refiner, "control_noise_refiner");
    EXPECT_EQ(c.n_refiner_layers, 2);
    EXPECT_EQ(c.control_refiner_layers_places, (std::vector<int64_t>{0, 1}));
    EXPECT_EQ(c.control_layers_places, (std::vector<int64_t>{0, 2}));
  }
  {  // one refiner block: its hint goes into noise_refiner 0 only
    const std::string f = test::write_controlnet_file("tiny-fp32", "cn_layers", dir + "/cn21one.safetensors",
                                                      test::control_refiner_tensors(t, 1, true, false, 7300));
    EXPECT_EQ(infer_controlnet_config(f, t).control_refiner_layers_places, (std::vector<int64_t>{0}));
  }
}

// Places: one control layer every round(layers / control layers) of the transformer's layers.
TEST(SingleFileControlNet, PlacesSpreadOverTheTransformerLayers) {
  const std::string f = test::fixture("controlnet/tiny-fp32/cn_plain/diffusion_pytorch_model.safetensors");
  ZImageTransformerConfig t = tiny_transformer("tiny-fp32");  // 2 control layers
  const std::pair<int64_t, std::vector<int64_t>> want[] = {{2, {0, 1}}, {3, {0, 2}}, {4, {0, 2}},  {5, {0, 2}},
                                                           {6, {0, 3}}, {7, {0, 4}}, {30, {0, 15}}};
  for (auto& [layers, places] : want) {
    t.n_layers = layers;
    EXPECT_EQ(infer_controlnet_config_json(f, t)["control_layers_places"].get<std::vector<int64_t>>(), places)
        << layers;
  }
  // The Union files' counts on Z-Image-Turbo's 30 layers: the places of hlky's diffusers configs.
  WeightStore ws = WeightStore::open_dir(test::fixture("controlnet/tiny-fp32/cn_plain"));
  t.n_layers = 30;
  for (const int64_t n : {6, 15}) {
    std::map<std::string, Tensor> more;
    for (const std::string& name : ws.names())
      if (name.rfind("control_layers.1.", 0) == 0)
        for (int64_t i = 2; i < n; ++i)
          more["control_layers." + std::to_string(i) + "." + name.substr(17)] = ws.get(name);
    const std::string g = test::write_controlnet_file(
        "tiny-fp32", "cn_plain", files().dir + "/union" + std::to_string(n) + ".safetensors", more);
    std::vector<int64_t> places;
    for (int64_t i = 0; i < n; ++i) places.push_back(i * (30 / n));
    EXPECT_EQ(infer_controlnet_config_json(g, t)["control_layers_places"].get<std::vector<int64_t>>(), places) << n;
  }
}

TEST(SingleFileControlNet, BadFilesAreNamed) {
  const ZImageTransformerConfig t = tiny_transformer("tiny-fp32");
  const std::string dir = files().dir, tail = " (inferring the ControlNet's config from the file)";
  auto error = [&](const std::string& f) { return test::error_of([&] { infer_controlnet_config(f, t); }); };
  {  // a transformer given as the ControlNet
    const std::string f = test::fixture("models/tiny-fp32/transformer/diffusion_pytorch_model.safetensors");
    EXPECT_EQ(error(f), "[controlnet] " + f +
                            ": not a Z-Image ControlNet: missing tensor 'control_all_x_embedder.2-1.weight': it has "
                            "'x_pad_token', a Z-Image transformer's (give it as --transformer)" +
                            tail);
  }
  {  // not a weights file at all
    const std::string f = dir + "/garbage.safetensors";
    test::write_file(f, "this is not a safetensors file");
    const std::string e = error(f);
    EXPECT_TRUE(contains(e, "[controlnet]") && contains(e, f)) << e;
  }
  auto is = [](const std::string& prefix) {
    return [prefix](const std::string& n) { return n.rfind(prefix, 0) == 0; };
  };
  {  // no control layers
    const std::string f =
        test::write_controlnet_file("tiny-fp32", "cn_plain", dir + "/nolayers.safetensors", {}, is("control_layers."));
    EXPECT_EQ(error(f), "[controlnet] " + f + ": missing tensor 'control_layers.0.attention.to_q.weight'" + tail);
  }
  {  // a gap: layers 0 and 2
    WeightStore ws = WeightStore::open_dir(test::fixture("controlnet/tiny-fp32/cn_plain"));
    std::map<std::string, Tensor> moved;
    for (const std::string& n : ws.names())
      if (n.rfind("control_layers.1.", 0) == 0) moved["control_layers.2." + n.substr(17)] = ws.get(n);
    const std::string f =
        test::write_controlnet_file("tiny-fp32", "cn_plain", dir + "/gap.safetensors", moved, is("control_layers.1."));
    const std::string e = error(f);
    EXPECT_TRUE(contains(e, "[controlnet] " + f + ": has 'control_layers.2.") &&
                contains(e, "' but is missing tensor 'control_layers.1.attention.to_q.weight'" + tail))
        << e;
  }
  {  // more control layers than the transformer has layers
    WeightStore ws = WeightStore::open_dir(test::fixture("controlnet/tiny-fp32/cn_plain"));
    std::map<std::string, Tensor> more;
    for (const std::string& n : ws.names())
      if (n.rfind("control_layers.1.", 0) == 0)
        for (const char* i : {"2", "3"}) more[std::string("control_layers.") + i + "." + n.substr(17)] = ws.get(n);
    const std::string f = test::write_controlnet_file("tiny-fp32", "cn_plain", dir + "/four.safetensors", more);
    EXPECT_EQ(error(f), "[controlnet] " + f +
                            ": it has 4 control layers (control_layers.0 to .3) but the transformer has 3 layers: "
                            "their places cannot be inferred" +
                            tail);
  }
  {  // embedder columns that are no multiple of the patch
    const std::string f =
        test::write_controlnet_file("tiny-fp32", "cn_plain", dir + "/badx.safetensors",
                                    {{"control_all_x_embedder.2-1.weight", test::randn({72, 63}, 1)}});
    EXPECT_EQ(error(f), "[controlnet] " + f +
                            ": tensor 'control_all_x_embedder.2-1.weight' columns (patch 2-1): 63 is not a multiple "
                            "of 4" +
                            tail);
  }
  {  // a block tensor of the wrong shape: the weights check names it
    const std::string f =
        test::write_controlnet_file("tiny-fp32", "cn_plain", dir + "/badproj.safetensors",
                                    {{"control_layers.1.after_proj.weight", test::randn({72, 70}, 2)}});
    const std::string e = error(f);
    EXPECT_TRUE(contains(e, "[controlnet]") && contains(e, f) && contains(e, "control_layers.1.after_proj.weight") &&
                contains(e, "[72, 70]"))
        << e;
  }
  {  // another transformer's ControlNet (dim 64)
    const std::string f = test::fixture("controlnet/tiny-bf16/cn_plain/diffusion_pytorch_model.safetensors");
    EXPECT_EQ(error(f), "[controlnet] " + f +
                            ": this ControlNet does not match the transformer: dim 64 != the transformer's dim 72");
  }
}

}  // namespace zimage
