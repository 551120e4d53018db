// `alloy compare`: RunCompare on tiny models (terminal report, JSON, CSV and
// HTML files, the table's metric and series), every error path, and the built
// binary (help text, exit codes, a corrupt input).
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cmd_compare.h"
#include "examples/tiny_models.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing_support::Binary;
using testing_support::Q;
using testing_support::Run;

Run Compare(const CompareCmdOptions& options) {
  return testing_support::RunCommand(RunCompare, options);
}

// Tiny llama base (index 0) and fine-tunes 1..n at dir/m<i>.
void TinyFamily(const TempDir& dir, int n) {
  for (int i = 0; i <= n; ++i) {
    examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
    spec.model_index = i;
    REQUIRE(examples::WriteTinyModel(spec, dir.Join("m" + std::to_string(i))).ok());
  }
}

TEST_CASE("compare prints the whole-model figures and the layer table", "[cli][compare]") {
  TempDir dir;
  TinyFamily(dir, 2);
  CompareCmdOptions o;
  o.models = {dir.Join("m1"), dir.Join("m2")};
  o.base = dir.Join("m0");
  o.top = 2;
  const Run r = Compare(o);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("compare: A = " + dir.Join("m1")) != std::string::npos);
  CHECK(r.out.find("cosine similarity") != std::string::npos);
  CHECK(r.out.find("sign conflict") != std::string::npos);
  CHECK(r.out.find("by layer and module") != std::string::npos);
  CHECK(r.out.find("least alike (lowest) cosine similarity A~B:") != std::string::npos);
  CHECK(r.out.find("\033[") == std::string::npos);  // no colour off a terminal
}

TEST_CASE("compare writes JSON CSV and HTML reports", "[cli][compare]") {
  TempDir dir;
  TinyFamily(dir, 2);
  CompareCmdOptions o;
  o.models = {dir.Join("m1"), dir.Join("m2")};
  o.base = dir.Join("m0");
  o.json_path = dir.Join("r.json");
  o.csv_path = dir.Join("r.csv");
  o.html_path = dir.Join("r.html");
  o.command = "alloy compare m1 m2 --base m0";
  o.quiet = true;
  const Run r = Compare(o);
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());
  const auto j = nlohmann::json::parse(testing::ReadFileBytes(o.json_path));
  CHECK(j["command"] == o.command);
  CHECK(j["models"].size() == 2);
  CHECK(j["tensors"].size() > 10);
  CHECK(j["layers"] == 2);
  const std::string csv = testing::ReadFileBytes(o.csv_path);
  CHECK(csv.find("sign_conflict[A~B]") != std::string::npos);
  const std::string html = testing::ReadFileBytes(o.html_path);
  CHECK(html.find("<!DOCTYPE html>") != std::string::npos);
  CHECK(html.find("alloy-compare/1") != std::string::npos);
  for (const auto& e : fs::directory_iterator(dir.path())) {
    CHECK(e.path().string().find("alloy-tmp") == std::string::npos);
  }
}

TEST_CASE("compare --metric and --series choose the table", "[cli][compare]") {
  TempDir dir;
  TinyFamily(dir, 2);
  CompareCmdOptions o;
  o.models = {dir.Join("m1"), dir.Join("m2")};
  o.base = dir.Join("m0");
  o.metric = "tau_norm";
  o.series = "B";
  const Run r = Compare(o);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("task vector norm ‖τ‖ B by layer and module") != std::string::npos);
  o.metric = "nope";
  const Run bad = Compare(o);
  CHECK(bad.code == 2);
  CHECK(bad.err.find("--metric 'nope' is not available here; choose one of: cosine") !=
        std::string::npos);
  o.metric = "tau_norm";
  o.series = "A~B";
  const Run bad_series = Compare(o);
  CHECK(bad_series.code == 2);
  CHECK(bad_series.err.find("choose one of: A, B") != std::string::npos);
  o.base.clear();
  o.series.clear();
  const Run no_base = Compare(o);  // tau_norm needs a base
  CHECK(no_base.code == 2);
  CHECK(no_base.err.find("--metric 'tau_norm' is not available") != std::string::npos);
}

TEST_CASE("compare of one model against a base shows its task vector", "[cli][compare]") {
  TempDir dir;
  TinyFamily(dir, 1);
  CompareCmdOptions o;
  o.models = {dir.Join("m1")};
  o.base = dir.Join("m0");
  o.rank = 2;
  const Run r = Compare(o);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("task vector norm ‖τ‖ A by layer and module") != std::string::npos);
  CHECK(r.out.find("effective rank (top k)") != std::string::npos);
  CHECK(r.out.find("cosine") == std::string::npos);  // no pairs
  o.metric = "cosine";
  const Run pair_metric = Compare(o);
  CHECK(pair_metric.code == 2);
  CHECK(pair_metric.err.find("choose one of: tau_norm") != std::string::npos);
}

TEST_CASE("compare refuses bad input with exit code 2", "[cli][compare]") {
  TempDir dir;
  TinyFamily(dir, 1);
  CompareCmdOptions o;
  o.models = {dir.Join("m1")};
  const Run one = Compare(o);
  CHECK(one.code == 2);
  CHECK(one.err.find("at least two models") != std::string::npos);
  o.models = {dir.Join("m1"), dir.Join("missing")};
  const Run missing = Compare(o);
  CHECK(missing.code == 2);
  CHECK(missing.err.find("missing") != std::string::npos);
  o.models = {dir.Join("m1"), dir.Join("m0")};
  o.rank = 4;
  const Run rank = Compare(o);
  CHECK(rank.code == 2);
  CHECK(rank.err.find("--base") != std::string::npos);
  o.rank = 0;
  o.json_path = dir.Join("no-such-dir/r.json");
  const Run unwritable = Compare(o);
  CHECK(unwritable.code == 2);  // checked before anything is read
  CHECK(unwritable.err.find("no-such-dir' does not exist") != std::string::npos);
}

TEST_CASE("alloy compare binary help and a corrupt input", "[cli][compare]") {
  TempDir dir;
  TinyFamily(dir, 1);
  const Run help = Binary("compare --help", dir);
  CHECK(help.code == 0);
  CHECK(help.out.find("--base") != std::string::npos);
  CHECK(help.out.find("docs/compare.md") != std::string::npos);
  // Truncate a copy of the model's weights: the header promises more bytes.
  fs::copy(dir.Join("m1"), dir.Join("bad"), fs::copy_options::recursive);
  const std::string st = dir.Join("bad/model.safetensors");
  fs::resize_file(st, fs::file_size(st) / 2);
  const Run bad = Binary("compare " + Q(dir.Join("m1")) + " " + Q(dir.Join("bad")), dir);
  CHECK(bad.code == 2);
  CHECK(bad.err.find("model.safetensors") != std::string::npos);
  const Run ok = Binary("compare " + Q(dir.Join("m1")) + " " + Q(dir.Join("m0")) + " --json " +
                            Q(dir.Join("r.json")) + " --quiet",
                        dir);
  CHECK(ok.code == 0);
  const auto j = nlohmann::json::parse(testing::ReadFileBytes(dir.Join("r.json")));
  CHECK(j["command"].get<std::string>().rfind("alloy compare ", 0) == 0);
}

}  // namespace
}  // namespace alloy::cli
