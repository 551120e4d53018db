// A Hugging Face tokenizer read from a model directory: `tokenizer.json`
// (model BPE / Unigram / WordPiece / WordLevel with its normalizer, pre-tokenizer,
// post-processor, decoder and added tokens), plus `tokenizer_config.json`
// (chat template, bos/eos/pad/unk, added_tokens_decoder, add_bos/eos_token)
// and `special_tokens_map.json` when present. A directory with only the
// legacy SentencePiece `tokenizer.model` is refused. See docs/tokenize.md.
//
// Encoding follows the `tokenizers` library: added tokens are split off first
// (non-normalized ones on the raw text, normalized ones after normalization),
// every other segment is normalized, pre-tokenized and fed word by word to the
// model; `add_special_tokens` applies the post-processor's single-sequence
// template. Regex pre-tokenizers are limited to the GPT-2, Llama-3 and Qwen2
// patterns (hand-written scanners keyed by the exact pattern string); any
// other regex is refused at load time. Input text that is not valid UTF-8 is
// repaired first: each maximal invalid subpart becomes U+FFFD (WHATWG).
//
// Thread safety: a loaded Tokenizer is immutable except for an internal
// word cache guarded by a mutex; all const methods may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/path_guard.h"
#include "formats/status.h"

namespace alloy::formats {

inline constexpr uint64_t kMaxTokenizerFileBytes = uint64_t{256} << 20;
inline constexpr size_t kMaxTokenizerVocab = size_t{1} << 22;     // 4,194,304 tokens
inline constexpr size_t kMaxTokenizerMerges = size_t{1} << 23;
inline constexpr size_t kMaxTokenBytes = 4096;                    // one token's content

// An entry of tokenizer.json's `added_tokens` (or tokenizer_config.json's
// `added_tokens_decoder`), with the `tokenizers` AddedToken flags.
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;  // only matched when not inside a word
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = false;   // matched on normalized text (else on the raw text)
  bool special = false;      // skipped by Decode(skip_special_tokens)
};

// What tokenizer_config.json and special_tokens_map.json say (all optional).
struct TokenizerConfig {
  std::optional<std::string> chat_template;  // the string, or the list's "default" entry
  std::vector<std::pair<std::string, std::string>> named_chat_templates;  // list form
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  std::vector<AddedToken> added_tokens_decoder;  // by id, ascending
  std::vector<std::string> additional_special_tokens;
  std::vector<std::string> files;  // which of the two files were read
};

struct TokenizerLoadOptions {
  SymlinkPolicy symlinks = SymlinkPolicy::kStayInside;
  uint64_t max_file_bytes = kMaxTokenizerFileBytes;
  size_t max_vocab = kMaxTokenizerVocab;
};

class Tokenizer {
 public:
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Token ids of `text`. With `add_special_tokens`, the post-processor's
  // template (e.g. <s> … or [CLS] … [SEP]) is applied. Fails only when the
  // model cannot represent a piece (a Unigram or WordPiece model without an
  // unknown token meets an unknown character): kInvalidArgument.
  Result<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;

  // The stored token string of each id ("Ġworld", "▁the", "<0x0A>"); ids
  // without a token give "" (Encode never produces them).
  std::vector<std::string> Pieces(const std::vector<int32_t>& ids) const;

  // Text of `ids` through the decoder (tokens joined by " " when there is no
  // decoder). Unknown ids are skipped; so are special added tokens when
  // `skip_special_tokens`. Invalid UTF-8 produced by byte tokens is
  // replaced by U+FFFD, as `tokenizers` does.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  // Vocabulary: ids run 0 .. vocab_size()-1 (model vocabulary and added
  // tokens together; holes possible).
  size_t vocab_size() const;
  size_t model_vocab_size() const;  // the model's own vocabulary, without added tokens
  // The token of `id`, or nullopt. Views are valid while the tokenizer lives.
  std::optional<std::string_view> TokenOf(int32_t id) const;
  std::optional<int32_t> IdOf(std::string_view token) const;
  const std::vector<AddedToken>& added_tokens() const;  // in tokenizer.json order
  bool IsSpecial(int32_t id) const;
  bool IsAdded(int32_t id) const;

  std::string_view model_type() const;  // "BPE", "Unigram", "WordPiece" or "WordLevel"
  const TokenizerConfig& config() const;
  // Where it came from: the tokenizer.json path, or the name given to ParseTokenizerJson.
  const std::string& source() const;

  struct Rep;

 private:
  friend Result<Tokenizer> ParseTokenizerJson(std::string_view json_text, std::string_view what);
  friend Result<Tokenizer> LoadTokenizer(const std::string& model_dir,
                                         const TokenizerLoadOptions& options);
  std::unique_ptr<Rep> rep_;
};

// Loads `model_dir`'s tokenizer files (see the top of this file). Errors:
// kNotFound without tokenizer.json (kUnsupported when only tokenizer.model is
// there), kCorrupt for malformed JSON or inconsistent vocabularies (message:
// file, JSON path, what), kUnsupported for an unknown model or component type
// or regex, kInvalidArgument for a file over a cap or a symlink leading outside
// the directory.
Result<Tokenizer> LoadTokenizer(const std::string& model_dir,
                                const TokenizerLoadOptions& options = TokenizerLoadOptions());

// Parses tokenizer.json text; `what` names it in messages.
Result<Tokenizer> ParseTokenizerJson(std::string_view json_text, std::string_view what);

// Parses tokenizer_config.json (`config_text`) and special_tokens_map.json
// (`map_text`) into `config`; either text may be empty (file absent).
Status ParseTokenizerConfig(std::string_view config_text, std::string_view config_what,
                            std::string_view map_text, std::string_view map_what,
                            TokenizerConfig* config);

}  // namespace alloy::formats
