// Tokenizer tests: tokenizer.json files built in code (tests/testing/
// tokenizer_fixtures.h) with ids worked out by hand, every error path, the
// regex scanners, Unicode normalization, and decode(encode(x)) == x on a
// multilingual corpus.
#include "formats/tokenizer.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "formats/tokenizer_parts.h"
#include "formats/unicode_text.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tokenizer_fixtures.h"

namespace alloy::formats {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;
using alloy::testing::TempDir;

Tokenizer Load(const json& j) {
  Result<Tokenizer> t = ParseTokenizerJson(j.dump(), "tokenizer.json");
  if (!t.ok()) FAIL(t.status().ToString());
  return std::move(t).value();
}

Ids Enc(const Tokenizer& t, std::string_view text, bool special = false) {
  Result<Ids> ids = t.Encode(text, special);
  if (!ids.ok()) FAIL(ids.status().ToString());
  return *ids;
}

Status LoadError(const json& j) {
  Result<Tokenizer> t = ParseTokenizerJson(j.dump(), "tokenizer.json");
  REQUIRE_FALSE(t.ok());
  return t.status();
}

void CheckError(const json& j, ErrorCode code, const std::string& substring) {
  const Status s = LoadError(j);
  INFO(s.ToString());
  CHECK(s.code() == code);
  CHECK_THAT(s.message(), Catch::Matchers::Contains(substring));
}

std::vector<std::string> Scan(std::string_view pattern, std::string_view text) {
  tok::RegexScanner scanner = tok::FindRegexScanner(pattern);
  REQUIRE(scanner != nullptr);
  std::vector<std::pair<size_t, size_t>> ranges;
  scanner(text, &ranges);
  std::vector<std::string> out;
  for (const auto& [b, e] : ranges) out.emplace_back(text.substr(b, e - b));
  return out;
}

const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::vector<std::string>& Corpus() {
  static const std::vector<std::string> corpus = {
      "Hello world! The quick brown fox jumps over the lazy dog.",
      "Café naïve façade — Ünïcödé résumé, coöperate, jalapeño, Ångström",
      "Ελληνικά: Η γρήγορη καφέ αλεπού πηδάει.",
      "Русский текст: Привет, мир! Съешь же ещё этих мягких французских булок.",
      "中文测试：你好，世界。日本語のテキスト、カタカナ。한국어 문장입니다.",
      "emoji 😀👍🏽 🇫🇷 👨‍👩‍👧‍👦 ❤️ ☃",
      "العربية: مرحبا بالعالم ١٢٣",
      "  leading spaces,   runs   of spaces\t\ttabs\n\n\nnewlines  \r\n trailing   ",
      "digits 1234567890 3.14159 1,000,000 ٣٤٥ ⅧⅨ",
      "I'm sure you're right, they'll see it's fine; WE'VE DONE IT'S",
      "symbols: <>{}[]()!?@#$%^&*_+=~`|\\/ \"quoted\" 'single'",
      "combining: e\xCC\x81 a\xCC\x8A n\xCC\x83 vs precomposed é å ñ",
      "",
      " ",
      "\n",
      "x",
  };
  return corpus;
}

// ------------------------------------------------------------ byte-level BPE

TEST_CASE("byte-level BPE (GPT-2 style): merges by rank", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::Gpt2Style());
  CHECK(t.model_type() == "BPE");
  CHECK(t.vocab_size() == 268);
  CHECK(t.model_vocab_size() == 267);
  // "hello": h e → he (rank 1), l l → ll (3), he ll → hell (4), hell o → hello (5).
  // " the": Ġ t → Ġt (0), h e → he (1), Ġt he → Ġthe (2).
  // " world": Ġ w (6), o r (7), Ġw or (8), l d (9), Ġwor ld (10).
  CHECK(Enc(t, "hello the world") == Ids{261, 258, 266});
  CHECK(t.Pieces({261, 258, 266}) == std::vector<std::string>{"hello", "Ġthe", "Ġworld"});
  // Capital H blocks "h e": only l l merges.
  CHECK(Enc(t, "Hello") == Ids{72, 101, 259, 111});
  // GPT-2 regex: "\n\n" before a word splits as "\n", "\n"; "world" has no Ġ.
  CHECK(Enc(t, "hello\n\nworld") == Ids{261, 10, 10, 119, 263, 265});
  CHECK(t.Pieces({10}) == std::vector<std::string>{"Ċ"});
  CHECK(t.Decode({261, 258, 266}, false) == "hello the world");
  // The ByteLevel post-processor adds nothing.
  CHECK(Enc(t, "hello", true) == Ids{261});
}

TEST_CASE("byte-level BPE: added special token split off first", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::Gpt2Style());
  CHECK(Enc(t, "hi<|endoftext|> the") == Ids{104, 105, 267, 258});
  CHECK(t.IsSpecial(267));
  CHECK(t.IsAdded(267));
  CHECK_FALSE(t.IsSpecial(258));
  CHECK(t.IdOf("<|endoftext|>") == 267);
  CHECK(t.IdOf("Ġthe") == 258);
  CHECK_FALSE(t.IdOf("nope").has_value());
  CHECK(t.TokenOf(266) == std::string_view("Ġworld"));
  CHECK_FALSE(t.TokenOf(268).has_value());
  CHECK_FALSE(t.TokenOf(-1).has_value());
  CHECK(t.Decode({104, 105, 267, 258}, false) == "hi<|endoftext|> the");
  CHECK(t.Decode({104, 105, 267, 258}, true) == "hi the");
  REQUIRE(t.added_tokens().size() == 1);
  CHECK(t.added_tokens()[0].content == "<|endoftext|>");
  CHECK(t.added_tokens()[0].special);
}

TEST_CASE("byte-level BPE: add_prefix_space", "[formats][tokenizer]") {
  json j = alloy::testing::Gpt2Style();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  const Tokenizer t = Load(j);
  CHECK(Enc(t, "the") == Ids{258});  // " the"
  CHECK(Enc(t, " the") == Ids{258});  // already starts with a space
}

TEST_CASE("added token flags: lstrip, rstrip, single_word, normalized", "[formats][tokenizer]") {
  json j = alloy::testing::Gpt2Style();
  json mask = alloy::testing::AddedTokenJson(268, "<mask>", true);
  SECTION("lstrip swallows the space on the left") {
    mask["lstrip"] = true;
    j["added_tokens"].push_back(mask);
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "a <mask> b") == Ids{97, 268, 32, 98});
  }
  SECTION("without lstrip the space stays in the text") {
    j["added_tokens"].push_back(mask);
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "a <mask> b") == Ids{97, 32, 268, 32, 98});
  }
  SECTION("rstrip swallows the space on the right") {
    mask["rstrip"] = true;
    j["added_tokens"].push_back(mask);
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "<mask> b") == Ids{268, 98});
  }
  SECTION("single_word skips matches inside a word") {
    json ab = alloy::testing::AddedTokenJson(268, "ab", false);
    ab["single_word"] = true;
    j["added_tokens"].push_back(ab);
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "ab cab ab") == Ids{268, 32, 99, 97, 98, 32, 268});
    CHECK(Enc(t, "_ab") == Ids{95, 97, 98});  // "_" is a word character (\w)
    CHECK(Enc(t, "(ab)") == Ids{40, 268, 41});
    CHECK_FALSE(t.IsSpecial(268));
    CHECK(t.IsAdded(268));
  }
  SECTION("normalized tokens match after normalization") {
    j["normalizer"] = {{"type", "Lowercase"}};
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(268, "<Foo>", false, true));
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "x<FOO>") == Ids{120, 268});
    CHECK(Enc(t, "x<foo>") == Ids{120, 268});
  }
  SECTION("leftmost-longest among added tokens") {
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(268, "<a>", true));
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(269, "<a><b>", true));
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "<a><b><a>") == Ids{269, 268});
  }
}

TEST_CASE("Llama-3 style: Split regex, ignore_merges, bos template", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::Llama3Style());
  CHECK(Enc(t, "hello the world") == Ids{261, 258, 266});
  CHECK(Enc(t, "hello the world", true) == Ids{269, 261, 258, 266});
  // ignore_merges: a word that is a whole token skips the merges.
  CHECK(Enc(t, " xyz") == Ids{268});
  CHECK(Enc(t, "<|begin_of_text|>hi", false) == Ids{269, 104, 105});
  CHECK(t.Decode({269, 261, 258, 266}, true) == "hello the world");
  // Digits in groups of three: "12345" → "123" "45" (bytes, no merges).
  CHECK(Enc(t, "12345") == Ids{49, 50, 51, 52, 53});
}

TEST_CASE("regex scanners: GPT-2, Llama-3 and Qwen2 patterns", "[formats][tokenizer]") {
  using V = std::vector<std::string>;
  CHECK(Scan(kGpt2Regex, "I'm 12345 cats!!\n\n") == V{"I", "'m", " 12345", " cats", "!!", "\n\n"});
  CHECK(Scan(kGpt2Regex, "a  b") == V{"a", " ", " b"});
  CHECK(Scan(kGpt2Regex, "hello\n\nworld") == V{"hello", "\n", "\n", "world"});
  CHECK(Scan(kGpt2Regex, "I'M") == V{"I", "'", "M"});  // case-sensitive contractions
  CHECK(Scan(kGpt2Regex, "x ...y") == V{"x", " ...", "y"});
  CHECK(Scan(alloy::testing::kLlama3Regex, "I'm 12345 cats!!\n\n") ==
        V{"I", "'m", " ", "123", "45", " cats", "!!\n\n"});
  CHECK(Scan(alloy::testing::kLlama3Regex, "hello\n\n  world") == V{"hello", "\n\n", " ", " world"});
  CHECK(Scan(alloy::testing::kLlama3Regex, "I'M") == V{"I", "'M"});  // (?i:...)
  CHECK(Scan(alloy::testing::kLlama3Regex, "\tfoo(bar)") == V{"\tfoo", "(bar", ")"});
  CHECK(Scan(alloy::testing::kLlama3Regex, "Ελληνικά κείμενα") == V{"Ελληνικά", " κείμενα"});
  CHECK(Scan(kQwen2Regex, "x12345") == V{"x", "1", "2", "3", "4", "5"});
  CHECK(tok::FindRegexScanner("\\w+") == nullptr);
}

// -------------------------------------------------- SentencePiece-style BPE

TEST_CASE("SentencePiece-style BPE (Llama-2 legacy): prepend, byte fallback", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::Llama2Style(true));
  // "hello" → "▁hello": ▁ h (0), l l (1), ▁h e (2), ▁he ll (3), ▁hell o (4).
  CHECK(Enc(t, "hello", true) == Ids{1, 268});
  CHECK(Enc(t, "hello", false) == Ids{268});
  // é is not in the vocabulary: its bytes C3 A9 → <0xC3> = 3 + 0xC3, <0xA9> = 3 + 0xA9.
  CHECK(Enc(t, "hello é") == Ids{268, 259, 3 + 0xC3, 3 + 0xA9});
  CHECK(t.Pieces({3 + 0xC3}) == std::vector<std::string>{"<0xC3>"});
  CHECK(t.Decode({1, 268, 259, 3 + 0xC3, 3 + 0xA9}, true) == "hello é");
  CHECK(t.Decode({1, 268}, false) == "<s> hello");
  // Legacy: the Prepend normalizer runs on the text after a special token too.
  CHECK(Enc(t, "<s>hello") == Ids{1, 268});
  // A lone continuation byte decodes to U+FFFD.
  CHECK(t.Decode({3 + 0xA9}, false) == "\xEF\xBF\xBD");
}

TEST_CASE("SentencePiece-style BPE: Metaspace prepend_scheme first", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::Llama2Style(false));
  CHECK(Enc(t, "hello", true) == Ids{1, 268});
  // After an added token the text does not start the input: no ▁ prepended.
  CHECK(Enc(t, "<s>hello") == Ids{1, 260, 261, 265, 263});
}

TEST_CASE("SentencePiece-style BPE without byte fallback uses a fused <unk>", "[formats][tokenizer]") {
  json j = alloy::testing::Llama2Style(true);
  j["model"]["byte_fallback"] = false;
  const Tokenizer t = Load(j);
  CHECK(Enc(t, "hello éé") == Ids{268, 259, 0});
  j["model"]["fuse_unk"] = false;
  const Tokenizer u = Load(j);
  CHECK(Enc(u, "hello éé") == Ids{268, 259, 0, 0});
}

// ----------------------------------------------------------------- Unigram

TEST_CASE("Unigram: Viterbi over scores, unknown and byte fallback", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::UnigramStyle(false));
  CHECK(t.model_type() == "Unigram");
  // "▁ab": ▁ab (-5) beats ▁ + ab (-6) and ▁ + a + b (-8).
  CHECK(Enc(t, "ab") == Ids{5});
  CHECK(Enc(t, "abc") == Ids{5, 6});
  // z has no piece: unknown (score min - 10); runs of unknowns fuse.
  CHECK(Enc(t, "abz") == Ids{5, 0});
  CHECK(Enc(t, "zz") == Ids{1, 0});
  CHECK(Enc(t, "ab ab") == Ids{5, 5});
  CHECK(t.Decode({5, 6}, false) == "abc");
  const Tokenizer b = Load(alloy::testing::UnigramStyle(true));
  CHECK(Enc(b, "z") == Ids{1, 7});
  CHECK(Enc(b, "zz") == Ids{1, 7, 7});
  CHECK(Enc(b, "q") == Ids{1, 0});  // no <0x71>: the unknown token
}

TEST_CASE("Unigram without unk_id fails on an unknown character", "[formats][tokenizer]") {
  json j = alloy::testing::UnigramStyle(false);
  j["model"]["unk_id"] = nullptr;
  const Tokenizer t = Load(j);
  Result<Ids> ids = t.Encode("q", false);
  REQUIRE_FALSE(ids.ok());
  CHECK(ids.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(ids.status().message(), Catch::Matchers::Contains("no unknown token"));
}

// --------------------------------------------------------------- WordPiece

TEST_CASE("WordPiece: BERT normalizer, pre-tokenizer, greedy longest match", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::WordPieceStyle());
  CHECK(t.model_type() == "WordPiece");
  CHECK(Enc(t, "Unaffable hello!") == Ids{3, 4, 5, 6, 7});
  CHECK(Enc(t, "Unaffable hello!", true) == Ids{1, 3, 4, 5, 6, 7, 2});
  CHECK(Enc(t, "Héllo") == Ids{6});     // accents stripped (lowercase implies it)
  CHECK(Enc(t, "xyz hello") == Ids{0, 6});
  CHECK(Enc(t, "中") == Ids{0});
  CHECK(Enc(t, "a中a") == Ids{9, 0, 9});  // CJK characters are padded into words
  CHECK(t.Decode({1, 3, 4, 5, 6, 7, 2}, true) == "unaffable hello!");
  CHECK(t.Decode({1, 6, 2}, false) == "[CLS] hello [SEP]");
  json j = alloy::testing::WordPieceStyle();
  j["model"]["max_input_chars_per_word"] = 5;
  const Tokenizer s = Load(j);
  CHECK(Enc(s, "unaffable hello") == Ids{0, 6});
}

TEST_CASE("WordLevel: one id per word, else the unknown token", "[formats][tokenizer]") {
  json j = alloy::testing::WordPieceStyle();
  j["normalizer"] = nullptr;
  j["post_processor"] = nullptr;
  j["decoder"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  j["model"] = {{"type", "WordLevel"}, {"unk_token", "[UNK]"}, {"vocab", j["model"]["vocab"]}};
  const Tokenizer t = Load(j);
  CHECK(t.model_type() == "WordLevel");
  CHECK(Enc(t, "hello unaffable!") == Ids{6, 0, 7});
  CHECK(t.Decode({6, 7}, false) == "hello !");
  j["model"]["unk_token"] = "<nope>";
  CheckError(j, ErrorCode::kCorrupt, "/model/unk_token: '<nope>' is not in the vocabulary");
}

TEST_CASE("random bytes: every fixture encodes, byte-level round-trips the repaired text",
          "[formats][tokenizer]") {
  const Tokenizer gpt2 = Load(alloy::testing::Gpt2Style());
  const Tokenizer llama3 = Load(alloy::testing::Llama3Style());
  const Tokenizer llama2 = Load(alloy::testing::Llama2Style(false));
  const Tokenizer unigram = Load(alloy::testing::UnigramStyle(true));
  const Tokenizer wordpiece = Load(alloy::testing::WordPieceStyle());
  std::mt19937 rng(12345);
  const std::string alphabet[] = {"a", " ", "\n", "é", "中", "😀", "\xFF", "\xE2\x82", "'s", "1", "!", "\t",
                                  "<|endoftext|>", "<s>", "\xCC\x81", "ab"};
  for (int iter = 0; iter < 500; ++iter) {
    std::string text;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) text += alphabet[rng() % 16];
    INFO(text);
    const std::string repaired = unicode::RepairUtf8(text);
    CHECK(gpt2.Decode(Enc(gpt2, text), false) == repaired);
    CHECK(llama3.Decode(Enc(llama3, text), false) == repaired);
    for (const Tokenizer* t : {&llama2, &unigram, &wordpiece}) {
      const Ids ids = Enc(*t, text, true);
      for (int32_t id : ids) CHECK(t->TokenOf(id).has_value());
      (void)t->Decode(ids, false);
    }
  }
}

// ---------------------------------------------------- other pipeline parts

TEST_CASE("pre-tokenizers: Whitespace, Digits, Punctuation, Split literal", "[formats][tokenizer]") {
  json j = alloy::testing::WordPieceStyle();
  j["normalizer"] = nullptr;
  j["post_processor"] = nullptr;
  j["model"]["vocab"]["1"] = 10;
  j["model"]["vocab"]["2"] = 11;
  j["model"]["vocab"]["12"] = 12;
  j["model"]["vocab"]["!!"] = 13;
  SECTION("Whitespace: \\w+|[^\\w\\s]+") {
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "hello!! a") == Ids{6, 13, 9});
  }
  SECTION("Digits individual") {
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", {{{"type", "WhitespaceSplit"}}, {{"type", "Digits"}, {"individual_digits", true}}}}};
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "12") == Ids{10, 11});
  }
  SECTION("Digits contiguous") {
    j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", false}};
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "12") == Ids{12});
  }
  SECTION("Punctuation isolates each character") {
    j["pre_tokenizer"] = {{"type", "Punctuation"}, {"behavior", "Isolated"}};
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "!!") == Ids{7, 7});
  }
  SECTION("Split on a literal string, removed") {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "Removed"},
                          {"invert", false}};
    const Tokenizer t = Load(j);
    CHECK(Enc(t, "hello-a") == Ids{6, 9});
  }
}

TEST_CASE("normalizers: NFC, NFD, NFKC, Lowercase, Strip, Replace", "[formats][tokenizer]") {
  namespace uni = unicode;
  CHECK(uni::Normalize("e\xCC\x81", uni::NormalForm::kNfc) == "é");
  CHECK(uni::Normalize("é", uni::NormalForm::kNfd) == "e\xCC\x81");
  CHECK(uni::Normalize("ﬁ", uni::NormalForm::kNfkc) == "fi");
  CHECK(uni::Normalize("ﬁ", uni::NormalForm::kNfc) == "ﬁ");
  CHECK(uni::Normalize("한", uni::NormalForm::kNfd) == "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB");
  CHECK(uni::Normalize("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB", uni::NormalForm::kNfc) == "한");
  // Canonical reordering: dot below (220) before acute (230).
  CHECK(uni::Normalize("q\xCC\x81\xCC\xA3", uni::NormalForm::kNfd) == "q\xCC\xA3\xCC\x81");
  CHECK(uni::Normalize("Å", uni::NormalForm::kNfc) == "Å");  // U+212B ANGSTROM SIGN → U+00C5
  CHECK(uni::Lowercase("ÀΣİABC") == "àσi\xCC\x87" "abc");
  CHECK(uni::IsLetter(0x4E2D));
  CHECK(uni::IsNumber(0x0663));
  CHECK(uni::IsWhitespace(0x3000));
  CHECK_FALSE(uni::IsWhitespace(0x200B));
  CHECK(uni::RepairUtf8("a\xFF" "b\xE2\x82") == "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
  CHECK(uni::RepairUtf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate

  json j = alloy::testing::WordPieceStyle();
  j["post_processor"] = nullptr;
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                       {{"type", "Replace"}, {"pattern", {{"String", "hi"}}}, {"content", "hello"}},
                       {{"type", "NFC"}},
                       {{"type", "Lowercase"}}}}};
  const Tokenizer t = Load(j);
  CHECK(Enc(t, "  HI  ") == Ids{0});  // Replace runs before Lowercase: "hi" is unknown
  CHECK(Enc(t, "  hi  ") == Ids{6});
}

TEST_CASE("invalid UTF-8 input is repaired to U+FFFD", "[formats][tokenizer]") {
  const Tokenizer t = Load(alloy::testing::Gpt2Style());
  // U+FFFD = EF BF BD → byte tokens 239 191 189.
  CHECK(Enc(t, "a\xFF") == Ids{97, 239, 191, 189});
  CHECK(t.Decode(Enc(t, "a\xFF" "b"), false) == "a\xEF\xBF\xBD" "b");
}

TEST_CASE("round trip decode(encode(x)) == x on a multilingual corpus", "[formats][tokenizer]") {
  const Tokenizer gpt2 = Load(alloy::testing::Gpt2Style());
  const Tokenizer llama3 = Load(alloy::testing::Llama3Style());
  const Tokenizer llama2 = Load(alloy::testing::Llama2Style(true));
  for (const std::string& text : Corpus()) {
    INFO(text);
    CHECK(gpt2.Decode(Enc(gpt2, text), false) == text);
    CHECK(llama3.Decode(Enc(llama3, text, true), true) == text);
    CHECK(llama2.Decode(Enc(llama2, text, true), true) == text);
  }
}

// --------------------------------------------------------------- configs

TEST_CASE("tokenizer_config.json and special_tokens_map.json", "[formats][tokenizer]") {
  TempDir dir;
  alloy::testing::WriteFileBytes(dir.Join("tokenizer.json"), alloy::testing::Llama2Style(true).dump());
  const json config = {
      {"add_bos_token", true},
      {"add_eos_token", false},
      {"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}, {"lstrip", false}, {"normalized", false},
                     {"rstrip", false}, {"single_word", false}}},
      {"eos_token", "</s>"},
      {"pad_token", nullptr},
      {"chat_template", "{% for message in messages %}{{ message['content'] }}{% endfor %}"},
      {"added_tokens_decoder",
       {{"2", {{"content", "</s>"}, {"special", true}}}, {"0", {{"content", "<unk>"}, {"special", true}}}}}};
  alloy::testing::WriteFileBytes(dir.Join("tokenizer_config.json"), config.dump());
  alloy::testing::WriteFileBytes(dir.Join("special_tokens_map.json"),
                                 json({{"unk_token", "<unk>"}, {"additional_special_tokens", {"<x>", "<y>"}}}).dump());
  Result<Tokenizer> t = LoadTokenizer(dir.path());
  REQUIRE(t.ok());
  const TokenizerConfig& c = t->config();
  CHECK(c.bos_token == "<s>");
  CHECK(c.eos_token == "</s>");
  CHECK_FALSE(c.pad_token.has_value());
  CHECK(c.unk_token == "<unk>");
  CHECK(c.add_bos_token == true);
  CHECK(c.add_eos_token == false);
  REQUIRE(c.chat_template.has_value());
  CHECK_THAT(*c.chat_template, Catch::Matchers::StartsWith("{% for message"));
  REQUIRE(c.added_tokens_decoder.size() == 2);
  CHECK(c.added_tokens_decoder[0].id == 0);
  CHECK(c.added_tokens_decoder[1].content == "</s>");
  CHECK(c.additional_special_tokens == std::vector<std::string>{"<x>", "<y>"});
  CHECK(c.files.size() == 2);
  CHECK(t->source() == dir.Join("tokenizer.json"));

  SECTION("chat_template as a list of named templates") {
    const json listed = {{"chat_template", {{{"name", "default"}, {"template", "{{ a }}"}},
                                            {{"name", "tool_use"}, {"template", "{{ b }}"}}}}};
    TokenizerConfig c2;
    REQUIRE(ParseTokenizerConfig(listed.dump(), "tokenizer_config.json", "", "", &c2).ok());
    CHECK(c2.chat_template == "{{ a }}");
    REQUIRE(c2.named_chat_templates.size() == 2);
    CHECK(c2.named_chat_templates[1].first == "tool_use");
  }
}

TEST_CASE("tokenizer_config.json errors", "[formats][tokenizer]") {
  TokenizerConfig c;
  SECTION("chat_template of the wrong type") {
    const Status s = ParseTokenizerConfig(R"({"chat_template": 3})", "tokenizer_config.json", "", "", &c);
    CHECK(s.code() == ErrorCode::kCorrupt);
    CHECK_THAT(s.message(), Catch::Matchers::Contains("/chat_template"));
  }
  SECTION("bos_token of the wrong type") {
    const Status s = ParseTokenizerConfig(R"({"bos_token": 1})", "tokenizer_config.json", "", "", &c);
    CHECK(s.code() == ErrorCode::kCorrupt);
    CHECK_THAT(s.message(), Catch::Matchers::Contains("bos_token"));
  }
  SECTION("added_tokens_decoder key not an id") {
    const Status s = ParseTokenizerConfig(R"({"added_tokens_decoder": {"x": {"content": "a"}}})",
                                          "tokenizer_config.json", "", "", &c);
    CHECK(s.code() == ErrorCode::kCorrupt);
    CHECK_THAT(s.message(), Catch::Matchers::Contains("key must be a token id"));
  }
  SECTION("special_tokens_map.json not an object") {
    const Status s = ParseTokenizerConfig("", "", "[1]", "special_tokens_map.json", &c);
    CHECK(s.code() == ErrorCode::kCorrupt);
    CHECK_THAT(s.message(), Catch::Matchers::Contains("special_tokens_map.json"));
  }
}

// ------------------------------------------------------------ error paths

TEST_CASE("tokenizer.json errors: one per path", "[formats][tokenizer]") {
  json j = alloy::testing::Gpt2Style();
  SECTION("invalid JSON") {
    Result<Tokenizer> t = ParseTokenizerJson("{\"model\": ", "tokenizer.json");
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kCorrupt);
    CHECK_THAT(t.status().message(), Catch::Matchers::Contains("invalid JSON in tokenizer.json"));
  }
  SECTION("no model") {
    j.erase("model");
    CheckError(j, ErrorCode::kCorrupt, "no 'model'");
  }
  SECTION("unknown model type") {
    j["model"]["type"] = "Foo";
    CheckError(j, ErrorCode::kUnsupported, "tokenizer.json: /model: unknown model type 'Foo'");
  }
  SECTION("unknown normalizer type") {
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Bar"}}}}};
    CheckError(j, ErrorCode::kUnsupported, "/normalizer/normalizers/0: unknown normalizer type 'Bar'");
  }
  SECTION("Precompiled normalizer") {
    j["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}};
    CheckError(j, ErrorCode::kUnsupported, "'Precompiled'");
  }
  SECTION("unknown pre-tokenizer type") {
    j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
    CheckError(j, ErrorCode::kUnsupported, "/pre_tokenizer: unknown pre-tokenizer type 'UnicodeScripts'");
  }
  SECTION("unknown split regex") {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}};
    CheckError(j, ErrorCode::kUnsupported, "/pre_tokenizer/pattern/Regex: unsupported regex '\\w+'");
  }
  SECTION("regex in a Replace normalizer") {
    j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}};
    CheckError(j, ErrorCode::kUnsupported, "regex ' {2,}' is not supported");
  }
  SECTION("unknown split behavior") {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}};
    CheckError(j, ErrorCode::kUnsupported, "unknown split behavior 'Sideways'");
  }
  SECTION("unknown decoder type") {
    j["decoder"] = {{"type", "CTC"}};
    CheckError(j, ErrorCode::kUnsupported, "/decoder: unknown decoder type 'CTC'");
  }
  SECTION("unknown post-processor type") {
    j["post_processor"] = {{"type", "Magic"}};
    CheckError(j, ErrorCode::kUnsupported, "/post_processor: unknown post-processor type 'Magic'");
  }
  SECTION("component without a type") {
    j["decoder"] = {{"kind", "ByteLevel"}};
    CheckError(j, ErrorCode::kCorrupt, "/decoder: 'type' must be a string");
  }
  SECTION("merge refers to an unknown token") {
    j["model"]["merges"].push_back("Ġ zzz");
    CheckError(j, ErrorCode::kCorrupt, "/model/merges/11: merge refers to unknown token 'zzz'");
  }
  SECTION("merge result not in the vocabulary") {
    j["model"]["merges"].push_back("a b");
    CheckError(j, ErrorCode::kCorrupt, "merge result 'ab' is not in the vocabulary");
  }
  SECTION("malformed merge") {
    j["model"]["merges"].push_back("abc");
    CheckError(j, ErrorCode::kCorrupt, "is not two tokens separated by one space");
  }
  SECTION("duplicate id in the vocabulary") {
    j["model"]["vocab"]["zzz"] = 5;
    CheckError(j, ErrorCode::kCorrupt, "duplicate id 5");
  }
  SECTION("negative id") {
    j["model"]["vocab"]["zzz"] = -1;
    CheckError(j, ErrorCode::kCorrupt, "id -1 out of range");
  }
  SECTION("id over the cap") {
    j["model"]["vocab"]["zzz"] = int64_t{1} << 40;
    CheckError(j, ErrorCode::kCorrupt, "out of range");
  }
  SECTION("non-integer id") {
    j["model"]["vocab"]["zzz"] = "7";
    CheckError(j, ErrorCode::kCorrupt, "id must be an integer");
  }
  SECTION("unknown unk_token") {
    j["model"]["unk_token"] = "<nope>";
    CheckError(j, ErrorCode::kCorrupt, "/model/unk_token: '<nope>' is not in the vocabulary");
  }
  SECTION("BPE dropout") {
    j["model"]["dropout"] = 0.1;
    CheckError(j, ErrorCode::kUnsupported, "dropout");
  }
  SECTION("added token id taken by another model token") {
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(5, "<x>", true));
    CheckError(j, ErrorCode::kCorrupt, "which the model vocabulary gives to");
  }
  SECTION("added token with another id in the model") {
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(300, "Ġthe", false));
    CheckError(j, ErrorCode::kCorrupt, "but is id 258 in the model vocabulary");
  }
  SECTION("duplicate added token id") {
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(267, "<other>", true));
    CheckError(j, ErrorCode::kCorrupt, "duplicate added token id 267");
  }
  SECTION("duplicate added token content") {
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(300, "<|endoftext|>", true));
    CheckError(j, ErrorCode::kCorrupt, "duplicate added token '<|endoftext|>'");
  }
  SECTION("empty added token") {
    j["added_tokens"].push_back(alloy::testing::AddedTokenJson(300, "", true));
    CheckError(j, ErrorCode::kCorrupt, "must not be empty");
  }
  SECTION("template names an unlisted special token") {
    json l = alloy::testing::Llama3Style();
    l["post_processor"]["processors"][1]["special_tokens"] = json::object();
    CheckError(l, ErrorCode::kCorrupt, "is not listed in special_tokens");
  }
  SECTION("template id out of range") {
    json l = alloy::testing::Llama3Style();
    l["post_processor"]["processors"][1]["special_tokens"]["<|begin_of_text|>"]["ids"] = {9999};
    CheckError(l, ErrorCode::kCorrupt, "id 9999 is not in the vocabulary");
  }
  SECTION("Bert post-processor id out of range") {
    json w = alloy::testing::WordPieceStyle();
    w["post_processor"]["sep"] = json::array({"[SEP]", 99});
    CheckError(w, ErrorCode::kCorrupt, "/post_processor/sep: id 99");
  }
  SECTION("WordPiece unk_token not in the vocabulary") {
    json w = alloy::testing::WordPieceStyle();
    w["model"]["unk_token"] = "<unk>";
    CheckError(w, ErrorCode::kCorrupt, "'<unk>' is not in the vocabulary");
  }
  SECTION("Unigram entry malformed") {
    json u = alloy::testing::UnigramStyle(false);
    u["model"]["vocab"][2] = "a";
    CheckError(u, ErrorCode::kCorrupt, "/model/vocab/2: expected [\"piece\", score]");
  }
  SECTION("Unigram duplicate piece") {
    json u = alloy::testing::UnigramStyle(false);
    u["model"]["vocab"][3] = json::array({"a", -1.0});
    CheckError(u, ErrorCode::kCorrupt, "duplicate token 'a'");
  }
  SECTION("Unigram unk_id out of range") {
    json u = alloy::testing::UnigramStyle(false);
    u["model"]["unk_id"] = 8;
    CheckError(u, ErrorCode::kCorrupt, "/model/unk_id: id 8 out of range [0, 8)");
  }
  SECTION("Metaspace replacement of two characters") {
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "ab"}};
    CheckError(j, ErrorCode::kCorrupt, "must be one character");
  }
}

TEST_CASE("LoadTokenizer: files, caps, legacy tokenizer.model, symlinks", "[formats][tokenizer]") {
  TempDir dir;
  SECTION("no tokenizer files") {
    Result<Tokenizer> t = LoadTokenizer(dir.path());
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kNotFound);
    CHECK_THAT(t.status().message(), Catch::Matchers::Contains("no tokenizer.json"));
  }
  SECTION("not a directory") {
    Result<Tokenizer> t = LoadTokenizer(dir.Join("missing"));
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kNotFound);
  }
  SECTION("legacy tokenizer.model only") {
    alloy::testing::WriteFileBytes(dir.Join("tokenizer.model"), std::string("\x0a\x05hello", 7));
    Result<Tokenizer> t = LoadTokenizer(dir.path());
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kUnsupported);
    CHECK_THAT(t.status().message(),
               Catch::Matchers::Contains("only tokenizer.model (SentencePiece protobuf) found; alloy reads tokenizer.json"));
  }
  SECTION("file over the size cap") {
    alloy::testing::WriteFileBytes(dir.Join("tokenizer.json"), alloy::testing::Gpt2Style().dump());
    TokenizerLoadOptions options;
    options.max_file_bytes = 1000;
    Result<Tokenizer> t = LoadTokenizer(dir.path(), options);
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kInvalidArgument);
  }
  SECTION("vocabulary over the cap") {
    alloy::testing::WriteFileBytes(dir.Join("tokenizer.json"), alloy::testing::Gpt2Style().dump());
    TokenizerLoadOptions options;
    options.max_vocab = 100;
    Result<Tokenizer> t = LoadTokenizer(dir.path(), options);
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(t.status().message(), Catch::Matchers::Contains("exceed the cap of 100"));
  }
  SECTION("symlink leading outside the directory") {
    TempDir other;
    alloy::testing::WriteFileBytes(other.Join("tokenizer.json"), alloy::testing::Gpt2Style().dump());
    const std::string model = dir.Join("model");
    alloy::testing::WriteFileBytes(model + "/placeholder", "x");
    REQUIRE(symlink(other.Join("tokenizer.json").c_str(), (model + "/tokenizer.json").c_str()) == 0);
    Result<Tokenizer> t = LoadTokenizer(model);
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(t.status().message(), Catch::Matchers::Contains("symlink leads outside"));
    TokenizerLoadOptions follow;
    follow.symlinks = SymlinkPolicy::kFollow;
    CHECK(LoadTokenizer(model, follow).ok());
  }
  SECTION("malformed tokenizer_config.json") {
    alloy::testing::WriteFileBytes(dir.Join("tokenizer.json"), alloy::testing::Gpt2Style().dump());
    alloy::testing::WriteFileBytes(dir.Join("tokenizer_config.json"), "{\"a\": 1, \"a\": 2}");
    Result<Tokenizer> t = LoadTokenizer(dir.path());
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == ErrorCode::kCorrupt);
    CHECK_THAT(t.status().message(), Catch::Matchers::Contains("tokenizer_config.json"));
  }
}

// Writes the fixture tokenizers and the corpus for the npm reference check
// (tests/cli/tokenizer_js/check_tokenizers_js.sh); hidden, and a no-op
// unless ALLOY_TOKENIZER_FIXTURES names the output directory.
TEST_CASE("write tokenizer fixtures for the JS reference", "[.write-fixtures]") {
  const char* out = std::getenv("ALLOY_TOKENIZER_FIXTURES");
  if (out == nullptr) return;
  const std::string root = out;
  const std::pair<const char*, json> fixtures[] = {{"gpt2", alloy::testing::Gpt2Style()},
                                                   {"llama3", alloy::testing::Llama3Style()},
                                                   {"llama2-legacy", alloy::testing::Llama2Style(true)},
                                                   {"llama2-metaspace", alloy::testing::Llama2Style(false)},
                                                   {"unigram", alloy::testing::UnigramStyle(true)},
                                                   {"wordpiece", alloy::testing::WordPieceStyle()}};
  for (const auto& [name, j] : fixtures) {
    alloy::testing::WriteFileBytes(root + "/" + name + "/tokenizer.json", j.dump(2));
    alloy::testing::WriteFileBytes(root + "/" + name + "/tokenizer_config.json", "{}");
  }
  std::vector<std::string> texts = Corpus();
  texts.push_back("hello the world<|endoftext|> again");
  texts.push_back("<|begin_of_text|>hello<s> hello </s>");
  alloy::testing::WriteFileBytes(root + "/corpus.json", json(texts).dump(2));
}

// Throughput of byte-level BPE on 1 MB of text (hidden: run with "[.perf]").
// The vocabulary has a merge chain for each of 400 synthetic words, so every
// word of the text costs a few merges (or a cache hit).
TEST_CASE("byte-level BPE throughput", "[.perf]") {
  std::mt19937 rng(7);
  std::vector<std::string> words;
  const std::string letters = "etaoinshrdlucmfwypvbgkjqxz";
  for (int w = 0; w < 400; ++w) {
    std::string s;
    const int len = 2 + static_cast<int>(rng() % 8);
    for (int k = 0; k < len; ++k) s.push_back(letters[rng() % (k == 0 ? 26 : 12)]);
    words.push_back(s);
  }
  json j = alloy::testing::Gpt2Style();
  json& vocab = j["model"]["vocab"];
  json& merges = j["model"]["merges"];
  int next = 300;
  j["added_tokens"] = json::array();
  for (const std::string& w : words) {
    std::string left = "Ġ";
    for (char c : w) {
      const std::string right(1, c);
      if (!vocab.contains(left + right)) {
        vocab[left + right] = next++;
        merges.push_back(left + " " + right);
      }
      left += right;
    }
  }
  std::string text;
  while (text.size() < (1u << 20)) {
    text += rng() % 9 == 0 ? std::string(rng() % 2 ? ", " : ".\n") : std::string(" ");
    text += words[rng() % words.size()];
    if (rng() % 13 == 0) text += " " + std::to_string(rng() % 100000);
  }
  const Tokenizer t = Load(j);
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    const Ids ids = Enc(t, text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("byte-level BPE: %zu bytes -> %zu tokens in %.3f s = %.1f MB/s (%zu merges)\n", text.size(),
                ids.size(), s, static_cast<double>(text.size()) / s / 1e6, merges.size());
    CHECK(t.Decode(ids, false) == text);
  }
}

}  // namespace
}  // namespace alloy::formats
