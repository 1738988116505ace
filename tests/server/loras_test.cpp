// LoRAs of `zimage serve` (src/server/loras.h): the prompt's A1111 <lora:NAME:SCALE> tags, and the
// catalog that maps a name to a file the server was started with, never to a path of the client's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "server/loras.h"
#include "server/request.h"
#include "util/test_util.h"

using namespace zimage;
using namespace zimage::server;
namespace fs = std::filesystem;

namespace {

std::string tag_error(std::string prompt) {
  try {
    extract_lora_tags(prompt);
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.field(), "prompt");
    return e.what();
  }
  return "<accepted>";
}

std::string resolve_error(const LoraCatalog& c, const std::string& name) {
  try {
    return "<resolved " + c.resolve(name) + ">";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    return e.what();
  }
}

}  // namespace

TEST(ServerLoras, TagsAreTakenOutOfThePrompt) {
  std::string p = "a cat <lora:style:0.5> on a mat <lora:sub/detail> ";
  auto t = extract_lora_tags(p);
  EXPECT_EQ(p, "a cat  on a mat");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "style");
  EXPECT_DOUBLE_EQ(t[0].scale, 0.5);
  EXPECT_EQ(t[1].name, "sub/detail");
  EXPECT_DOUBLE_EQ(t[1].scale, 1.0);
  std::string plain = "no tags <lora here";
  EXPECT_TRUE(extract_lora_tags(plain).empty());
  EXPECT_EQ(plain, "no tags <lora here");
  // The request parsers take them out too.
  GenerateRequest r =
      parse_job(R"({"prompt": "<lora:x:-0.25> a dog", "width": 32, "height": 32})", Defaults{}, Limits{});
  EXPECT_EQ(r.prompt, "a dog");
  ASSERT_EQ(r.loras.size(), 1u);
  EXPECT_DOUBLE_EQ(r.loras[0].scale, -0.25);
}

TEST(ServerLoras, BadTagsAreRefused) {
  EXPECT_NE(tag_error("a <lora:x:0.5").find("has no closing '>'"), std::string::npos);
  EXPECT_NE(tag_error("a <lora::0.5>").find("names no LoRA"), std::string::npos);
  EXPECT_NE(tag_error("<lora:x:abc>").find("the scale 'abc' is not a number in [-100, 100]"), std::string::npos);
  EXPECT_NE(tag_error("<lora:x:nan>").find("is not a number"), std::string::npos);
  EXPECT_NE(tag_error("<lora:x:1e9>").find("is not a number"), std::string::npos);
  EXPECT_NE(tag_error("<lora:x:>").find("is not a number"), std::string::npos);
  EXPECT_NE(tag_error("<lora:../x:1>").find("no empty, '.' or '..' parts"), std::string::npos);
  EXPECT_NE(tag_error("<lora:a/../../x>").find("no empty, '.' or '..' parts"), std::string::npos);
  EXPECT_NE(tag_error("<lora:/etc/passwd>").find("not an absolute path"), std::string::npos);
  EXPECT_NE(tag_error("<lora:a\\b>").find("holds only letters"), std::string::npos);
  EXPECT_NE(tag_error("<lora:x:1> <lora:x:2>").find("is named twice"), std::string::npos);
  std::string many;
  for (int i = 0; i < 17; ++i) many += "<lora:l" + std::to_string(i) + ">";
  EXPECT_NE(tag_error(many).find("more than 16"), std::string::npos);
}

TEST(ServerLoras, CatalogResolvesOnlyItsOwnFiles) {
  const std::string root = test::temp_dir("serve_loras");
  const std::string dir = root + "/loras", outside = root + "/secret.safetensors";
  fs::create_directories(dir + "/sub");
  test::write_file(dir + "/a.safetensors", "x");
  test::write_file(dir + "/sub/b.safetensors", "x");
  test::write_file(outside, "x");
  fs::create_symlink(outside, dir + "/link.safetensors");
  fs::create_directories(dir + "/d.safetensors");
  LoraCatalog c({{"style", "/somewhere/style.safetensors", 0.8, ""}}, dir);
  EXPECT_EQ(c.resolve("style"), "/somewhere/style.safetensors");
  EXPECT_EQ(c.resolve("a"), fs::canonical(dir + "/a.safetensors").string());
  EXPECT_EQ(c.resolve("sub/b.safetensors"), fs::canonical(dir + "/sub/b.safetensors").string());
  const std::string none = "the server has no LoRA of that name (--lora: style; --lora-dir: its .safetensors files)";
  EXPECT_NE(resolve_error(c, "missing").find("<lora:missing>: " + none), std::string::npos)
      << resolve_error(c, "missing");
  EXPECT_NE(resolve_error(c, "link").find(none), std::string::npos)
      << resolve_error(c, "link");                                 // a symlink out of the dir
  EXPECT_NE(resolve_error(c, "d").find(none), std::string::npos);  // not a regular file
  EXPECT_NE(resolve_error(c, "../secret").find("'..'"), std::string::npos);
  LoraCatalog files_only({{"style", "/somewhere/style.safetensors", 0.8, ""}}, "");
  EXPECT_NE(resolve_error(files_only, "a").find("(--lora: style; --lora-dir: none)"), std::string::npos);
  EXPECT_THROW(LoraCatalog({}, root + "/nope"), Error);
  fs::remove_all(root);
}
