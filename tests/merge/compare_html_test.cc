// RenderCompareHtml: the page is self-contained, the embedded report survives
// hostile strings and round-trips, and degenerate reports still render. That
// the page's script runs and draws is checked in headless Chromium
// (tests/cli/chromium_render_check.sh).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <string>
#include <string_view>

#include "merge/compare.h"
#include "tests/merge/compare_html_fixture.h"

namespace alloy::merge {
namespace {

using testing_support::EmptyCompareReport;
using testing_support::kHostileTensorName;
using testing_support::kHostileWarning;
using testing_support::SyntheticCompareReport;

constexpr std::string_view kDataOpen = R"(<script type="application/json" id="alloy-report">)";

size_t Count(std::string_view haystack, std::string_view needle) {
  size_t count = 0;
  for (size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The text between the data element's start tag and the first "</script"
// after it (in any case): what the HTML tokenizer hands to JSON.parse.
std::string EmbeddedJson(const std::string& page) {
  const size_t open = page.find(kDataOpen);
  REQUIRE(open != std::string::npos);
  const size_t begin = open + kDataOpen.size();
  const size_t end = Lower(page).find("</script", begin);
  REQUIRE(end != std::string::npos);
  return page.substr(begin, end - begin);
}

// Structural checks every rendered page must pass.
void CheckPage(const std::string& page, const nlohmann::json& report) {
  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(page.find("<title>alloy compare</title>") != std::string::npos);
  // Exactly two script elements (the data and the renderer), each closed once:
  // nothing in the report can add or close one.
  const std::string lower = Lower(page);
  CHECK(Count(lower, "<script") == 2);
  CHECK(Count(lower, "</script") == 2);
  CHECK(Count(lower, "<!--") == 0);
  // The renderer reports its outcome for the Chromium test.
  CHECK(page.find("document.body.dataset.rendered = 'ok'") != std::string::npos);
  CHECK(page.find("window.onerror") != std::string::npos);
  // The embedded JSON is the report.
  const nlohmann::json parsed = nlohmann::json::parse(EmbeddedJson(page));
  CHECK(parsed == report);
}

TEST_CASE("RenderCompareHtml writes one self-contained page", "[compare]") {
  const nlohmann::json report = SyntheticCompareReport();
  const std::string page = RenderCompareHtml(report);
  CheckPage(page, report);
  const std::string lower = Lower(page);
  // No external assets: no URL scheme, no <link>, no src attribute, no CSS
  // import or url(); the CSP forbids fetching anything besides.
  CHECK(lower.find("http://") == std::string::npos);
  CHECK(lower.find("https://") == std::string::npos);
  CHECK(lower.find("//cdn") == std::string::npos);
  CHECK(lower.find("<link") == std::string::npos);
  CHECK(lower.find("src=") == std::string::npos);
  CHECK(lower.find("@import") == std::string::npos);
  CHECK(lower.find("url(") == std::string::npos);
  CHECK(lower.find("default-src 'none'") != std::string::npos);
  // The sections the renderer fills.
  for (const char* id : {"id=\"models\"", "id=\"command\"", "id=\"metric\"", "id=\"series\"",
                         "id=\"heatmap\"", "id=\"charts\"", "id=\"tensors\"", "id=\"filter\"",
                         "id=\"mismatches\"", "id=\"warnings\"", "id=\"render-error\""}) {
    CHECK(page.find(id) != std::string::npos);
  }
}

TEST_CASE("RenderCompareHtml keeps hostile strings inside the data element", "[compare]") {
  const nlohmann::json report = SyntheticCompareReport();
  const std::string page = RenderCompareHtml(report);
  CheckPage(page, report);
  // The hostile name and warning appear only escaped.
  CHECK(page.find("alert(1)</script>") == std::string::npos);
  CHECK(page.find("</SCRIPT") == std::string::npos);
  CHECK(page.find("<b>bold") == std::string::npos);
  CHECK(page.find("\xE2\x80\xA8") == std::string::npos);
  CHECK(page.find("\xE2\x80\xA9") == std::string::npos);
  const std::string data = EmbeddedJson(page);
  CHECK(data.find('<') == std::string::npos);
  CHECK(data.find('>') == std::string::npos);
  CHECK(data.find("\\u003c/script\\u003e\\u003cscript\\u003ealert(1)") != std::string::npos);
  CHECK(data.find("\\u2028") != std::string::npos);
  CHECK(data.find("\\u2029") != std::string::npos);
  // ... and decode back to the original strings.
  const nlohmann::json parsed = nlohmann::json::parse(data);
  bool found = false;
  for (const nlohmann::json& tensor : parsed["tensors"]) {
    found = found || tensor["name"] == kHostileTensorName;
  }
  CHECK(found);
  CHECK(parsed["warnings"][1] == kHostileWarning);
}

TEST_CASE("RenderCompareHtml embeds the report so that it round-trips", "[compare]") {
  for (int layers : {0, 1, 4, 80}) {
    INFO("layers = " << layers);
    const nlohmann::json report = SyntheticCompareReport(layers);
    const std::string page = RenderCompareHtml(report);
    CHECK(nlohmann::json::parse(EmbeddedJson(page)) == report);
  }
  // Every character class that is escaped, inside keys as well as values.
  nlohmann::json odd = {{"<!--&-->", "a</script>b<\\/script>\xE2\x80\xA8\xE2\x80\xA9\"'"},
                        {"command", "alloy compare 'a b/' \"c\" <d> && e"}};
  const std::string page = RenderCompareHtml(odd);
  CheckPage(page, odd);
}

TEST_CASE("RenderCompareHtml renders an empty report", "[compare]") {
  const nlohmann::json empty = EmptyCompareReport();
  CheckPage(RenderCompareHtml(empty), empty);
  // Not even a report object: the page still parses its data and falls back
  // to "nothing to show" in the browser.
  for (const nlohmann::json& degenerate :
       {nlohmann::json::object(), nlohmann::json(), nlohmann::json::array()}) {
    CheckPage(RenderCompareHtml(degenerate), degenerate);
  }
}

TEST_CASE("RenderCompareHtml replaces invalid UTF-8 instead of throwing", "[compare]") {
  nlohmann::json report = EmptyCompareReport();
  report["warnings"] = {std::string("bad byte \xFF here")};
  std::string page;
  REQUIRE_NOTHROW(page = RenderCompareHtml(report));
  const nlohmann::json parsed = nlohmann::json::parse(EmbeddedJson(page));
  CHECK(parsed["warnings"][0] == "bad byte \xEF\xBF\xBD here");  // U+FFFD
}

}  // namespace
}  // namespace alloy::merge
