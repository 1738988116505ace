// `zimage pull` and download-on-first-use against a fake hub on loopback (tests/hub/fake_hub.py):
// the fixture model served as a repository, with redirects to a second "CDN" port, Range,
// gated repos, dropped connections, corrupt bytes, foreign redirects and bad file names.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "util/test_util.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

const char* kRepo = "tiny-org/zimage-tiny";

// The fake hub as a child process; it exits when its stdin closes.
class FakeHub {
 public:
  FakeHub(const std::string& repo_dir, const std::string& log, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {
        ZIMAGE_PYTHON3, ZIMAGE_FAKE_HUB, "--repo", std::string(kRepo) + "=" + repo_dir, "--log", log, "--lifetime",
        "240"};
    args.insert(args.end(), extra.begin(), extra.end());
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    std::string line;
    pollfd p{out[0], POLLIN, 0};
    char c;
    while (line.find('\n') == std::string::npos && poll(&p, 1, 30000) > 0 && read(out[0], &c, 1) == 1) line += c;
    close(out[0]);
    if (std::sscanf(line.c_str(), "%d %d", &hub_port, &cdn_port) != 2)
      throw std::runtime_error("the fake hub did not start (python3 " ZIMAGE_FAKE_HUB "): '" + line + "'");
  }
  ~FakeHub() {
    close(stdin_);
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(hub_port); }
  int hub_port = 0, cdn_port = 0;

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
};

using CliRun = test::CommandResult;

// The safetensors header's tensor names.
std::vector<std::string> tensor_names(const std::string& file) {
  std::string b = test::read_file(file);
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  auto j = nlohmann::json::parse(b.substr(8, n));
  std::vector<std::string> names;
  for (auto& [k, v] : j.items())
    if (k != "__metadata__") names.push_back(k);
  return names;
}

class HubPull : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("hubpull");
  std::string repo = dir + "/repo";
  std::string cache = dir + "/cache";
  std::string log = dir + "/requests.log";
  std::string fixture = test::fixture("models/tiny-fp32");

  void SetUp() override {
    // The fixture model as a hub repository, plus what a pull must skip, and the VAE as a sharded
    // index whose only shard is the fixture's file.
    for (auto& e : fs::recursive_directory_iterator(fixture)) {
      fs::path rel = e.path().lexically_relative(fixture);
      if (e.is_directory())
        fs::create_directories(repo / rel);
      else if (rel != "vae/diffusion_pytorch_model.safetensors")
        fs::create_symlink(fs::canonical(e.path()), repo / rel);
    }
    fs::create_directories(repo + "/assets");
    test::write_file(repo + "/README.md", "# tiny\n");
    test::write_file(repo + "/assets/sample.png", "not really a png");
    test::write_file(repo + "/transformer/diffusion_pytorch_model.fp16.safetensors", "variant");
    test::write_file(repo + "/text_encoder/pytorch_model.bin", "pickle");
    const std::string vae = fixture + "/vae/diffusion_pytorch_model.safetensors";
    fs::create_symlink(vae, repo + "/vae/diffusion_pytorch_model-00001-of-00001.safetensors");
    test::write_file(repo + "/vae/diffusion_pytorch_model-00002-of-00002.safetensors", "not in the index");
    nlohmann::json idx;
    for (auto& n : tensor_names(vae)) idx["weight_map"][n] = "diffusion_pytorch_model-00001-of-00001.safetensors";
    test::write_file(repo + "/vae/diffusion_pytorch_model.safetensors.index.json", idx.dump());
  }
  void TearDown() override { fs::remove_all(dir); }

  // Runs the CLI with a clean hub environment (cache in `cache`, no token, no proxy) plus `env`.
  CliRun cli(const FakeHub* hub, const std::vector<std::string>& args, const std::string& env = "") {
    std::string cmd =
        "env -u HF_TOKEN -u HF_TOKEN_PATH -u HF_HUB_OFFLINE -u HUGGINGFACE_HUB_CACHE -u http_proxy "
        "-u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u all_proxy -u NO_PROXY -u no_proxy "
        "-u ZIMAGE_HUB_TRUSTED_HOSTS -u ZIMAGE_HUB_ALLOW_HTTP HF_HOME=" +
        test::shell_quote(dir + "/home") + " HF_HUB_CACHE=" + test::shell_quote(cache) +
        " HF_ENDPOINT=" + test::shell_quote(hub ? hub->endpoint() : "http://127.0.0.1:9") + " " + env;
    std::vector<std::string> a{ZIMAGE_CLI_PATH};
    a.insert(a.end(), args.begin(), args.end());
    return test::run_command(a, cmd);
  }
  CliRun generate(const FakeHub* hub, const std::string& env, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {
        "generate", "-m",     kRepo, "-p", "a cat",          "-W", "64",         "-H", "64", "-s",
        "2",        "--seed", "1",   "-o", dir + "/img.png", "-q", "--overwrite"};
    a.insert(a.end(), extra.begin(), extra.end());
    return cli(hub, a, env);
  }
  std::vector<nlohmann::json> requests() {
    std::vector<nlohmann::json> r;
    std::string s = test::read_file(log);
    size_t a = 0;
    while (a < s.size()) {
      size_t b = s.find('\n', a);
      r.push_back(nlohmann::json::parse(s.substr(a, b - a)));
      a = b + 1;
    }
    return r;
  }
  fs::path storage() const { return fs::path(cache) / "models--tiny-org--zimage-tiny"; }
  std::string commit() const { return test::read_file((storage() / "refs/main").string()); }
  fs::path snapshot() const { return storage() / "snapshots" / commit(); }
  std::set<std::string> snapshot_files() const {
    std::set<std::string> s;
    if (!fs::exists(snapshot())) return s;
    for (auto& e : fs::recursive_directory_iterator(snapshot()))
      if (!e.is_directory()) s.insert(e.path().lexically_relative(snapshot()).string());
    return s;
  }
  std::vector<std::string> files_in(const fs::path& d) const {
    std::vector<std::string> v;
    if (fs::exists(d))
      for (auto& e : fs::directory_iterator(d)) v.push_back(e.path().filename().string());
    return v;
  }
};

const std::set<std::string> kPipelineFiles = {"model_index.json",
                                              "scheduler/scheduler_config.json",
                                              "text_encoder/config.json",
                                              "text_encoder/model.safetensors",
                                              "tokenizer/tokenizer.json",
                                              "tokenizer/tokenizer_config.json",
                                              "transformer/config.json",
                                              "transformer/diffusion_pytorch_model.safetensors",
                                              "vae/config.json",
                                              "vae/diffusion_pytorch_model.safetensors.index.json",
                                              "vae/diffusion_pytorch_model-00001-of-00001.safetensors"};

}  // namespace

TEST_F(HubPull, FullPullThenGenerateOfflineThenNothingToTransfer) {
  FakeHub hub(repo, log, {});
  CliRun r = cli(&hub, {"pull", kRepo});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(snapshot_files(), kPipelineFiles);  // no README, png, fp16 variant, .bin or unindexed shard
  EXPECT_EQ(r.out, snapshot().string() + "\n");
  // huggingface_hub's layout: relative symlinks into blobs/, LFS blobs named by sha256.
  for (const auto& f : kPipelineFiles) {
    fs::path p = snapshot() / f;
    ASSERT_TRUE(fs::is_symlink(p)) << f;
    fs::path target = fs::read_symlink(p);
    EXPECT_TRUE(target.is_relative()) << target;
    EXPECT_EQ(fs::canonical(p).parent_path(), fs::canonical(storage() / "blobs")) << f;
    const std::string src = f.starts_with("vae/diffusion_pytorch_model-")
                                ? fixture + "/vae/diffusion_pytorch_model.safetensors"
                                : repo + "/" + f;
    EXPECT_EQ(test::read_file(p.string()), test::read_file(src)) << f;
  }
  EXPECT_EQ(fs::read_symlink(snapshot() / "transformer/config.json").string().substr(0, 15), "../../../blobs/");
  for (auto& b : files_in(storage() / "blobs")) EXPECT_EQ(b.find(".incomplete"), std::string::npos) << b;
  EXPECT_EQ(commit().size(), 40u);
  // The token-less requests: listing, then HEAD on resolve, large files from the CDN port.
  int cdn_gets = 0;
  for (auto& q : requests()) cdn_gets += q["server"] == "cdn";
  EXPECT_EQ(cdn_gets, 3);  // text encoder, transformer, VAE shard

  CliRun g = generate(nullptr, "HF_HUB_OFFLINE=1");
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_TRUE(fs::exists(dir + "/img.png"));

  fs::remove(log);
  CliRun again = cli(&hub, {"pull", kRepo});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.err.find("11 files, 0 downloaded (0.0 MB)"), std::string::npos) << again.err;
  auto q = requests();
  ASSERT_EQ(q.size(), 1u);  // the listing only: no file is fetched again
  EXPECT_EQ(q[0]["path"].get<std::string>().find("/api/models/tiny-org/zimage-tiny/revision/main"), 0u);
}

TEST_F(HubPull, GenerateDownloadsOnFirstUse) {
  FakeHub hub(repo, log, {});
  CliRun g = generate(&hub, "");
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_EQ(snapshot_files(), kPipelineFiles);
  EXPECT_TRUE(fs::exists(dir + "/img.png"));
  // Once cached, generate does not ask the hub at all.
  fs::remove(log);
  ASSERT_EQ(generate(&hub, "").code, 0);
  EXPECT_FALSE(fs::exists(log));
}

TEST_F(HubPull, SingleFilesIncludeAndExclude) {
  FakeHub hub(repo, log, {});
  CliRun r = cli(&hub, {"pull", kRepo, "transformer/config.json", "README.md"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(snapshot_files(), (std::set<std::string>{"README.md", "transformer/config.json"}));
  r = cli(&hub, {"pull", kRepo, "--include", "*.md", "--include", "assets/", "--exclude", "text_encoder/*"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto files = snapshot_files();
  EXPECT_TRUE(files.count("assets/sample.png"));
  EXPECT_TRUE(files.count("vae/diffusion_pytorch_model-00001-of-00001.safetensors"));
  EXPECT_FALSE(files.count("text_encoder/model.safetensors"));
  r = cli(&hub, {"pull", kRepo, "no/such/file.json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("has no file 'no/such/file.json' at revision 'main'"), std::string::npos) << r.err;
}

TEST_F(HubPull, InterruptedDownloadResumesWithRange) {
  const std::string f = "transformer/diffusion_pytorch_model.safetensors";
  // Every transfer of the file is cut after 300 kB, 5 times: the first pull (1 try + 3 retries,
  // each resuming) gives up and keeps the partial blob; the second resumes and completes it.
  FakeHub hub(repo, log, {"--drop", f + ":300000:5"});
  CliRun r = cli(&hub, {"pull", kRepo});
  ASSERT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("download of " + f), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the next pull resumes from there"), std::string::npos) << r.err;
  std::vector<std::string> partial;
  for (auto& b : files_in(storage() / "blobs"))
    if (b.ends_with(".incomplete")) partial.push_back(b);
  ASSERT_EQ(partial.size(), 1u);
  EXPECT_EQ(fs::file_size(storage() / "blobs" / partial[0]), 4u * 300000u);
  EXPECT_FALSE(fs::exists(storage() / "refs/main"));

  r = cli(&hub, {"pull", kRepo});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(test::read_file((snapshot() / f).string()), test::read_file(repo + "/" + f));
  std::vector<std::string> ranges;
  for (auto& q : requests())
    if (q["server"] == "cdn" && q["path"].get<std::string>().find(f) != std::string::npos && !q["range"].is_null())
      ranges.push_back(q["range"]);
  EXPECT_EQ(ranges, (std::vector<std::string>{"bytes=300000-", "bytes=600000-", "bytes=900000-", "bytes=1200000-",
                                              "bytes=1500000-"}));
  for (auto& b : files_in(storage() / "blobs")) EXPECT_EQ(b.find(".incomplete"), std::string::npos) << b;
}

TEST_F(HubPull, CorruptByteIsAHashMismatchAndLeavesNoBlob) {
  const std::string f = "vae/diffusion_pytorch_model-00001-of-00001.safetensors";
  FakeHub hub(repo, log, {"--corrupt", f});
  CliRun r = cli(&hub, {"pull", kRepo, "-j", "1"});
  ASSERT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[hub] " + f + ": sha256 "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("does not match the hub's ETag"), std::string::npos) << r.err;
  const auto vae_size = fs::file_size(fixture + "/vae/diffusion_pytorch_model.safetensors");
  for (auto& b : files_in(storage() / "blobs")) {
    EXPECT_EQ(b.find(".incomplete"), std::string::npos) << b;
    EXPECT_NE(fs::file_size(storage() / "blobs" / b), vae_size) << "the corrupt file became a blob: " << b;
  }
  for (auto& e : fs::recursive_directory_iterator(storage()))
    EXPECT_NE(e.path().filename(), "diffusion_pytorch_model-00001-of-00001.safetensors") << e.path();
}

TEST_F(HubPull, RedirectToForeignHostIsRefused) {
  FakeHub hub(repo, log, {"--foreign-redirect", "text_encoder/model.safetensors"});
  CliRun r = cli(&hub, {"pull", kRepo});
  ASSERT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[hub] refusing the redirect for text_encoder/model.safetensors: http://evil.invalid:"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("is on host 'evil.invalid'"), std::string::npos) << r.err;
}

TEST_F(HubPull, UnsafeFileNameIsRefused) {
  for (const std::string bad : {"../../escaped.json", "/etc/escaped.json", "vae/../../escaped.json"}) {
    fs::remove(log);
    FakeHub hub(repo, log, {"--bad-name", bad});
    CliRun r = cli(&hub, {"pull", kRepo, "--include", "*"});
    ASSERT_EQ(r.code, 1) << bad;
    EXPECT_NE(r.err.find("refusing the listing of tiny-org/zimage-tiny: unsafe file name '" + bad + "'"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(requests().size(), 1u);  // nothing downloaded after the listing
    EXPECT_FALSE(fs::exists(dir + "/escaped.json"));
    EXPECT_FALSE(fs::exists(cache + "/escaped.json"));
  }
}

TEST_F(HubPull, GatedRepoNeedsTheTokenWhichNeverLeavesTheEndpoint) {
  FakeHub hub(repo, log, {"--gated", kRepo, "--token", "hf_secret"});
  CliRun r = cli(&hub, {"pull", kRepo});
  ASSERT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[hub] tiny-org/zimage-tiny: access refused (HTTP 401 GatedRepo)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("set HF_TOKEN"), std::string::npos) << r.err;
  r = cli(&hub, {"pull", kRepo}, "HF_TOKEN=hf_wrong");
  ASSERT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the token was refused"), std::string::npos) << r.err;

  fs::remove(log);
  r = cli(&hub, {"pull", kRepo}, "HF_TOKEN=hf_secret");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(snapshot_files(), kPipelineFiles);
  int hub_auth = 0, cdn = 0;
  for (auto& q : requests()) {
    if (q["server"] == "hub") {
      EXPECT_EQ(q["auth"], "Bearer hf_secret") << q.dump();
      ++hub_auth;
    } else {
      EXPECT_TRUE(q["auth"].is_null()) << "token sent to the CDN: " << q.dump();
      ++cdn;
    }
  }
  EXPECT_GT(hub_auth, 10);
  EXPECT_EQ(cdn, 3);

  // The token file (HF_HOME/token) works the same.
  fs::remove_all(cache);
  fs::create_directories(dir + "/home");
  test::write_file(dir + "/home/token", "hf_secret\n");
  r = cli(&hub, {"pull", kRepo, "model_index.json"});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(HubPull, OfflineModeForbidsDownloadsAndNamesMissingFiles) {
  FakeHub hub(repo, log, {});
  CliRun r = cli(&hub, {"pull", kRepo}, "HF_HUB_OFFLINE=1");
  ASSERT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is not in the cache"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("downloads are off (HF_HUB_OFFLINE=1)"), std::string::npos) << r.err;
  r = generate(&hub, "", {"--local-files-only"});
  ASSERT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("downloads are off (local_files_only)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(log)) << "offline mode contacted the hub";

  // A snapshot that lacks files: offline, the error names them; online, generate completes it.
  ASSERT_EQ(cli(&hub, {"pull", kRepo, "--exclude", "vae/*", "--exclude", "tokenizer/tokenizer.json"}).code, 0);
  r = generate(&hub, "HF_HUB_OFFLINE=1");
  ASSERT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("missing tokenizer/tokenizer.json, vae/"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/img.png"));
  r = generate(&hub, "");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(snapshot_files(), kPipelineFiles);
}

TEST_F(HubPull, ProxyEnvironmentIsHonoured) {
  // libcurl takes the proxy from the environment (http_proxy for http URLs, HTTPS_PROXY for
  // https): a proxy on a closed port makes the pull fail; NO_PROXY for the host bypasses it.
  FakeHub hub(repo, log, {});
  CliRun r = cli(&hub, {"pull", kRepo, "model_index.json"}, "http_proxy=http://127.0.0.1:9");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[hub] listing tiny-org/zimage-tiny"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(log));
  r = cli(&hub, {"pull", kRepo, "model_index.json"}, "http_proxy=http://127.0.0.1:9 NO_PROXY=127.0.0.1");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(HubPull, BadArgumentsAreClearErrors) {
  FakeHub hub(repo, log, {});
  struct Case {
    std::vector<std::string> args;
    std::string what;
  } cases[] = {
      {{"pull", "../etc"}, "[hub] '../etc' is not a hub repository id"},
      {{"pull", "a/b/c"}, "[hub] 'a/b/c' is not a hub repository id"},
      {{"pull", kRepo, "--revision", "../../x"}, "[hub] invalid revision '../../x'"},
      {{"pull", kRepo, "../outside.json"}, "[hub] refusing file name '../outside.json'"},
      {{"pull", "tiny-org/no-such-repo"}, "not found (HTTP 404 RepoNotFound)"},
      {{"pull", kRepo, "--revision", "v9"},
       "revision 'v9' of tiny-org/zimage-tiny: not found (HTTP 404 RevisionNotFound)"},
      {{"pull", kRepo, "--include", "nothing*", "--exclude", "*"}, "no file matches the selection"},
      {{"info", kRepo}, "run `zimage pull tiny-org/zimage-tiny`"},  // info never downloads
  };
  for (auto& c : cases) {
    CliRun r = cli(&hub, c.args);
    EXPECT_EQ(r.code, 1) << c.what;
    EXPECT_NE(r.err.find(c.what), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // A cache folder that cannot be created is an error naming it, not a crash.
  test::write_file(dir + "/a-file", "x");
  CliRun r = cli(&hub, {"pull", kRepo}, "HF_HUB_CACHE=" + test::shell_quote(dir + "/a-file/cache"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[hub] cannot write the cache for tiny-org/zimage-tiny: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(dir + "/a-file/cache"), std::string::npos) << r.err;
  // Only model_index.json (read to select the files) may have arrived; no ref was written.
  EXPECT_FALSE(fs::exists(storage() / "refs"));
  for (auto& e : fs::recursive_directory_iterator(storage() / "snapshots"))
    if (!e.is_directory()) {
      EXPECT_EQ(e.path().filename(), "model_index.json");
    }
}

TEST_F(HubPull, NotEnoughDiskSpaceFailsBeforeDownloading) {
  FakeHub hub(repo, log, {"--huge", "transformer/diffusion_pytorch_model.safetensors"});
  CliRun r = cli(&hub, {"pull", kRepo});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[hub] not enough disk space for tiny-org/zimage-tiny in "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the download needs 1000.0 TB"), std::string::npos) << r.err;
  for (auto& q : requests()) EXPECT_EQ(q["server"], "hub") << "downloaded despite the disk check: " << q.dump();
}

TEST_F(HubPull, CompletePartialFileIsVerifiedNotDownloadedAgain) {
  // A pull that stopped after the last byte but before the rename: the .incomplete file is whole.
  FakeHub hub(repo, log, {});
  ASSERT_EQ(cli(&hub, {"pull", kRepo}).code, 0);
  const std::string f = "transformer/diffusion_pytorch_model.safetensors";
  const std::string etag = fs::read_symlink(snapshot() / f).filename().string();
  ASSERT_EQ(etag.size(), 64u);
  fs::rename(storage() / "blobs" / etag, storage() / "blobs" / (etag + ".incomplete"));
  fs::remove(snapshot() / f);
  fs::remove(log);
  CliRun r = cli(&hub, {"pull", kRepo});
  ASSERT_EQ(r.code, 0) << r.err;
  for (auto& q : requests()) EXPECT_EQ(q["server"], "hub") << "fetched again: " << q.dump();
  EXPECT_EQ(test::read_file((snapshot() / f).string()), test::read_file(repo + "/" + f));
  EXPECT_FALSE(fs::exists(storage() / "blobs" / (etag + ".incomplete")));
}
