// The hub client's pieces: file selection, name checks, URL and host policy, environment.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "hub/http.h"
#include "hub/hub.h"
#include "util/test_util.h"

using namespace zimage;
using namespace zimage::hub;
namespace fs = std::filesystem;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(HubNames, SafeRepoPaths) {
  EXPECT_TRUE(is_safe_repo_path("model_index.json"));
  EXPECT_TRUE(is_safe_repo_path("vae/diffusion_pytorch_model.safetensors"));
  EXPECT_TRUE(is_safe_repo_path("a..b/c"));  // ".." only as a whole component is special
  for (const char* bad :
       {"", "/etc/passwd", "../x", "a/../../x", "a/..", "./a", "a//b", "a/", "a\\..\\b", "a\nb", ".."})
    EXPECT_FALSE(is_safe_repo_path(bad)) << bad;
}

TEST(HubNames, RepoIdsAndCacheFolder) {
  EXPECT_EQ(repo_folder_name("Tongyi-MAI/Z-Image-Turbo"), "models--Tongyi-MAI--Z-Image-Turbo");
  EXPECT_TRUE(is_repo_id("a/b"));
  for (const char* bad : {"a", "a/b/c", "../b", "a/..", "a/b c", "/a/b"}) EXPECT_FALSE(is_repo_id(bad)) << bad;
  EXPECT_NE(error_of([] { repo_folder_name("a/../b"); }).find("'a/../b' is not a hub repository id"),
            std::string::npos);
}

TEST(HubSelect, GlobsMatchLikeFnmatch) {
  EXPECT_TRUE(glob_match("*.md", "docs/README.md"));  // '*' crosses '/' as in Python's fnmatch
  EXPECT_TRUE(glob_match("vae/", "vae/config.json"));
  EXPECT_TRUE(glob_match("text_encoder/model-0000?-of-*.safetensors", "text_encoder/model-00001-of-00003.safetensors"));
  EXPECT_FALSE(glob_match("*.json", "vae/model.safetensors"));
}

TEST(HubSelect, PipelineFilesSkipVariantsDuplicatesAndDocs) {
  const std::vector<std::string> listing = {".gitattributes",
                                            "README.md",
                                            "assets/fox.png",
                                            "model_index.json",
                                            "scheduler/scheduler_config.json",
                                            "text_encoder/config.json",
                                            "text_encoder/generation_config.json",
                                            "text_encoder/model.safetensors.index.json",
                                            "text_encoder/model-00001-of-00002.safetensors",
                                            "text_encoder/model-00002-of-00002.safetensors",
                                            "text_encoder/pytorch_model.bin",
                                            "text_encoder/model.safetensors.index.fp16.json",
                                            "text_encoder/model.fp16-00001-of-00001.safetensors",
                                            "tokenizer/merges.txt",
                                            "tokenizer/tokenizer.json",
                                            "tokenizer/tokenizer_config.json",
                                            "tokenizer/vocab.json",
                                            "tokenizer/chat_template.jinja",
                                            "tokenizer/README.md",
                                            "transformer/config.json",
                                            "transformer/diffusion_pytorch_model.safetensors",
                                            "transformer/diffusion_pytorch_model.fp16.safetensors",
                                            "transformer/diffusion_pytorch_model.bin",
                                            "vae/config.json",
                                            "vae/diffusion_pytorch_model.safetensors",
                                            "vae/diffusion_pytorch_model.bf16.safetensors",
                                            "vae/sample.png",
                                            "unrelated/config.json"};
  auto sel = pipeline_files(listing, {"scheduler", "text_encoder", "tokenizer", "transformer", "vae"});
  std::sort(sel.begin(), sel.end());
  const std::vector<std::string> want = {"model_index.json",
                                         "scheduler/scheduler_config.json",
                                         "text_encoder/config.json",
                                         "text_encoder/generation_config.json",
                                         "text_encoder/model.safetensors.index.json",
                                         "tokenizer/chat_template.jinja",
                                         "tokenizer/merges.txt",
                                         "tokenizer/tokenizer.json",
                                         "tokenizer/tokenizer_config.json",
                                         "tokenizer/vocab.json",
                                         "transformer/config.json",
                                         "transformer/diffusion_pytorch_model.safetensors",
                                         "vae/config.json",
                                         "vae/diffusion_pytorch_model.safetensors"};
  EXPECT_EQ(sel, want);
}

TEST(HubSelect, IndexShards) {
  auto s = index_shards(
      "text_encoder/model.safetensors.index.json",
      R"({"metadata":{},"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors",)"
      R"("c":"model-00001-of-00002.safetensors"}})");
  EXPECT_EQ(s, (std::vector<std::string>{"text_encoder/model-00001-of-00002.safetensors",
                                         "text_encoder/model-00002-of-00002.safetensors"}));
  EXPECT_NE(error_of([] {
              index_shards("x/i.json", R"({"weight_map":{"a":"../../evil.safetensors"}})");
            }).find("refusing shard name '../../evil.safetensors'"),
            std::string::npos);
  EXPECT_NE(error_of([] { index_shards("x/i.json", "[1"); }).find("x/i.json: not valid JSON"), std::string::npos);
}

TEST(HubHttp, UrlsAndLocations) {
  Url u = parse_url("https://huggingface.co/api/models/a/b?x=1");
  EXPECT_EQ(u.host, "huggingface.co");
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.target, "/api/models/a/b?x=1");
  EXPECT_EQ(resolve_location(u, "/a/b/resolve/main/x").str(), "https://huggingface.co/a/b/resolve/main/x");
  EXPECT_EQ(resolve_location(u, "https://cdn-lfs.hf.co/x?sig=1").str(), "https://cdn-lfs.hf.co/x?sig=1");
  EXPECT_EQ(resolve_location(parse_url("http://127.0.0.1:8080/a/b"), "c").str(), "http://127.0.0.1:8080/a/c");
  EXPECT_NE(error_of([] { parse_url("ftp://x/y"); }).find("only http and https"), std::string::npos);
  EXPECT_NE(error_of([] { parse_url("https://user:pw@x/y"); }).find("credentials"), std::string::npos);
  EXPECT_EQ(url_quote("a b/c", true), "a%20b/c");
  EXPECT_EQ(url_quote("refs/pr/1", false), "refs%2Fpr%2F1");
}

TEST(HubHttp, HostPolicy) {
  unsetenv("ZIMAGE_HUB_TRUSTED_HOSTS");
  unsetenv("ZIMAGE_HUB_ALLOW_HTTP");
  HostPolicy hub = HostPolicy::from_endpoint("https://huggingface.co");
  EXPECT_NO_THROW(hub.check(parse_url("https://cdn-lfs-us-1.hf.co/repos/x"), "t"));
  EXPECT_NO_THROW(hub.check(parse_url("https://cas-bridge.xethub.hf.co/x"), "t"));
  EXPECT_NE(error_of([&] {
              hub.check(parse_url("https://evil.com/x"), "the redirect");
            }).find("refusing the redirect: https://evil.com/x is on host 'evil.com'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { hub.check(parse_url("https://nothf.co/x"), "t"); }).find("refusing"), std::string::npos);
  EXPECT_NE(error_of([&] { hub.check(parse_url("http://cdn-lfs.hf.co/x"), "t"); }).find("is not HTTPS"),
            std::string::npos);
  EXPECT_TRUE(hub.same_origin_as_endpoint(parse_url("https://huggingface.co/a")));
  EXPECT_FALSE(hub.same_origin_as_endpoint(parse_url("https://cdn-lfs.hf.co/a")));
  // A mirror: its own host (and subdomains) only; http only on loopback.
  HostPolicy mirror = HostPolicy::from_endpoint("https://hf-mirror.example.org");
  EXPECT_NO_THROW(mirror.check(parse_url("https://cdn.hf-mirror.example.org/x"), "t"));
  EXPECT_THROW(mirror.check(parse_url("https://cdn-lfs.hf.co/x"), "t"), Error);
  HostPolicy local = HostPolicy::from_endpoint("http://127.0.0.1:8000");
  EXPECT_NO_THROW(local.check(parse_url("http://127.0.0.1:9000/cdn/x"), "t"));
  EXPECT_FALSE(local.same_origin_as_endpoint(parse_url("http://127.0.0.1:9000/cdn/x")));  // token stays on :8000
  EXPECT_THROW(local.check(parse_url("http://localhost.evil.com/x"), "t"), Error);
  HostPolicy remote_http = HostPolicy::from_endpoint("http://mirror.example.org");
  EXPECT_NE(error_of([&] { remote_http.check(parse_url("http://mirror.example.org/x"), "t"); }).find("is not HTTPS"),
            std::string::npos);
  setenv("ZIMAGE_HUB_TRUSTED_HOSTS", "files.example.net, .cdn.example", 1);
  setenv("ZIMAGE_HUB_ALLOW_HTTP", "1", 1);
  HostPolicy extra = HostPolicy::from_endpoint("http://mirror.example.org");
  EXPECT_NO_THROW(extra.check(parse_url("http://mirror.example.org/x"), "t"));
  EXPECT_NO_THROW(extra.check(parse_url("https://files.example.net/x"), "t"));
  EXPECT_NO_THROW(extra.check(parse_url("https://a.cdn.example/x"), "t"));
  EXPECT_THROW(extra.check(parse_url("https://example.net/x"), "t"), Error);
  unsetenv("ZIMAGE_HUB_TRUSTED_HOSTS");
  unsetenv("ZIMAGE_HUB_ALLOW_HTTP");
}

TEST(HubEnv, TokenEndpointOffline) {
  const std::string home = test::temp_dir("hubenv");
  setenv("HF_HOME", home.c_str(), 1);
  unsetenv("HF_TOKEN");
  unsetenv("HF_TOKEN_PATH");
  EXPECT_EQ(token_from_env(), "");
  test::write_file(home + "/token", "hf_file_token\n");
  EXPECT_EQ(token_from_env(), "hf_file_token");
  setenv("HF_TOKEN", "hf_env_token", 1);
  EXPECT_EQ(token_from_env(), "hf_env_token");
  unsetenv("HF_TOKEN");
  EXPECT_EQ(cache_root(""), home + "/hub");
  unsetenv("HF_HOME");
  setenv("HF_ENDPOINT", "https://hf-mirror.example.org/", 1);
  EXPECT_EQ(endpoint_from_env(), "https://hf-mirror.example.org");
  unsetenv("HF_ENDPOINT");
  EXPECT_EQ(endpoint_from_env(), "https://huggingface.co");
  setenv("HF_HUB_OFFLINE", "1", 1);
  EXPECT_TRUE(offline_from_env());
  setenv("HF_HUB_OFFLINE", "0", 1);
  EXPECT_FALSE(offline_from_env());
  unsetenv("HF_HUB_OFFLINE");
  fs::remove_all(home);
}
