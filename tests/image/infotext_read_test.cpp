// Reading generation parameters back from an A1111 infotext (read_infotext), and all-or-nothing
// writing of several files (StagedFiles).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/error.h"
#include "image/atomic_file.h"
#include "util/test_util.h"
#include "zimage/image.h"

using namespace zimage;
namespace fs = std::filesystem;

using zimage::test::error_of;  // "(no error)" when nothing is thrown: every assertion below fails then

TEST(ReadInfotext, ReadsWhatFormatInfotextWrites) {
  InfotextParams p;
  p.prompt = "a fox, in the snow\nsecond line";
  p.negative_prompt = "blurry";
  p.steps = 8;
  p.cfg_scale = 3.5;
  p.seed = 18446744073709551615ull;
  p.width = 1024;
  p.height = 768;
  p.model = "Tongyi-MAI/Z-Image-Turbo";
  p.extra = {{"Version", "zimage.cpp 0.1.0"}};
  InfotextValues v = read_infotext(format_infotext(p));
  EXPECT_EQ(v.prompt, p.prompt);
  EXPECT_EQ(v.negative_prompt, "blurry");
  EXPECT_EQ(v.steps, 8);
  EXPECT_EQ(v.cfg_scale, 3.5);
  EXPECT_EQ(v.seed, 18446744073709551615ull);
  EXPECT_EQ(v.width, 1024);
  EXPECT_EQ(v.height, 768);
  EXPECT_EQ(v.model, "Tongyi-MAI/Z-Image-Turbo");
}

TEST(ReadInfotext, AbsentKeysStayEmpty) {
  InfotextValues v = read_infotext("just a prompt");
  EXPECT_EQ(v.prompt, "just a prompt");
  EXPECT_FALSE(v.steps || v.cfg_scale || v.seed || v.width || v.height || v.model);
  v = read_infotext("a cat\nSteps: 4, Sampler: Euler, Schedule type: Karras");
  EXPECT_EQ(v.steps, 4);
  EXPECT_FALSE(v.seed || v.width || v.cfg_scale);
}

TEST(ReadInfotext, MalformedValuesNameKeyAndValue) {
  const std::string tail = ", Sampler: Euler, Seed: 1, Size: 64x64";
  EXPECT_EQ(error_of([&] { read_infotext("p\nSteps: 8.5" + tail); }),
            "[image] infotext Steps '8.5' is not an integer in [-2147483648, 2147483647]");
  EXPECT_NE(error_of([&] { read_infotext("p\nSteps: many" + tail); }).find("Steps 'many'"), std::string::npos);
  EXPECT_NE(error_of([&] { read_infotext("p\nSteps: 99999999999" + tail); }).find("Steps '99999999999'"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { read_infotext("p\nSteps: 2, Sampler: Euler, Seed: -1, Size: 64x64"); }),
            "[image] infotext Seed '-1' is not an integer in [0, 18446744073709551615]");
  EXPECT_NE(error_of([&] {
              read_infotext("p\nSteps: 2, Sampler: Euler, Seed: 18446744073709551616, Size: 64x64");
            }).find("Seed '18446744073709551616'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_infotext("p\nSteps: 2, Sampler: Euler, Seed: 1e5, Size: 64x64"); }).find("Seed '1e5'"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { read_infotext("p\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64"); }),
            "[image] infotext Size '64' is not <width>x<height>");
  EXPECT_NE(error_of([&] { read_infotext("p\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x"); }).find("Size height ''"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_infotext("p\nSteps: 2, Sampler: Euler, Seed: 1, Size: ax64"); }).find("Size width 'a'"),
            std::string::npos);
  for (const char* cfg : {"nan", "inf", "abc", "1e999", ""}) {
    std::string text = std::string("p\nSteps: 2, CFG scale: ") + (*cfg ? cfg : "\"\"") + ", Seed: 1, Size: 64x64";
    EXPECT_NE(error_of([&] { read_infotext(text); }).find("infotext CFG scale"), std::string::npos) << text;
  }
}

TEST(StagedFiles, NothingAppearsBeforeCommitAndEverythingAfter) {
  std::string dir = test::temp_dir("staged");
  {
    StagedFiles f(false);
    f.add(dir + "/a.png", "AAA", 3);
    std::string tmp = f.reserve(dir + "/b.bin");
    test::write_file(tmp, "BB");
    EXPECT_FALSE(fs::exists(dir + "/a.png"));
    EXPECT_FALSE(fs::exists(dir + "/b.bin"));
    f.commit();
  }
  EXPECT_EQ(test::read_file(dir + "/a.png"), "AAA");
  EXPECT_EQ(test::read_file(dir + "/b.bin"), "BB");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);  // no temporary files left
  fs::remove_all(dir);
}

TEST(StagedFiles, WithoutCommitNothingIsLeft) {
  std::string dir = test::temp_dir("staged");
  {
    StagedFiles f(true);
    f.add(dir + "/a.png", "AAA", 3);
    f.reserve(dir + "/b.bin");
  }
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

TEST(StagedFiles, FailedCommitLeavesNoneOfTheNewFiles) {
  std::string dir = test::temp_dir("staged");
  StagedFiles f(false);
  f.add(dir + "/a.png", "AAA", 3);
  f.add(dir + "/b.png", "BBB", 3);
  test::write_file(dir + "/b.png", "appeared meanwhile");
  EXPECT_NE(error_of([&] { f.commit(); }).find("cannot write '" + dir + "/b.png': file exists"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir + "/a.png"));
  EXPECT_EQ(test::read_file(dir + "/b.png"), "appeared meanwhile");
  fs::remove_all(dir);
}

TEST(StagedFiles, NonRegularTargetsAreRefused) {
  std::string dir = test::temp_dir("staged");
  ASSERT_EQ(::mkfifo((dir + "/fifo.png").c_str(), 0644), 0);
  for (bool overwrite : {false, true}) {
    StagedFiles f(overwrite);
    EXPECT_EQ(
        error_of([&] { f.add(dir + "/fifo.png", "A", 1); }),
        "[image] cannot write '" + dir + "/fifo.png': it exists and is not a regular file (a device, pipe or socket)");
    EXPECT_NE(error_of([&] { write_file_atomic(dir + "/fifo.png", "A", 1, overwrite); }).find("not a regular file"),
              std::string::npos);
  }
  EXPECT_TRUE(fs::is_fifo(dir + "/fifo.png"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}
