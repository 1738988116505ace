// docs/PARAMETERS.md, the table of generation parameters, against `zimage generate --help`: every
// option of generate is in the table's "CLI option" column, and that column names no option that
// generate does not have.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "util/test_util.h"

namespace fs = std::filesystem;
using namespace zimage;

namespace {

// The long options of a CLI11 help text: each option line starts with "  -x,--name" or "  --name".
std::set<std::string> help_options(const std::string& help) {
  std::set<std::string> out;
  static const std::regex line_re(R"(^\s+(?:-\w,)?(--[a-z0-9][a-z0-9-]*))");
  std::istringstream in(help);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, line_re)) out.insert(m[1].str());
  }
  return out;
}

// The `--name` options in the "CLI option" column of every table of the markdown text.
std::set<std::string> table_options(const std::string& md) {
  std::set<std::string> out;
  static const std::regex opt_re(R"(`(--[a-z0-9][a-z0-9-]*))");
  std::istringstream in(md);
  int column = -1;  // of the table being read
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '|') {
      column = -1;
      continue;
    }
    std::vector<std::string> cells;
    std::string cell;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '|') {
        cells.push_back(cell);
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    if (column < 0) {  // a header row
      for (size_t i = 0; i < cells.size(); ++i)
        if (cells[i].find("CLI option") != std::string::npos) column = int(i);
      if (column < 0) column = int(cells.size());  // a table without the column
      continue;
    }
    if (size_t(column) >= cells.size()) continue;
    const std::string& c = cells[size_t(column)];
    for (auto it = std::sregex_iterator(c.begin(), c.end(), opt_re); it != std::sregex_iterator(); ++it)
      out.insert((*it)[1].str());
  }
  return out;
}

TEST(CliParameters, TableHasEveryGenerateOption) {
  const test::CommandResult r = test::run_command({ZIMAGE_CLI_PATH, "generate", "--help"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::set<std::string> help = help_options(r.out);
  help.erase("--help");
  ASSERT_GE(help.size(), 30u) << "too few options parsed from --help:\n" << r.out;
  ASSERT_TRUE(help.count("--seed") && help.count("--from-png")) << r.out;

  const fs::path doc = fs::path(ZIMAGE_FIXTURES_DIR).parent_path().parent_path() / "docs" / "PARAMETERS.md";
  std::ifstream f(doc);
  ASSERT_TRUE(f) << "cannot read " << doc;
  std::stringstream ss;
  ss << f.rdbuf();
  const std::set<std::string> table = table_options(ss.str());

  for (const std::string& o : help) EXPECT_TRUE(table.count(o)) << o << " (zimage generate) is missing from " << doc;
  for (const std::string& o : table) EXPECT_TRUE(help.count(o)) << doc << " names " << o << ", which zimage generate does not have";
}

}  // namespace
