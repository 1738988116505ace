// `zimage serve` on bad options: exit 1 with one clear line, before or instead of serving; never a hang.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "util/test_util.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

using Result = test::CommandResult;

class CliServe : public ::testing::Test {
 protected:
  std::string dir = test::temp_dir("cliserve");
  std::string model = test::fixture("models/tiny-fp32");
  void TearDown() override { fs::remove_all(dir); }
  // `timeout` guards against a server that would serve instead of failing.
  Result run(const std::vector<std::string>& args, const std::string& env = "") {
    std::vector<std::string> a{ZIMAGE_CLI_PATH, "serve", "-m", model, "--port", "0"};
    a.insert(a.end(), args.begin(), args.end());
    return test::run_command(a, env + " timeout 120");
  }
  void expect_fail(const std::vector<std::string>& args, const std::string& what, const std::string& env = "") {
    Result r = run(args, env);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("zimage: error: " + what), std::string::npos) << r.err;
  }
};

}  // namespace

TEST_F(CliServe, LimitsAndDefaultsAreChecked) {
  expect_fail({"--max-steps", "0"}, "[serve] --max-steps 0 is out of range [1, 1000]");
  expect_fail({"--max-images", "65"}, "[serve] --max-images 65 is out of range [1, 64]");
  expect_fail({"--queue-size", "-1"}, "[serve] --queue-size -1 is out of range");
  expect_fail({"-W", "4096"}, "[serve] --width 4096 is outside [16, --max-size 2048]");
  expect_fail({"-H", "100"}, "[serve] --height 100 is not a multiple of 16");
  expect_fail({"-s", "60"}, "[serve] --steps 60 is outside [1, --max-steps 50]");
  expect_fail({"--dtype", "float16"}, "[from_pretrained] torch_dtype 'float16' is not supported");
  expect_fail({"--vae-tiling", "maybe"}, "[vae] tiling 'maybe' is not one of auto, on, off");
}

TEST_F(CliServe, ApiKeySources) {
  test::write_file(dir + "/empty.key", "\n");
  expect_fail({"--api-key-file", dir + "/empty.key"},
              "[serve] the API key from --api-key-file '" + dir + "/empty.key' is empty");
  expect_fail({"--api-key", "two words"},
              "[serve] the API key from --api-key holds a space, control or non-ASCII character");
  expect_fail({}, "[serve] the API key from ZIMAGE_API_KEY holds a space", "ZIMAGE_API_KEY='a b'");
}

TEST_F(CliServe, ModelThatDoesNotLoadStopsTheServer) {
  model = dir + "/no-such-model";
  Result r = run({"--local-files-only"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("zimage: error: "), std::string::npos) << r.err;
}

TEST_F(CliServe, PortInUse) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(s, 1), 0);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  const test::CommandResult r =
      test::run_command({ZIMAGE_CLI_PATH, "serve", "-m", model, "--port", std::to_string(port)}, "timeout 60");
  close(s);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("[serve] cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos) << r.err;
}
