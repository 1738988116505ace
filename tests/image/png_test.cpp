// PNG writing/reading, text metadata, atomic writes and error handling.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <random>

#include "util/test_util.h"
#include "zimage/image.h"

using namespace zimage;
namespace fs = std::filesystem;

namespace {

Image random_image(int w, int h, int c, uint32_t seed) {
  Image im{w, h, c, {}};
  im.pixels.resize(size_t(w) * size_t(h) * size_t(c));
  std::mt19937 g(seed);
  for (auto& p : im.pixels) p = uint8_t(g());
  return im;
}

struct Chunk {
  std::string type, data;
};
// Walks the chunks of a PNG file's bytes.
std::vector<Chunk> chunks_of(const std::string& png) {
  std::vector<Chunk> out;
  size_t pos = 8;
  while (pos + 12 <= png.size()) {
    uint32_t len = (uint32_t(uint8_t(png[pos])) << 24) | (uint32_t(uint8_t(png[pos + 1])) << 16) |
                   (uint32_t(uint8_t(png[pos + 2])) << 8) | uint32_t(uint8_t(png[pos + 3]));
    out.push_back({png.substr(pos + 4, 4), png.substr(pos + 8, len)});
    pos += 12 + len;
  }
  return out;
}

// Files in a folder (names), to check that no temporary files are left.
std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> v;
  for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kChinese = "一只戴着宇航员头盔的猫，漂浮在星空中，电影感光照";

InfotextParams sample_params() {
  InfotextParams p;
  p.prompt = std::string(kChinese) + "\nsecond line: with colon, and comma";
  p.negative_prompt = "blurry, 低质量";
  p.steps = 8;
  p.sampler = "Euler (flow match)";
  p.cfg_scale = 0;
  p.seed = 42;
  p.width = 1024;
  p.height = 768;
  p.model = "Z-Image-Turbo";
  p.extra = {{"Shift", "3"}, {"Version", "zimage.cpp 0.1.0"}};
  return p;
}

}  // namespace

TEST(Png, RoundTripPixelsForEveryChannelCount) {
  auto dir = test::temp_dir("png_rt");
  for (int c = 1; c <= 4; ++c) {
    Image im = random_image(37, 23, c, uint32_t(c));
    std::string path = dir + "/img" + std::to_string(c) + ".png";
    write_png(path, im);
    Image back = read_png(path);
    EXPECT_EQ(back.width, 37);
    EXPECT_EQ(back.height, 23);
    EXPECT_EQ(back.channels, c);
    EXPECT_EQ(back.pixels, im.pixels) << c << " channels";
  }
  fs::remove_all(dir);
}

TEST(Png, MetadataRoundTripWithChineseAndNewlines) {
  auto dir = test::temp_dir("png_meta");
  std::string path = dir + "/meta.png";
  PngMetadata meta;
  meta.parameters = sample_params();
  meta.zimage = {{"prompt", meta.parameters->prompt},
                 {"negative_prompt", meta.parameters->negative_prompt},
                 {"steps", 8},
                 {"guidance_scale", 0.0},
                 {"seed", 42},
                 {"width", 1024},
                 {"height", 768},
                 {"shift", 3.0},
                 {"dtype", "bfloat16"}};
  meta.text = {{"Software", "zimage.cpp"}, {"Comment", "café crème"}};
  Image im = random_image(16, 8, 3, 7);
  write_png(path, im, meta);

  auto m = read_png_metadata(path);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m["parameters"], format_infotext(*meta.parameters));
  EXPECT_EQ(nlohmann::json::parse(m["zimage"]), meta.zimage);
  EXPECT_EQ(nlohmann::json::parse(m["zimage"])["prompt"].get<std::string>(), meta.parameters->prompt);
  EXPECT_EQ(m["Software"], "zimage.cpp");
  EXPECT_EQ(m["Comment"], "café crème");
  EXPECT_EQ(read_png(path).pixels, im.pixels);

  // Chunk types: non-Latin-1 text in iTXt (UTF-8), Latin-1 text in tEXt (Latin-1 bytes), all
  // before the image data so streaming readers see them first.
  auto chunks = chunks_of(test::read_file(path));
  std::map<std::string, std::string> type_of;
  size_t first_idat = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].type == "IDAT" && !first_idat) first_idat = i;
    if (chunks[i].type == "tEXt" || chunks[i].type == "iTXt") {
      type_of[chunks[i].data.substr(0, chunks[i].data.find('\0'))] = chunks[i].type;
      EXPECT_LT(first_idat, 1u) << "text chunk after IDAT";
    }
  }
  EXPECT_EQ(type_of["parameters"], "iTXt");
  EXPECT_EQ(type_of["zimage"], "iTXt");
  EXPECT_EQ(type_of["Software"], "tEXt");
  EXPECT_EQ(type_of["Comment"], "tEXt");
  for (auto& c : chunks)
    if (c.type == "tEXt" && c.data.rfind("Comment", 0) == 0) {
      EXPECT_EQ(c.data, std::string("Comment\0caf\xe9 cr\xe8me", 18));
    }
  fs::remove_all(dir);
}

TEST(Png, LatinOnlyParametersUseTextChunk) {
  auto dir = test::temp_dir("png_latin");
  PngMetadata meta;
  InfotextParams p;
  p.prompt = "a cat";
  p.steps = 8;
  p.seed = 1;
  p.width = p.height = 64;
  meta.parameters = p;
  write_png(dir + "/a.png", random_image(4, 4, 3, 1), meta);
  auto chunks = chunks_of(test::read_file(dir + "/a.png"));
  int texts = 0;
  for (auto& c : chunks)
    if (c.type == "tEXt") {
      ++texts;
      EXPECT_EQ(c.data, std::string("parameters\0", 11) +
                            "a cat\nSteps: 8, Sampler: Euler, CFG scale: 0, Seed: 1, Size: 64x64");
    }
  EXPECT_EQ(texts, 1);
  fs::remove_all(dir);
}

TEST(Infotext, A1111Format) {
  InfotextParams p = sample_params();
  p.prompt = "a cat in space";
  p.negative_prompt = "blurry";
  p.cfg_scale = 3.5;
  EXPECT_EQ(format_infotext(p),
            "a cat in space\nNegative prompt: blurry\nSteps: 8, Sampler: Euler (flow match), CFG scale: 3.5, "
            "Seed: 42, Size: 1024x768, Model: Z-Image-Turbo, Shift: 3, Version: zimage.cpp 0.1.0");
  p.negative_prompt = "";
  p.cfg_scale = 0;
  p.model = "";
  p.extra = {{"Note", "a, b: \"c\"\n"}};
  // Negative prompt line omitted when empty; values with ',', ':' or newline are JSON-quoted.
  EXPECT_EQ(format_infotext(p),
            "a cat in space\nSteps: 8, Sampler: Euler (flow match), CFG scale: 0, Seed: 42, Size: 1024x768, "
            "Note: \"a, b: \\\"c\\\"\\n\"");
  p.seed = 18446744073709551615ull;
  EXPECT_NE(format_infotext(p).find("Seed: 18446744073709551615,"), std::string::npos);
  p.extra = {{"Bad, key", "x"}};
  EXPECT_THROW(format_infotext(p), Error);
}

TEST(Infotext, ParseRoundTrip) {
  InfotextParams p = sample_params();
  p.extra.push_back({"Note", "x, y: z"});
  auto parsed = parse_infotext(format_infotext(p));
  EXPECT_EQ(parsed.prompt, p.prompt);
  EXPECT_EQ(parsed.negative_prompt, p.negative_prompt);
  std::vector<std::pair<std::string, std::string>> want = {
      {"Steps", "8"},       {"Sampler", "Euler (flow match)"}, {"CFG scale", "0"}, {"Seed", "42"},
      {"Size", "1024x768"}, {"Model", "Z-Image-Turbo"},        {"Shift", "3"},     {"Version", "zimage.cpp 0.1.0"},
      {"Note", "x, y: z"}};
  EXPECT_EQ(parsed.params, want);
  // A prompt with no parameter line stays a prompt.
  auto only = parse_infotext("just a prompt\nsecond line");
  EXPECT_EQ(only.prompt, "just a prompt\nsecond line");
  EXPECT_TRUE(only.params.empty());
}

TEST(Png, TextErrors) {
  auto dir = test::temp_dir("png_texterr");
  Image im = random_image(2, 2, 3, 1);
  PngMetadata m1;
  m1.text = {{"", "x"}};
  EXPECT_NE(error_of([&] { write_png(dir + "/a.png", im, m1); }).find("1-79"), std::string::npos);
  PngMetadata m2;
  m2.text = {{"k", std::string("a\0b", 3)}};
  EXPECT_NE(error_of([&] { write_png(dir + "/a.png", im, m2); }).find("NUL"), std::string::npos);
  PngMetadata m3;
  m3.text = {{"k", "\xff\xfe bad utf8"}};
  EXPECT_NE(error_of([&] { write_png(dir + "/a.png", im, m3); }).find("UTF-8"), std::string::npos);
  PngMetadata m4;
  m4.text = {{"关键", "x"}};
  EXPECT_NE(error_of([&] { write_png(dir + "/a.png", im, m4); }).find("Latin-1"), std::string::npos);
  EXPECT_TRUE(listing(dir).empty());
  fs::remove_all(dir);
}

TEST(PngWrite, InvalidImageLeavesExistingFileIntact) {
  auto dir = test::temp_dir("png_invalid");
  std::string path = dir + "/out.png";
  write_png(path, random_image(8, 8, 3, 1));
  const std::string before = test::read_file(path);
  Image bad = random_image(8, 8, 3, 2);
  bad.pixels.pop_back();
  std::string err = error_of([&] { write_png(path, bad); });
  EXPECT_NE(err.find("[image]"), std::string::npos) << err;
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("191 bytes"), std::string::npos) << err;
  Image zero = random_image(8, 8, 3, 2);
  zero.width = 0;
  EXPECT_THROW(write_png(path, zero), Error);
  Image five = random_image(8, 8, 5, 2);
  EXPECT_THROW(write_png(path, five), Error);
  EXPECT_EQ(test::read_file(path), before);
  EXPECT_EQ(listing(dir), std::vector<std::string>{"out.png"});
  fs::remove_all(dir);
}

// A failure after the temporary file exists (the write itself fails: file size limit, EFBIG)
// removes the temporary file and leaves the existing target untouched.
TEST(PngWrite, FailedWriteRemovesTempAndKeepsTarget) {
  auto dir = test::temp_dir("png_efbig");
  std::string path = dir + "/out.png";
  write_png(path, random_image(4, 4, 3, 1));
  const std::string before = test::read_file(path);
  Image big = random_image(256, 256, 3, 3);  // random pixels: ~200 KB compressed

  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string err = error_of([&] { write_png(path, big); });
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_EQ(test::read_file(path), before);
  EXPECT_EQ(listing(dir), std::vector<std::string>{"out.png"});
  // And it works again once the limit is gone.
  write_png(path, big);
  EXPECT_EQ(read_png(path).pixels, big.pixels);
  fs::remove_all(dir);
}

TEST(PngWrite, MissingFolderIsAnErrorNamingPathAndReason) {
  auto dir = test::temp_dir("png_missing");
  std::string path = dir + "/no/such/folder/out.png";
  std::string err = error_of([&] { write_png(path, random_image(2, 2, 3, 1)); });
  EXPECT_EQ(err.rfind("[image]", 0), 0u) << err;
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("No such file or directory"), std::string::npos) << err;
  EXPECT_TRUE(listing(dir).empty());
  fs::remove_all(dir);
}

TEST(PngWrite, ParentIsARegularFile) {
  auto dir = test::temp_dir("png_notdir");
  test::write_file(dir + "/file", "x");
  std::string path = dir + "/file/out.png";
  std::string err = error_of([&] { write_png(path, random_image(2, 2, 3, 1)); });
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("Not a directory"), std::string::npos) << err;
  EXPECT_EQ(listing(dir), std::vector<std::string>{"file"});
  EXPECT_EQ(test::read_file(dir + "/file"), "x");
  fs::remove_all(dir);
}

TEST(PngWrite, PathIsADirectory) {
  auto dir = test::temp_dir("png_isdir");
  fs::create_directory(dir + "/sub.png");
  std::string err = error_of([&] { write_png(dir + "/sub.png", random_image(2, 2, 3, 1)); });
  EXPECT_NE(err.find(dir + "/sub.png"), std::string::npos) << err;
  EXPECT_NE(err.find("directory"), std::string::npos) << err;
  EXPECT_TRUE(fs::is_directory(dir + "/sub.png"));
  EXPECT_EQ(listing(dir), std::vector<std::string>{"sub.png"});
  err = error_of([&] { write_png(dir + "/", random_image(2, 2, 3, 1)); });
  EXPECT_NE(err.find("directory"), std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(PngWrite, ReadOnlyFolder) {
  if (geteuid() == 0) {
    // chmod 0555 does not stop root; sysfs refuses new files to everyone (or is mounted read-only).
    if (!fs::is_directory("/sys")) GTEST_SKIP() << "running as root without /sys: no folder root cannot write";
    const std::string path = "/sys/zimage-test-out.png";
    std::string err = error_of([&] { write_png(path, random_image(2, 2, 3, 1)); });
    EXPECT_NE(err.find(path), std::string::npos) << err;
    EXPECT_TRUE(err.find("Permission denied") != std::string::npos ||
                err.find("Read-only file system") != std::string::npos)
        << err;
    for (const auto& e : fs::directory_iterator("/sys"))
      EXPECT_EQ(e.path().filename().string().find("zimage-test-out.png"), std::string::npos) << e.path();
    return;
  }
  auto dir = test::temp_dir("png_ro");
  std::string path = dir + "/out.png";
  ASSERT_EQ(chmod(dir.c_str(), 0555), 0);
  std::string err = error_of([&] { write_png(path, random_image(2, 2, 3, 1)); });
  chmod(dir.c_str(), 0755);
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("Permission denied"), std::string::npos) << err;
  EXPECT_TRUE(listing(dir).empty());
  fs::remove_all(dir);
}

TEST(PngWrite, OverwriteFalseRefusesExistingFile) {
  auto dir = test::temp_dir("png_noover");
  std::string path = dir + "/out.png";
  PngWriteOptions no;
  no.overwrite = false;
  Image a = random_image(4, 4, 3, 1), b = random_image(4, 4, 3, 2);
  write_png(path, a, {}, no);  // new file: fine
  EXPECT_EQ(read_png(path).pixels, a.pixels);
  std::string err = error_of([&] { write_png(path, b, {}, no); });
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("exists"), std::string::npos) << err;
  EXPECT_EQ(read_png(path).pixels, a.pixels);
  EXPECT_EQ(listing(dir), std::vector<std::string>{"out.png"});
  write_png(path, b);  // overwrite=true replaces it
  EXPECT_EQ(read_png(path).pixels, b.pixels);
  EXPECT_EQ(listing(dir), std::vector<std::string>{"out.png"});
  fs::remove_all(dir);
}

TEST(PngWrite, FileModeFollowsUmask) {
  auto dir = test::temp_dir("png_mode");
  mode_t old = umask(022);
  write_png(dir + "/m.png", random_image(2, 2, 3, 1));
  umask(old);
  struct stat st;
  ASSERT_EQ(stat((dir + "/m.png").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  fs::remove_all(dir);
}

TEST(NextFreePath, NumbersWithoutOverwriting) {
  auto dir = test::temp_dir("png_next");
  std::string base = dir + "/out.png";
  EXPECT_EQ(next_free_path(base), base);
  test::write_file(base, "x");
  EXPECT_EQ(next_free_path(base), dir + "/out-1.png");
  test::write_file(dir + "/out-1.png", "x");
  test::write_file(dir + "/out-3.png", "x");
  EXPECT_EQ(next_free_path(base), dir + "/out-2.png");
  EXPECT_EQ(next_free_path(base, 3), dir + "/out-4.png");
  EXPECT_EQ(next_free_path(base, 7), dir + "/out-7.png");
  EXPECT_EQ(next_free_path(dir + "/noext", 2), dir + "/noext-2");
  EXPECT_THROW(next_free_path(base, -1), Error);
  fs::remove_all(dir);
}

TEST(PngRead, NotAPngIsAClearError) {
  auto dir = test::temp_dir("png_notpng");
  test::write_file(dir + "/text.png", "hello, this is not a PNG file at all");
  test::write_file(dir + "/empty.png", "");
  for (const char* name : {"text.png", "empty.png"}) {
    std::string p = dir + "/" + name;
    std::string err = error_of([&] { read_png(p); });
    EXPECT_NE(err.find("not a PNG"), std::string::npos) << err;
    EXPECT_NE(err.find(p), std::string::npos) << err;
    EXPECT_NE(error_of([&] { read_png_metadata(p); }).find("not a PNG"), std::string::npos);
  }
  std::string err = error_of([&] { read_png(dir + "/missing.png"); });
  EXPECT_NE(err.find("No such file or directory"), std::string::npos) << err;
  err = error_of([&] { read_png(dir); });
  EXPECT_NE(err.find(dir + ": is a directory, not a regular file"), std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(PngRead, EveryTruncationIsAClearError) {
  auto dir = test::temp_dir("png_trunc");
  PngMetadata meta;
  meta.parameters = sample_params();
  meta.zimage = {{"seed", 42}};
  write_png(dir + "/full.png", random_image(12, 9, 3, 5), meta);
  const std::string full = test::read_file(dir + "/full.png");
  ASSERT_GT(full.size(), 200u);
  std::string p = dir + "/cut.png";
  int errors = 0;
  for (size_t len = 0; len < full.size(); ++len) {
    test::write_file(p, full.substr(0, len));
    std::string e1 = error_of([&] { read_png(p); });
    std::string e2 = error_of([&] { read_png_metadata(p); });
    EXPECT_EQ(e1.rfind("[image]", 0), 0u) << "length " << len << ": " << e1;
    EXPECT_EQ(e2.rfind("[image]", 0), 0u) << "length " << len << ": " << e2;
    errors += !e1.empty();
  }
  EXPECT_EQ(errors, int(full.size()));
  // One cut inside the image data names the problem.
  test::write_file(p, full.substr(0, full.size() - 40));
  EXPECT_NE(error_of([&] { read_png(p); }).find("truncated"), std::string::npos);
  fs::remove_all(dir);
}

TEST(PngRead, CorruptImageDataIsAnError) {
  auto dir = test::temp_dir("png_corrupt");
  write_png(dir + "/a.png", random_image(12, 9, 3, 5));
  std::string bytes = test::read_file(dir + "/a.png");
  size_t idat = bytes.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  bytes[idat + 10] ^= 0x55;  // breaks the CRC of a critical chunk
  test::write_file(dir + "/b.png", bytes);
  std::string err = error_of([&] { read_png(dir + "/b.png"); });
  EXPECT_EQ(err.rfind("[image] cannot decode PNG", 0), 0u) << err;
  fs::remove_all(dir);
}

namespace {
uint32_t png_crc(const std::string& bytes) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xffffffffu;
}
std::string be32(uint32_t v) { return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)}; }
std::string png_chunk(const std::string& type, const std::string& data) {
  return be32(uint32_t(data.size())) + type + data + be32(png_crc(type + data));
}
}  // namespace

// A PNG of a few dozen bytes whose header claims a large image made read_png allocate (and zero)
// the whole pixel buffer before it found the data missing: 16 MB here, 3.6 GB for 30000x30000
// RGBA (spotted while writing fuzz/png_metadata_fuzz, which runs out of memory on that input; it
// is in its corpus). Now the claim is checked against what the file's size can hold first.
TEST(PngRead, HeaderClaimingMoreThanTheFileCanHoldIsAnError) {
  auto dir = test::temp_dir("png_claim");
  const std::string ihdr = be32(2000) + be32(2000) + std::string("\x08\x06\x00\x00\x00", 5);  // 8-bit RGBA
  const std::string idat("\x78\x9c\x63\x00\x00\x00\x01\x00\x01", 9);                          // zlib of one 0 byte
  const std::string png =
      std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IDAT", idat) + png_chunk("IEND", "");
  test::write_file(dir + "/claim.png", png);
  const std::string err = error_of([&] { read_png(dir + "/claim.png"); });
  EXPECT_EQ(err, "[image] PNG '" + dir + "/claim.png' is truncated or corrupt: " + std::to_string(png.size()) +
                     " bytes cannot hold a 2000x2000x4 image");
  // A real image that compresses very well is still read.
  Image zeros{1024, 1024, 4, std::vector<uint8_t>(size_t(1024) * 1024 * 4, 0)};
  write_png(dir + "/zeros.png", zeros, {}, {true, 9});
  ASSERT_LT(fs::file_size(dir + "/zeros.png"), 8192u);
  EXPECT_EQ(read_png(dir + "/zeros.png").pixels, zeros.pixels);
  fs::remove_all(dir);
}

// A 340-byte PNG with an iTXt chunk declaring 1.9 GB made libpng allocate 1.9 GB (and take 10+ s
// under ASan) before it found the data missing (found by fuzz/png_metadata_fuzz, which has the
// input in its corpus). Chunk lengths are now checked against the file first.
TEST(PngRead, ChunkLongerThanTheFileIsAnError) {
  auto dir = test::temp_dir("png_chunk");
  const std::string ihdr = be32(1) + be32(1) + std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit gray
  const std::string idat("\x78\x9c\x63\x60\x00\x00\x00\x02\x00\x01", 10);               // zlib of two 0 bytes
  const std::string head = std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr);
  const std::string huge = be32(1946157155) + "iTXt" + "parameters" + std::string(20, '\0');
  for (const std::string& png : {head + huge, head + png_chunk("IDAT", idat) + huge}) {
    test::write_file(dir + "/long.png", png);
    const size_t at = png.size() - huge.size();
    const std::string want = "[image] PNG '" + dir + "/long.png' is truncated: chunk 'iTXt' at byte " +
                             std::to_string(at) + " declares 1946157155 bytes, the file has 26 left";
    EXPECT_EQ(error_of([&] { read_png(dir + "/long.png"); }), want);
    EXPECT_EQ(error_of([&] { read_png_metadata(dir + "/long.png"); }), want);
  }
  // Bytes after IEND are not chunks (libpng ignores them).
  test::write_file(dir + "/tail.png", head + png_chunk("IDAT", idat) + png_chunk("IEND", "") + be32(99999) + "junk");
  EXPECT_EQ(read_png(dir + "/tail.png").pixels, std::vector<uint8_t>{0});
  fs::remove_all(dir);
}

// A FIFO (or a folder) in place of a PNG is an error naming the path; reading it used to block
// forever (a plain open + read of a FIFO waits for a writer).
TEST(PngRead, FifoOrFolderInPlaceOfAPngIsAnError) {
  const std::string dir = test::temp_dir("png_fifo");
  const std::string fifo = dir + "/in.png";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (auto read : {+[](const std::string& p) { read_png_metadata(p); }, +[](const std::string& p) { read_png(p); }}) {
    try {
      read(fifo);
      ADD_FAILURE() << "expected an error";
    } catch (const zimage::Error& e) {
      EXPECT_NE(std::string(e.what()).find(fifo + ": is a FIFO (named pipe), not a regular file"), std::string::npos)
          << e.what();
    }
  }
  try {
    read_png(dir);
    ADD_FAILURE() << "expected an error";
  } catch (const zimage::Error& e) {
    EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}
