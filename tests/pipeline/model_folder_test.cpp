#include <gtest/gtest.h>

#include <filesystem>

#include "pipeline/model_folder.h"
#include "util/test_util.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {
void expect_error(const std::function<void()>& f, const std::string& what) {
  try {
    f();
    FAIL() << "expected error containing: " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(ModelFolder, HubIdResolvesThroughRefs) {
  std::string root = test::temp_dir("hub");
  std::string commit(40, 'a');
  fs::create_directories(root + "/models--Tongyi-MAI--Z-Image-Turbo/refs");
  fs::create_directories(root + "/models--Tongyi-MAI--Z-Image-Turbo/snapshots/" + commit + "/vae");
  test::write_file(root + "/models--Tongyi-MAI--Z-Image-Turbo/refs/main", commit + "\n");
  ResolveOptions o;
  o.cache_dir = root;
  std::string p = resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o);
  EXPECT_EQ(p, fs::path(root + "/models--Tongyi-MAI--Z-Image-Turbo/snapshots/" + commit).lexically_normal().string());
  o.subfolder = "vae";
  EXPECT_NE(resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o).find("/vae"), std::string::npos);
  o.subfolder = "";
  o.revision = commit;  // a commit hash works without a ref
  EXPECT_EQ(resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o), p);
  o.revision = "dev";
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); }, "revision 'dev'");
  fs::remove_all(root);
}

TEST(ModelFolder, EnvironmentCacheRoots) {
  setenv("HF_HUB_CACHE", "/x/hub", 1);
  EXPECT_EQ(hf_cache_root(""), "/x/hub");
  EXPECT_EQ(hf_cache_root("/explicit"), "/explicit");
  unsetenv("HF_HUB_CACHE");
  setenv("HF_HOME", "/y", 1);
  EXPECT_EQ(hf_cache_root(""), "/y/hub");
  unsetenv("HF_HOME");
}

TEST(ModelFolder, MissingModelSaysHowToGetIt) {
  ResolveOptions o;
  o.cache_dir = test::temp_dir("empty");
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); }, "huggingface-cli download Tongyi-MAI/Z-Image-Turbo");
  expect_error([&] { resolve_model_folder("/no/such/folder", o); }, "does not exist");
  o.force_download = true;
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); }, "downloading is not supported");
}

TEST(ModelFolder, ModelIndexNamesMissingComponent) {
  std::string dir = test::temp_dir("mi");
  test::write_file(dir + "/model_index.json",
                   R"({"_class_name":"ZImagePipeline","scheduler":["diffusers","FlowMatchEulerDiscreteScheduler"],)"
                   R"("text_encoder":["transformers","Qwen3Model"],"tokenizer":["transformers","Qwen2Tokenizer"],)"
                   R"("transformer":["diffusers","ZImageTransformer2DModel"],"vae":["diffusers","AutoencoderKL"]})");
  for (auto c : {"scheduler", "text_encoder", "tokenizer", "transformer"}) fs::create_directories(dir + "/" + c);
  expect_error([&] { read_model_index(dir); }, "missing the 'vae/' folder");
  fs::create_directories(dir + "/vae");
  auto mi = read_model_index(dir);
  EXPECT_EQ(mi.class_name, "ZImagePipeline");
  EXPECT_EQ(mi.components.at("vae").second, "AutoencoderKL");
  expect_error([&] { read_model_index(dir + "/vae"); }, "no model_index.json");
  fs::remove_all(dir);
}

// Spotted while writing fuzz/json_config_fuzz (the crash input is in its corpus): a non-string
// _class_name threw nlohmann::json's type_error instead of a zimage::Error.
TEST(ModelFolder, ModelIndexClassNameMustBeAString) {
  std::string dir = test::temp_dir("mi_class");
  for (auto c : {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}) fs::create_directories(dir + "/" + c);
  test::write_file(dir + "/model_index.json",
                   R"({"_class_name":5,"scheduler":["diffusers","FlowMatchEulerDiscreteScheduler"],)"
                   R"("text_encoder":["transformers","Qwen3Model"],"tokenizer":["transformers","Qwen2Tokenizer"],)"
                   R"("transformer":["diffusers","ZImageTransformer2DModel"],"vae":["diffusers","AutoencoderKL"]})");
  expect_error([&] { read_model_index(dir); }, "model_index.json: '_class_name' must be a string, got 5");
  fs::remove_all(dir);
}
