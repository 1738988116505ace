// `zimage info` and `zimage generate` on broken model folders: both exit 1 with one line naming
// the file, key and value (never a crash, a hang or "internal error"), and info refuses what
// generate refuses, with the same error.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "util/test_util.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

using CliRun = test::CommandResult;

class CliModelFolder : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cli_folder");
  void TearDown() override { fs::remove_all(dir); }

  // A writable copy of the tiny fp32 model (symlinks resolved).
  std::string copy_model(const std::string& name = "m") {
    const std::string m = dir + "/" + name;
    fs::copy(test::fixture("models/tiny-fp32"), m, fs::copy_options::recursive);  // follows the tokenizer's symlinks
    for (auto& e : fs::recursive_directory_iterator(m)) EXPECT_FALSE(e.is_symlink()) << e.path();
    return m;
  }
  void edit_json(const std::string& path, const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json j = nlohmann::json::parse(test::read_file(path));
    f(j);
    test::write_file(path, j.dump(1));
  }
  // Runs the CLI; `timeout` turns a hang into exit code 124 instead of a stuck test.
  CliRun run(const std::vector<std::string>& args) {
    std::vector<std::string> a{ZIMAGE_CLI_PATH};
    a.insert(a.end(), args.begin(), args.end());
    return test::run_command(a, "timeout 120");
  }
  CliRun info(const std::string& m) { return run({"info", m}); }
  CliRun generate(const std::string& m, std::vector<std::string> extra = {}) {
    std::vector<std::string> a{"generate", "-m", m,   "-p", "a cat",          "-W", "64", "-H",
                               "64",       "-s", "1", "-o", dir + "/out.png", "-q"};
    a.insert(a.end(), extra.begin(), extra.end());
    return run(a);
  }
  // Exit code 1 (a zimage::Error), one line on stderr containing every part, no image written.
  void expect_error(const CliRun& r, const std::vector<std::string>& parts) {
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
    for (auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << "'" << p << "' not in: " << r.err;
    EXPECT_FALSE(fs::exists(dir + "/out.png"));
  }
  // info and generate fail with the same message.
  void expect_both(const std::string& m, const std::vector<std::string>& parts,
                   std::vector<std::string> gen_extra = {}) {
    const CliRun i = info(m), g = generate(m, gen_extra);
    expect_error(i, parts);
    expect_error(g, parts);
    EXPECT_EQ(i.err, g.err);
  }
};

}  // namespace

TEST_F(CliModelFolder, GoodFolderInfoSucceeds) {
  const CliRun r = info(copy_model());
  EXPECT_EQ(r.code, 0) << r.err;
}

// Defect 1: info crashed (stack overflow copying the parsed value) on a config nested 100,000 deep.
TEST_F(CliModelFolder, DeeplyNestedConfig) {
  const std::string m = copy_model();
  const std::string p = m + "/transformer/config.json";
  const std::string body = test::read_file(p);
  test::write_file(
      p, "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + ", " + body.substr(body.find('{') + 1));
  expect_both(m, {"[transformer]", p, "nested deeper than 128 levels"});
}

// Defect 2: SIGFPE (height % 0) with --low-memory and block_out_channels [] (64 entries: the same;
// 40 entries: "divisible by 1099511627776").
TEST_F(CliModelFolder, VaeBlockOutChannelsOutOfRange) {
  for (size_t n : {size_t(0), size_t(40), size_t(64)}) {
    std::string name = "m";  // appended, not "lit" + std::string&& (GCC 12 -Wrestrict false positive, bug 105329)
    name += std::to_string(n);
    const std::string m = copy_model(name);
    edit_json(m + "/vae/config.json", [&](nlohmann::json& j) {
      j["block_out_channels"] = std::vector<int>(n, 8);
      j["down_block_types"] = std::vector<std::string>(n, "DownEncoderBlock2D");
      j["up_block_types"] = std::vector<std::string>(n, "UpDecoderBlock2D");
    });
    expect_both(m, {"[vae]", m + "/vae/config.json", "'block_out_channels' must list 1 to 8 channel counts"},
                {"--low-memory"});
  }
}

// Defect 4: a FIFO in place of a file hung info and generate forever.
TEST_F(CliModelFolder, FifoInPlaceOfAFile) {
  for (const char* rel : {"model_index.json", "transformer/config.json", "vae/diffusion_pytorch_model.safetensors",
                          "tokenizer/tokenizer.json", "scheduler/scheduler_config.json"}) {
    const std::string m = copy_model("fifo" + std::to_string(std::hash<std::string>()(rel)));
    fs::remove(m + "/" + rel);
    ASSERT_EQ(mkfifo((m + "/" + rel).c_str(), 0600), 0);
    SCOPED_TRACE(rel);
    expect_both(m, {m + "/" + rel, "is a FIFO (named pipe), not a regular file"});
  }
}

TEST_F(CliModelFolder, FifoIndexShard) {
  const std::string m = copy_model();
  const std::string vae = m + "/vae";
  fs::rename(vae + "/diffusion_pytorch_model.safetensors", vae + "/part-1.safetensors");
  SafeTensorsFile f(vae + "/part-1.safetensors");
  nlohmann::json wm;
  for (auto& [name, ti] : f.tensors())
    wm[name] = name.rfind("decoder.", 0) == 0 ? "part-2.safetensors" : "part-1.safetensors";
  test::write_file(vae + "/diffusion_pytorch_model.safetensors.index.json", nlohmann::json{{"weight_map", wm}}.dump());
  ASSERT_EQ(mkfifo((vae + "/part-2.safetensors").c_str(), 0600), 0);
  expect_both(m, {"part-2.safetensors", "is a FIFO"});
  // The index itself as a FIFO.
  fs::remove(vae + "/part-2.safetensors");
  fs::remove(vae + "/diffusion_pytorch_model.safetensors.index.json");
  ASSERT_EQ(mkfifo((vae + "/diffusion_pytorch_model.safetensors.index.json").c_str(), 0600), 0);
  expect_both(m, {"diffusion_pytorch_model.safetensors.index.json", "is a FIFO"});
}

// Defect 5: "internal error", exit 3, naming nothing.
TEST_F(CliModelFolder, ClassNameNotAString) {
  const std::string m = copy_model();
  edit_json(m + "/model_index.json", [](nlohmann::json& j) { j["_class_name"] = 5; });
  expect_both(m, {m + "/model_index.json", "'_class_name' should be a string, got 5"});
}

TEST_F(CliModelFolder, ConfigIsADirectory) {
  const std::string m = copy_model();
  fs::remove(m + "/transformer/config.json");
  fs::create_directory(m + "/transformer/config.json");
  expect_both(m, {"[transformer]", m + "/transformer/config.json", "is a directory, not a regular file"});
}

// Defect 9: axes_lens [16777216] * 3 built 1.6 GB of RoPE tables on the tiny model.
TEST_F(CliModelFolder, AxesLensOutOfRange) {
  const std::string m = copy_model();
  edit_json(m + "/transformer/config.json", [](nlohmann::json& j) { j["axes_lens"] = {16777216, 16777216, 16777216}; });
  expect_both(m, {"[transformer]", "axes_lens[0] = 16777216 is out of range [1, 1048576]"});
}

// info returned 0 on folders generate rejects.
TEST_F(CliModelFolder, InfoRefusesWhatGenerateRefuses) {
  {
    const std::string m = copy_model("nocfg");
    fs::remove(m + "/vae/config.json");
    expect_both(m, {"[vae]", m + "/vae/config.json", "cannot open"});
  }
  {
    const std::string m = copy_model("tok");
    test::write_file(m + "/tokenizer/tokenizer.json", "{");
    expect_both(m, {"[tokenizer]", m + "/tokenizer/tokenizer.json", "not valid JSON"});
  }
  {
    const std::string m = copy_model("tensor");
    const std::string file = m + "/vae/diffusion_pytorch_model.safetensors";
    std::map<std::string, Tensor> tensors;
    {
      SafeTensorsFile f(file);
      for (auto& [name, ti] : f.tensors()) tensors[name] = f.get(name).clone();
    }
    tensors.erase("decoder.conv_out.bias");
    save_safetensors(file, tensors);
    expect_both(m, {"[vae]", "missing tensor 'decoder.conv_out.bias'"});
  }
  {
    const std::string m = copy_model("shape");
    const std::string file = m + "/transformer/diffusion_pytorch_model.safetensors";
    std::map<std::string, Tensor> tensors;
    {
      SafeTensorsFile f(file);
      for (auto& [name, ti] : f.tensors()) tensors[name] = f.get(name).clone();
    }
    tensors["layers.2.feed_forward.w2.weight"] = Tensor::zeros(DType::F32, {72, 8});
    save_safetensors(file, tensors);
    expect_both(m, {"[transformer]", "'layers.2.feed_forward.w2.weight' has shape [72, 8], expected [72, 192]"});
  }
}

TEST_F(CliModelFolder, FileInsteadOfFolder) {
  const std::string m = copy_model();
  expect_both(m + "/model_index.json", {"is a file, not a model folder"});
  expect_both(m + "/vae/diffusion_pytorch_model.safetensors",
              {"is a file, not a model folder", "loading a single .safetensors checkpoint is not supported yet"});
}

TEST_F(CliModelFolder, WrongClassNames) {
  const std::string m = copy_model();
  edit_json(m + "/model_index.json", [](nlohmann::json& j) { j["_class_name"] = "StableDiffusionPipeline"; });
  expect_both(m, {"'_class_name' = \"StableDiffusionPipeline\" is not a Z-Image pipeline"});
  edit_json(m + "/model_index.json", [](nlohmann::json& j) {
    j["_class_name"] = "ZImagePipeline";
    j["vae"] = {"diffusers", "AutoencoderTiny"};
  });
  expect_both(
      m,
      {"'vae' = [\"diffusers\",\"AutoencoderTiny\"] is not supported (expected [\"diffusers\", \"AutoencoderKL\"])"});
  edit_json(m + "/model_index.json", [](nlohmann::json& j) { j["vae"] = {"diffusers", "AutoencoderKL"}; });
  edit_json(m + "/vae/config.json", [](nlohmann::json& j) { j["_class_name"] = "AutoencoderTiny"; });
  expect_both(m, {"[vae]", "'_class_name' = \"AutoencoderTiny\" is not supported"});
}
