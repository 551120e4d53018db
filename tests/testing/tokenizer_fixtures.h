// Small tokenizer.json files built in code, for the tokenizer tests and the
// `alloy tokenize` CLI tests. Their vocabularies are tiny so the expected ids
// can be worked out by hand (the tests say how).
//
// * Gpt2Style: byte-level BPE; ids 0..255 are the 256 bytes (GPT-2's
//   bytes_to_unicode characters, id = byte value), then one id per merge in
//   kByteLevelMerges order (256 = "Ġt" ... 266 = "Ġworld"), then
//   <|endoftext|> = 267 (special). ByteLevel pre-tokenizer (GPT-2 regex).
// * Llama3Style: the same vocabulary plus "Ġxyz" = 268 (reachable only
//   through ignore_merges), <|begin_of_text|> = 269 and <|end_of_text|> = 270;
//   Split (Llama-3 regex) + ByteLevel(use_regex false); bos template.
// * Llama2Style: SentencePiece-style BPE with byte fallback: <unk> 0, <s> 1,
//   </s> 2, <0x00>..<0xFF> = 3..258, "▁" 259, "h" 260, "e" 261, "l" 262,
//   "o" 263, then merges "▁h" 264, "ll" 265, "▁he" 266, "▁hell" 267,
//   "▁hello" 268. `legacy`: Prepend+Replace normalizer; else Metaspace
//   pre-tokenizer with prepend_scheme "first".
// * UnigramStyle: <unk> 0 (0.0), "▁" 1 (-2), "a" 2 (-3), "b" 3 (-3),
//   "ab" 4 (-4), "▁ab" 5 (-5), "c" 6 (-6), "<0x7A>" 7 (-8); Metaspace.
// * WordPieceStyle: BERT uncased style: [UNK] 0, [CLS] 1, [SEP] 2, "un" 3,
//   "##aff" 4, "##able" 5, "hello" 6, "!" 7, "##s" 8, "a" 9.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace alloy::testing {

// GPT-2's bytes_to_unicode(): the printable character standing for byte b.
inline std::string ByteLevelChar(int b) {
  int cp = b;
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  if (!printable) {
    int n = 0;
    for (int k = 0; k < b; ++k) {
      if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255))) ++n;
    }
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

inline const std::vector<std::pair<std::string, std::string>>& ByteLevelMerges() {
  static const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"l", "l"},   {"he", "ll"},  {"hell", "o"},
      {"Ġ", "w"}, {"o", "r"}, {"Ġw", "or"}, {"l", "d"}, {"Ġwor", "ld"}};
  return merges;
}

inline nlohmann::json AddedTokenJson(int id, const std::string& content, bool special,
                                     bool normalized = false) {
  return {{"id", id},        {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", normalized}, {"special", special}};
}

inline nlohmann::json ByteLevelModel(bool ignore_merges) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelChar(b)] = b;
  nlohmann::json merges = nlohmann::json::array();
  int next = 256;
  for (const auto& [a, b] : ByteLevelMerges()) {
    vocab[a + b] = next++;
    merges.push_back(a + " " + b);
  }
  return {{"type", "BPE"},        {"dropout", nullptr},  {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},    {"byte_fallback", false}, {"ignore_merges", ignore_merges},
          {"vocab", vocab},       {"merges", merges}};
}

inline nlohmann::json Gpt2Style() {
  nlohmann::json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = nlohmann::json::array({AddedTokenJson(267, "<|endoftext|>", true)});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
                         {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = ByteLevelModel(false);
  return j;
}

inline const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

inline nlohmann::json Llama3Style() {
  nlohmann::json j = Gpt2Style();
  j["model"] = ByteLevelModel(true);
  j["model"]["vocab"]["Ġxyz"] = 268;
  j["added_tokens"] = {AddedTokenJson(269, "<|begin_of_text|>", true),
                       AddedTokenJson(270, "<|end_of_text|>", true)};
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Regex}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  nlohmann::json tmpl = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 1}}}},
                {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens",
       {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", nlohmann::json::array({269})}, {"tokens", nlohmann::json::array({"<|begin_of_text|>"})}}}}}};
  j["post_processor"] = {{"type", "Sequence"},
                         {"processors",
                          {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
                            {"use_regex", true}},
                           tmpl}}};
  return j;
}

inline nlohmann::json Llama2Style(bool legacy) {
  nlohmann::json vocab = nlohmann::json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  static const char* kHex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    vocab[std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">"] = 3 + b;
  }
  const std::vector<std::string> singles = {"▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "▁hell", "▁hello"};
  for (size_t k = 0; k < singles.size(); ++k) vocab[singles[k]] = 259 + static_cast<int>(k);
  nlohmann::json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = {AddedTokenJson(0, "<unk>", true), AddedTokenJson(1, "<s>", true),
                       AddedTokenJson(2, "</s>", true)};
  if (legacy) {
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", "▁"}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}};
    j["pre_tokenizer"] = nullptr;
  } else {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"},
                          {"split", false}};
  }
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                {{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}},
                {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", nlohmann::json::array({1})}, {"tokens", nlohmann::json::array({"<s>"})}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", {"▁ h", "l l", "▁h e", "▁he ll", "▁hell o"}}};
  return j;
}

inline nlohmann::json UnigramStyle(bool byte_fallback) {
  nlohmann::json j;
  j["version"] = "1.0";
  j["added_tokens"] = nlohmann::json::array({AddedTokenJson(0, "<unk>", true)});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"},
                        {"split", true}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"},
                  {"split", true}};
  j["model"] = {{"type", "Unigram"},
                {"unk_id", 0},
                {"byte_fallback", byte_fallback},
                {"vocab",
                 nlohmann::json::array({nlohmann::json::array({"<unk>", 0.0}), nlohmann::json::array({"▁", -2.0}),
                                        nlohmann::json::array({"a", -3.0}), nlohmann::json::array({"b", -3.0}),
                                        nlohmann::json::array({"ab", -4.0}), nlohmann::json::array({"▁ab", -5.0}),
                                        nlohmann::json::array({"c", -6.0}), nlohmann::json::array({"<0x7A>", -8.0})})}};
  return j;
}

inline nlohmann::json WordPieceStyle() {
  nlohmann::json j;
  j["version"] = "1.0";
  j["added_tokens"] = {AddedTokenJson(0, "[UNK]", true), AddedTokenJson(1, "[CLS]", true),
                       AddedTokenJson(2, "[SEP]", true)};
  j["normalizer"] = {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                     {"strip_accents", nullptr}, {"lowercase", true}};
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  j["post_processor"] = {{"type", "BertProcessing"}, {"sep", nlohmann::json::array({"[SEP]", 2})}, {"cls", nlohmann::json::array({"[CLS]", 1})}};
  j["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}};
  j["model"] = {{"type", "WordPiece"},
                {"unk_token", "[UNK]"},
                {"continuing_subword_prefix", "##"},
                {"max_input_chars_per_word", 100},
                {"vocab",
                 {{"[UNK]", 0}, {"[CLS]", 1}, {"[SEP]", 2}, {"un", 3}, {"##aff", 4}, {"##able", 5},
                  {"hello", 6}, {"!", 7}, {"##s", 8}, {"a", 9}}}};
  return j;
}

}  // namespace alloy::testing
