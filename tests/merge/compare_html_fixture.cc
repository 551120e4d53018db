// Writes the synthetic compare report's HTML page (compare_html_fixture.h) to
// argv[1], for the headless-Chromium render test
// (tests/cli/chromium_render_check.sh). An optional argv[2] sets the number
// of layers (default 4), to look at the page with 16 or 80 layers.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "merge/compare.h"
#include "tests/merge/compare_html_fixture.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s OUT.html [LAYERS]\n", argv[0]);
    return 2;
  }
  const int layers = argc == 3 ? std::atoi(argv[2]) : 4;
  if (layers < 0 || layers > 1000) {
    std::fprintf(stderr, "LAYERS must be in 0..1000\n");
    return 2;
  }
  const std::filesystem::path out(argv[1]);
  std::error_code ignored;
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path(), ignored);
  const std::string page = alloy::merge::RenderCompareHtml(
      alloy::merge::testing_support::SyntheticCompareReport(layers));
  std::ofstream file(out, std::ios::binary | std::ios::trunc);
  file.write(page.data(), static_cast<std::streamsize>(page.size()));
  file.close();
  if (!file) {
    std::fprintf(stderr, "cannot write %s\n", argv[1]);
    return 1;
  }
  return 0;
}
