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

// A cached snapshot with every file ZImagePipeline needs (contents do not matter here).
static void write_complete_snapshot(const std::string& snap) {
  fs::create_directories(snap);
  test::write_file(snap + "/model_index.json",
                   R"({"_class_name":"ZImagePipeline","scheduler":["diffusers","FlowMatchEulerDiscreteScheduler"],)"
                   R"("tokenizer":["transformers","Qwen2Tokenizer"],"vae":["diffusers","AutoencoderKL"]})");
  fs::create_directories(snap + "/scheduler");
  fs::create_directories(snap + "/tokenizer");
  fs::create_directories(snap + "/vae");
  test::write_file(snap + "/scheduler/scheduler_config.json", "{}");
  test::write_file(snap + "/tokenizer/tokenizer.json", "{}");
  test::write_file(snap + "/tokenizer/tokenizer_config.json", "{}");
  test::write_file(snap + "/vae/config.json", "{}");
  test::write_file(snap + "/vae/diffusion_pytorch_model.safetensors", "");
}

TEST(ModelFolder, HubIdResolvesThroughRefs) {
  std::string root = test::temp_dir("hub");
  std::string commit(40, 'a');
  fs::create_directories(root + "/models--Tongyi-MAI--Z-Image-Turbo/refs");
  write_complete_snapshot(root + "/models--Tongyi-MAI--Z-Image-Turbo/snapshots/" + commit);
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
  o.local_files_only = true;  // (online, a missing revision is downloaded)
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); }, "revision 'dev'");
  o.revision = "../main";
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); }, "invalid revision '../main'");
  fs::remove_all(root);
}

TEST(ModelFolder, IncompleteSnapshotOfflineNamesMissingFiles) {
  std::string root = test::temp_dir("hub");
  std::string snap = root + "/models--Tongyi-MAI--Z-Image-Turbo/snapshots/" + std::string(40, 'b');
  write_complete_snapshot(snap);
  fs::create_directories(root + "/models--Tongyi-MAI--Z-Image-Turbo/refs");
  test::write_file(root + "/models--Tongyi-MAI--Z-Image-Turbo/refs/main", std::string(40, 'b'));
  fs::remove(snap + "/vae/diffusion_pytorch_model.safetensors");
  fs::remove(snap + "/tokenizer/tokenizer.json");
  ResolveOptions o;
  o.cache_dir = root;
  o.local_files_only = true;
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); },
               "missing tokenizer/tokenizer.json, vae/diffusion_pytorch_model.safetensors");
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

TEST(ModelFolder, MissingModelOfflineSaysHowToGetIt) {
  ResolveOptions o;
  o.cache_dir = test::temp_dir("empty");
  o.local_files_only = true;
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); },
               "run `zimage pull Tongyi-MAI/Z-Image-Turbo`");
  expect_error([&] { resolve_model_folder("/no/such/folder", o); }, "does not exist");
  o.force_download = true;
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); }, "force_download cannot be used offline");
  o.local_files_only = false;
  o.force_download = false;
  setenv("HF_HUB_OFFLINE", "1", 1);
  expect_error([&] { resolve_model_folder("Tongyi-MAI/Z-Image-Turbo", o); }, "HF_HUB_OFFLINE=1");
  unsetenv("HF_HUB_OFFLINE");
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

namespace {
// A folder with the five component folders and a model_index.json from `index`.
std::string index_folder(const std::string& index) {
  std::string dir = test::temp_dir("mi_cls");
  test::write_file(dir + "/model_index.json", index);
  for (auto c : {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}) fs::create_directories(dir + "/" + c);
  return dir;
}
const std::string kComponents =
    R"("scheduler":["diffusers","FlowMatchEulerDiscreteScheduler"],"text_encoder":["transformers","Qwen3Model"],)"
    R"("tokenizer":["transformers","Qwen2Tokenizer"],"transformer":["diffusers","ZImageTransformer2DModel"])";
}  // namespace

TEST(ModelFolder, ModelIndexClassNamesAreChecked) {
  struct Case {
    std::string index, what;
  };
  const std::vector<Case> cases = {
      {R"({"_class_name":5,)" + kComponents + R"(,"vae":["diffusers","AutoencoderKL"]})",
       "'_class_name' should be a string, got 5"},
      {"{" + kComponents + R"(,"vae":["diffusers","AutoencoderKL"]})", "'_class_name' is missing"},
      {R"({"_class_name":"FluxPipeline",)" + kComponents + R"(,"vae":["diffusers","AutoencoderKL"]})",
       "'_class_name' = \"FluxPipeline\" is not a Z-Image pipeline (expected \"ZImagePipeline\", "
       "\"ZImageImg2ImgPipeline\" or \"ZImageInpaintPipeline\")"},
      {R"({"_class_name":"ZImagePipeline",)" + kComponents + R"(,"vae":["diffusers","AutoencoderTiny"]})",
       "'vae' = [\"diffusers\",\"AutoencoderTiny\"] is not supported (expected [\"diffusers\", \"AutoencoderKL\"])"},
      {R"({"_class_name":"ZImagePipeline",)" + kComponents + R"(,"vae":["transformers","AutoencoderKL"]})",
       "'vae' = [\"transformers\",\"AutoencoderKL\"] is not supported"},
      {R"({"_class_name":"ZImagePipeline",)" + kComponents + R"(,"vae":[null,null]})",
       "'vae' should be a [\"library\", \"ClassName\"] pair like [\"diffusers\", \"AutoencoderKL\"], got [null,null]"},
      {R"({"_class_name":"ZImagePipeline",)" + kComponents + "}", "declares no 'vae' component"},
  };
  for (const auto& c : cases) {
    const std::string dir = index_folder(c.index);
    expect_error([&] { read_model_index(dir); }, c.what);
    expect_error([&] { read_model_index(dir); }, dir + "/model_index.json");
    fs::remove_all(dir);
  }
  // What the Z-Image family's folders say is accepted (Qwen3ForCausalLM and the fast tokenizer too).
  const std::string dir = index_folder(
      R"({"_class_name":"ZImagePipeline","scheduler":["diffusers","FlowMatchEulerDiscreteScheduler"],)"
      R"("text_encoder":["transformers","Qwen3ForCausalLM"],"tokenizer":["transformers","Qwen2TokenizerFast"],)"
      R"("transformer":["diffusers","ZImageTransformer2DModel"],"vae":["diffusers","AutoencoderKL"]})");
  EXPECT_EQ(read_model_index(dir).components.at("text_encoder").second, "Qwen3ForCausalLM");
  fs::remove_all(dir);
}

TEST(ModelFolder, FileIsNotAModelFolder) {
  const std::string dir = test::temp_dir("mf_file");
  test::write_file(dir + "/model.safetensors", "x");
  test::write_file(dir + "/notes.txt", "x");
  ResolveOptions o;
  expect_error([&] { resolve_model_folder(dir + "/model.safetensors", o); },
               "is a file, not a model folder: loading a single .safetensors checkpoint is not supported yet");
  expect_error([&] { resolve_model_folder(dir + "/notes.txt", o); }, "is a file, not a model folder");
  fs::remove_all(dir);
}
