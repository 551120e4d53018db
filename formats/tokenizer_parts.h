// Internal to the tokenizer (formats/tokenizer.*): the pipeline stages as
// small interfaces, each built from its tokenizer.json object by a factory
// that validates it. Not a public header.
//
// Every factory takes `where`, the "<file>: <JSON path>" prefix its messages
// start with, e.g. "tokenizer.json: /pre_tokenizer/pretokenizers/1".
//
// Thread safety: built once, then const; the BPE word cache locks a mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "formats/status.h"

namespace alloy::formats::tok {

// A pre-token and whether it begins at offset 0 of the input text (what the
// Metaspace "first" prepend scheme asks).
struct Piece {
  std::string text;
  bool at_start = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(std::string* text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) every piece in place; empty pieces are dropped.
  virtual void Split(std::vector<Piece>* pieces) const = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// A model's vocabulary: id → token (holes are empty strings with present=false).
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<bool> present;
  TokenMap ids;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual std::string_view type() const = 0;
  virtual const Vocab& vocab() const = 0;
  // Appends the ids of one pre-token. Fails when the word cannot be encoded.
  virtual Status Encode(std::string_view word, std::vector<int32_t>* out) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void Decode(std::vector<std::string>* tokens) const = 0;
};

// The single-sequence part of a post-processor.
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(std::vector<int32_t>* ids) const = 0;
};

// Resolves a special token string to an id (model vocabulary or added token).
using TokenLookup = std::function<std::optional<int32_t>(std::string_view)>;

// Factories: null JSON → nullptr (the stage is absent).
Result<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& j, const std::string& where);
Result<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& j,
                                                       const std::string& where);
Result<std::unique_ptr<Model>> MakeModel(const nlohmann::json& j, const std::string& where,
                                         size_t max_vocab);
Result<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& j, const std::string& where);
Result<std::unique_ptr<PostProcessor>> MakePostProcessor(const nlohmann::json& j,
                                                         const std::string& where,
                                                         const TokenLookup& lookup,
                                                         size_t vocab_size);

// JSON field helpers: `where` + "/key" in messages.
Status Fail(const std::string& where, std::string_view what);  // kCorrupt "<where>: <what>"
Result<std::string> GetString(const nlohmann::json& j, std::string_view key, const std::string& where);
Result<bool> GetBool(const nlohmann::json& j, std::string_view key, const std::string& where,
                     bool fallback);
Result<std::string> GetType(const nlohmann::json& j, const std::string& where);

// The GPT-2 byte ↔ printable-character map (bytes_to_unicode).
const std::vector<std::string>& ByteToChar();  // 256 UTF-8 strings
int ByteOfChar(uint32_t cp);                   // -1 when cp is not a mapped char

// "<0x0A>" style byte tokens.
std::string ByteToken(uint8_t b);

// Regex scanners for Split pre-tokenizers: nullptr for an unknown pattern.
// Each returns the [begin, end) byte ranges of the matches, in order.
using RegexScanner = void (*)(std::string_view, std::vector<std::pair<size_t, size_t>>*);
RegexScanner FindRegexScanner(std::string_view pattern);
void ScanGpt2(std::string_view text, std::vector<std::pair<size_t, size_t>>* out);

}  // namespace alloy::formats::tok
