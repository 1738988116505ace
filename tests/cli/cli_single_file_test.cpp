// `zimage generate` without -m (issue 15's Done-when): a GGUF transformer (original key layout,
// Q8_0), a GGUF Qwen3 text encoder carrying its tokenizer, a single-file VAE and a LoRA give the
// same image, bit for bit, as the model folder whose configs describe those files with the same
// files as overrides; the PNG records the files and --from-png regenerates the image.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "util/single_files.h"
#include "util/test_util.h"
#include "zimage/image.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

class CliSingleFile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    files_ = new test::SingleFiles(test::write_single_files(test::temp_dir("cli_single")));
  }
  static void TearDownTestSuite() {
    fs::remove_all(files_->dir);
    delete files_;
  }
  static test::SingleFiles* files_;
  const test::SingleFiles& f() const { return *files_; }
  test::CommandResult run(std::vector<std::string> args) {
    args.insert(args.begin(), {ZIMAGE_CLI_PATH, "generate"});
    return test::run_command(args, "timeout 300");
  }
  std::vector<std::string> common(const std::string& out) {
    return {"-p", "a red fox in the snow", "-W", "64", "-H", "64", "--seed", "5", "--steps", "2", "-o", out, "-q"};
  }
  std::vector<std::string> files_args(bool lora = true) {
    std::vector<std::string> a{"--transformer", f().transformer, "--text-encoder", f().text_encoder, "--vae", f().vae};
    if (lora) a.insert(a.end(), {"--lora", f().lora + ":0.8"});
    return a;
  }
  static std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
  std::vector<uint8_t> pixels(const std::string& png) { return read_png(png).pixels; }
};
test::SingleFiles* CliSingleFile::files_ = nullptr;

}  // namespace

TEST_F(CliSingleFile, NoModelEqualsModelFolderWithOverridesAndRegenerates) {
  const std::string a = f().dir + "/a.png", b = f().dir + "/b.png", c = f().dir + "/c.png", n = f().dir + "/n.png";
  test::CommandResult r = run(cat(files_args(), common(a)));  // the Done-when command
  ASSERT_EQ(r.code, 0) << r.err;
  r = run(cat(cat({"-m", f().model}, files_args()), common(b)));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto pa = pixels(a);
  EXPECT_EQ(pa, pixels(b));
  ASSERT_EQ(pa.size(), 64u * 64u * 3u);
  EXPECT_NE(*std::min_element(pa.begin(), pa.end()), *std::max_element(pa.begin(), pa.end()));  // not a flat image
  // the LoRA ran: without it the image differs
  r = run(cat(files_args(/*lora=*/false), common(n)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(pa, pixels(n));
  // the PNG records the files (and no model); --from-png loads them again
  const auto meta = read_png_metadata(a);
  const nlohmann::json z = nlohmann::json::parse(meta.at("zimage"));
  EXPECT_EQ(z["model"], "");
  EXPECT_EQ(z["transformer_file"], f().transformer);
  EXPECT_EQ(z["text_encoder_file"], f().text_encoder);
  EXPECT_EQ(z["vae_file"], f().vae);
  EXPECT_NE(meta.at("parameters").find("Model: z,"), std::string::npos) << meta.at("parameters");
  r = run({"--from-png", a, "-o", c, "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(pa, pixels(c));
}

TEST_F(CliSingleFile, ErrorsSayWhatToPass) {
  const std::string out = f().dir + "/e.png";
  test::CommandResult r = run(common(out));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[generate] no model: give -m/--model, or every component as a single file (--transformer, "
                       "--text-encoder, --vae)"),
            std::string::npos)
      << r.err;
  r = run(cat({"--transformer", f().transformer, "--text-encoder", f().text_encoder}, common(out)));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[generate] no model (-m): every component must then be a single file; missing --vae"),
            std::string::npos)
      << r.err;
  // a .safetensors text encoder carries no tokenizer: --tokenizer DIR
  const std::string te = test::fixture("models/tiny-fp32/text_encoder/model.safetensors");
  r = run(cat({"--transformer", f().transformer, "--text-encoder", te, "--vae", f().vae}, common(out)));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no tokenizer: the text encoder '" + te + "' is not a GGUF file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--tokenizer DIR"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = run(cat({"--transformer", f().transformer, "--text-encoder", te, "--vae", f().vae, "--tokenizer",
               test::fixture("qwen3_tokenizer")},
              common(out)));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out));
}

// `zimage info` without a model: the configs inferred from the files, as generate infers them;
// with one, the files override its weights. The same errors as generate's when a file is missing.
TEST_F(CliSingleFile, InfoWithoutModelPrintsTheInferredConfigs) {
  auto info = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {ZIMAGE_CLI_PATH, "info"});
    return test::run_command(args, "timeout 300");
  };
  test::CommandResult r = info(files_args(/*lora=*/false));
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["folder"].is_null());
  const nlohmann::json& c = j["components"];
  EXPECT_EQ(c["transformer"]["file"], f().transformer);
  EXPECT_EQ(c["transformer"]["config_inferred"], true);
  EXPECT_EQ(c["transformer"]["config"]["dim"], 128);
  EXPECT_EQ(c["transformer"]["config"]["n_layers"], 1);
  EXPECT_EQ(c["transformer"]["config"]["axes_dims"], nlohmann::json({32, 48, 48}));
  EXPECT_EQ(c["text_encoder"]["file"], f().text_encoder);
  EXPECT_EQ(c["text_encoder"]["config"]["num_hidden_layers"], 3);
  EXPECT_EQ(c["text_encoder"]["config"]["num_key_value_heads"], 1);
  EXPECT_EQ(c["text_encoder"]["config"]["rope_theta"], 10000.0);  // the GGUF's qwen3.rope.freq_base
  EXPECT_EQ(c["vae"]["file"], f().vae);
  EXPECT_EQ(c["vae"]["config"]["block_out_channels"], nlohmann::json({32, 32}));
  EXPECT_EQ(c["vae"]["config"]["scaling_factor"], 0.3611);
  EXPECT_EQ(c["scheduler"]["config"]["shift"], 3.0);
  EXPECT_EQ(c["tokenizer"]["file"], f().text_encoder);  // the GGUF's tokenizer
  EXPECT_GT(j["total_parameters"].get<int64_t>(), 0);
  // a model folder with the files as overrides: its configs, the files' weights
  r = info(cat({f().model}, files_args(false)));
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json m = nlohmann::json::parse(r.out);
  EXPECT_EQ(m["components"]["transformer"]["file"], f().transformer);
  EXPECT_EQ(m["components"]["transformer"]["config"]["dim"], 128);
  EXPECT_EQ(m["total_parameters"], j["total_parameters"]);
  // errors
  r = info({});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[info] no model: give MODEL, or every component as a single file (--transformer, "
                       "--text-encoder, --vae)"),
            std::string::npos)
      << r.err;
  r = info({"--transformer", f().transformer});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[info] no model (MODEL): every component must then be a single file; missing --text-encoder, "
                       "--vae"),
            std::string::npos)
      << r.err;
  r = info({"--transformer", f().vae, "--text-encoder", f().text_encoder, "--vae", f().vae});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[transformer] " + f().vae + ": missing tensor 'x_pad_token'"), std::string::npos) << r.err;
}

namespace {
std::string base64_decode(const std::string& s) {
  std::string out;
  int val = 0, bits = -8;
  for (unsigned char ch : s) {
    const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char* p = std::strchr(table, ch);
    if (ch == '=' || !ch || !p) break;
    val = (val << 6) + int(p - table);
    bits += 6;
    if (bits >= 0) {
      out.push_back(char((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

// POST `body` (JSON) to 127.0.0.1:port `path`; the response body ("" on a connection error).
std::string http_post(int port, const std::string& path, const std::string& body) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (s >= 0) close(s);
    return "";
  }
  const std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                          "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    const ssize_t n = write(s, req.data() + off, req.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
  std::string resp;
  char buf[65536];
  for (ssize_t n; (n = read(s, buf, sizeof buf)) > 0;) resp.append(buf, size_t(n));
  close(s);
  const size_t h = resp.find("\r\n\r\n");
  return h == std::string::npos ? "" : resp.substr(h + 4);
}
}  // namespace

// `zimage serve` without a model: the same files, one tiny txt2img request, the image generate
// makes from them; its PNG records the files.
TEST_F(CliSingleFile, ServeWithoutModelAnswersARequest) {
  const std::string log = f().dir + "/serve.log", gen = f().dir + "/gen.png", got = f().dir + "/served.png";
  test::CommandResult r = run(cat(files_args(false), common(gen)));
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> args{ZIMAGE_CLI_PATH, "serve", "--port", "0", "-q"};
  for (const std::string& a : files_args(false)) args.push_back(a);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fd);
  int port = 0;
  bool ready = false;
  for (int i = 0; i < 1200 && !ready; ++i) {  // up to 120 s to load
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::string text = test::read_file(log);
    if (const size_t p = text.find("listening on http://127.0.0.1:"); p != std::string::npos && port == 0)
      port = std::atoi(text.c_str() + p + 30);
    ready = text.find("ready: http://") != std::string::npos;
    if (waitpid(pid, nullptr, WNOHANG) == pid) break;  // it exited: the log says why
  }
  std::string body;
  if (ready)
    body = http_post(port, "/sdapi/v1/txt2img",
                     R"({"prompt": "a red fox in the snow", "steps": 2, "width": 64, "height": 64, "seed": 5})");
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(ready) << test::read_file(log);
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("images")) << body.substr(0, 500);
  test::write_file(got, base64_decode(j["images"][0].get<std::string>()));
  EXPECT_EQ(pixels(got), pixels(gen));
  const nlohmann::json z = nlohmann::json::parse(read_png_metadata(got).at("zimage"));
  EXPECT_EQ(z["transformer_file"], f().transformer);
  EXPECT_EQ(z["text_encoder_file"], f().text_encoder);
  EXPECT_EQ(z["vae_file"], f().vae);
  EXPECT_EQ(z["model"], "");
}
