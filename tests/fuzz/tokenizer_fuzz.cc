// Fuzzes tokenizer.json: ParseTokenizerJson on the input, then, when it is
// accepted, encodes a few fixed texts (ASCII, multilingual, special-token
// spellings, invalid UTF-8) with and without special tokens, decodes the ids
// back and checks that every id is inside the vocabulary.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/tokenizer.h"

namespace {

constexpr std::string_view kTexts[] = {
    "Hello world! It's 2024: 12345 tokens.\n\n  indented\tline",
    "caf\xc3\xa9 \xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 "
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7",
    "<s><|endoftext|>[CLS] unaffable [SEP]</s><unk>",
    "\xff\xfe bad \xc3 utf8 \xe2\x82",
    "",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alloy::formats;
  Result<Tokenizer> parsed =
      ParseTokenizerJson(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!parsed.ok()) return 0;
  const Tokenizer& tok = *parsed;
  for (std::string_view text : kTexts) {
    for (bool special : {false, true}) {
      Result<std::vector<int32_t>> ids = tok.Encode(text, special);
      if (!ids.ok()) continue;
      for (int32_t id : *ids) {
        if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) __builtin_trap();
        if (!tok.TokenOf(id).has_value()) __builtin_trap();  // Encode emits real tokens only
      }
      (void)tok.Pieces(*ids);
      (void)tok.Decode(*ids, false);
      (void)tok.Decode(*ids, true);
    }
  }
  return 0;
}
