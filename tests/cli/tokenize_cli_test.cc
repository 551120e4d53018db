// `alloy tokenize`: RunTokenize called directly, and the built binary (exit
// codes, output format, --help), on tokenizer files built in code.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cli/cmd_tokenize.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tokenizer_fixtures.h"

namespace alloy::cli {
namespace {

using testing::TempDir;
using testing_support::Binary;
using testing_support::Q;
using testing_support::Run;

Run Tokenize(TokenizeOptions options) { return testing_support::RunCommand(RunTokenize, options); }

std::string WriteTokenizer(const TempDir& dir, const nlohmann::json& j, const std::string& name) {
  alloy::testing::WriteFileBytes(dir.Join(name + "/tokenizer.json"), j.dump());
  return dir.Join(name);
}

TEST_CASE("tokenize prints ids and pieces", "[cli][tokenize]") {
  TempDir dir;
  const std::string model = WriteTokenizer(dir, alloy::testing::Llama3Style(), "llama3");
  TokenizeOptions o;
  o.model = model;
  o.text = "hello the world";
  Run r = Tokenize(o);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Matchers::StartsWith("4 tokens (BPE, vocabulary 271): 269 261 258 266\n"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("     0      269  <|begin_of_text|>  (special)\n"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("     2      258  Ġthe\n"));
  o.no_special = true;
  r = Tokenize(o);
  CHECK_THAT(r.out, Catch::Matchers::StartsWith("3 tokens (BPE, vocabulary 271): 261 258 266\n"));
}

TEST_CASE("tokenize --json and control characters", "[cli][tokenize]") {
  TempDir dir;
  const std::string model = WriteTokenizer(dir, alloy::testing::Llama2Style(true), "llama2");
  TokenizeOptions o;
  o.model = model;
  o.text = "hello\n";
  o.json = true;
  Run r = Tokenize(o);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  // "▁hello" then "\n" by byte fallback: <0x0A> = 3 + 10.
  CHECK(j["ids"] == nlohmann::json::array({1, 268, 13}));
  CHECK(j["pieces"] == nlohmann::json::array({"<s>", "▁hello", "<0x0A>"}));
  CHECK(j["special"] == nlohmann::json::array({true, false, false}));
  CHECK(j["count"] == 3);
  CHECK(j["model_type"] == "BPE");
  CHECK(PrintablePiece("a\nb\x01\\") == "a\\nb\\x01\\\\");
  CHECK(PrintablePiece("Ġ▁<0x0A>") == "Ġ▁<0x0A>");
}

TEST_CASE("tokenize --file and --decode", "[cli][tokenize]") {
  TempDir dir;
  const std::string model = WriteTokenizer(dir, alloy::testing::Gpt2Style(), "gpt2");
  alloy::testing::WriteFileBytes(dir.Join("text.txt"), "hello the world");
  TokenizeOptions o;
  o.model = model;
  o.file = dir.Join("text.txt");
  Run r = Tokenize(o);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Matchers::StartsWith("3 tokens (BPE, vocabulary 268): 261 258 266\n"));
  TokenizeOptions d;
  d.model = model;
  d.decode = "261, 258 266,267";
  r = Tokenize(d);
  REQUIRE(r.code == 0);
  CHECK(r.out == "hello the world<|endoftext|>\n");
  d.skip_special = true;
  r = Tokenize(d);
  CHECK(r.out == "hello the world\n");
  d.json = true;
  r = Tokenize(d);
  CHECK(nlohmann::json::parse(r.out)["text"] == "hello the world");
}

TEST_CASE("tokenize errors and exit codes", "[cli][tokenize]") {
  TempDir dir;
  const std::string model = WriteTokenizer(dir, alloy::testing::Gpt2Style(), "gpt2");
  SECTION("no tokenizer") {
    alloy::testing::WriteFileBytes(dir.Join("empty/config.json"), "{}");
    TokenizeOptions o;
    o.model = dir.Join("empty");
    o.text = "x";
    Run r = Tokenize(o);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Matchers::Contains("no tokenizer.json"));
  }
  SECTION("legacy tokenizer.model") {
    alloy::testing::WriteFileBytes(dir.Join("sp/tokenizer.model"), "\x0a\x01x");
    TokenizeOptions o;
    o.model = dir.Join("sp");
    o.text = "x";
    Run r = Tokenize(o);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Matchers::Contains("only tokenizer.model (SentencePiece protobuf) found"));
  }
  SECTION("unsupported component") {
    nlohmann::json j = alloy::testing::Gpt2Style();
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "[a-z]+"}}}, {"behavior", "Isolated"}};
    TokenizeOptions o;
    o.model = WriteTokenizer(dir, j, "odd");
    o.text = "x";
    Run r = Tokenize(o);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Matchers::Contains("alloy: error: "));
    CHECK_THAT(r.err, Catch::Matchers::Contains("unsupported regex '[a-z]+'"));
  }
  SECTION("text and --file together") {
    TokenizeOptions o;
    o.model = model;
    o.text = "x";
    o.file = "y";
    CHECK(Tokenize(o).code == 2);
  }
  SECTION("missing --file") {
    TokenizeOptions o;
    o.model = model;
    o.file = dir.Join("nope.txt");
    CHECK(Tokenize(o).code == 2);
  }
  SECTION("bad --decode ids") {
    TokenizeOptions o;
    o.model = model;
    o.decode = "1,x";
    Run r = Tokenize(o);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Matchers::Contains("--decode"));
    o.decode = "99999";
    r = Tokenize(o);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Matchers::Contains("not in the vocabulary"));
  }
}

TEST_CASE("tokenize binary: --help, output, exit codes", "[cli][tokenize]") {
  TempDir dir;
  const std::string model = WriteTokenizer(dir, alloy::testing::Gpt2Style(), "gpt2");
  Run r = Binary("tokenize --help", dir);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Matchers::Contains("alloy tokenize ./Llama-3.2-1B \"Hello world\""));
  CHECK_THAT(r.out, Catch::Matchers::Contains("--decode"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("Exit codes"));
  r = Binary("tokenize " + Q(model) + " 'hello the world'", dir);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Matchers::StartsWith("3 tokens (BPE, vocabulary 268): 261 258 266\n"));
  r = Binary("tokenize " + Q(model) + " --decode 261,258", dir);
  CHECK(r.code == 0);
  CHECK(r.out == "hello the\n");
  r = Binary("tokenize " + Q(dir.Join("missing")) + " x", dir);
  CHECK(r.code == 2);
  r = Binary("tokenize", dir);
  CHECK(r.code == 2);
}

}  // namespace
}  // namespace alloy::cli
