// Unicode text helpers for the tokenizer: UTF-8 decoding and repair, general
// categories, the White_Space property, NFC/NFD/NFKC/NFKD and simple
// lowercasing. The data comes from formats/unicode_tables.* (generated from
// Python's unicodedata by scripts/gen_unicode_tables.py; its Unicode version
// is unicode_tables::kUnicodeVersion).
//
// Invalid UTF-8 is repaired the WHATWG way (each maximal invalid subpart
// becomes one U+FFFD); every other function here REQUIRES valid UTF-8.
//
// Thread safety: pure functions over constant tables.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "formats/unicode_tables.h"

namespace alloy::formats::unicode {

using Category = unicode_tables::Category;

// True when `s` is well-formed UTF-8 (no surrogates, no overlongs, ≤ U+10FFFF).
bool IsValidUtf8(std::string_view s);
// `s` with each maximal invalid subpart replaced by U+FFFD (WHATWG decoder).
std::string RepairUtf8(std::string_view s);

// Decodes the code point at byte `*pos` and advances `*pos` past it.
// REQUIRES: `s` valid UTF-8 and *pos < s.size() at a character boundary.
inline uint32_t NextCodePoint(std::string_view s, size_t* pos) {
  const auto b0 = static_cast<uint8_t>(s[*pos]);
  if (b0 < 0x80) {
    *pos += 1;
    return b0;
  }
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[*pos + k]) & 0x3F); };
  uint32_t cp;
  if (b0 < 0xE0) {
    cp = ((b0 & 0x1Fu) << 6) | at(1);
    *pos += 2;
  } else if (b0 < 0xF0) {
    cp = ((b0 & 0x0Fu) << 12) | (at(1) << 6) | at(2);
    *pos += 3;
  } else {
    cp = ((b0 & 0x07u) << 18) | (at(1) << 12) | (at(2) << 6) | at(3);
    *pos += 4;
  }
  return cp;
}

// Byte length of the UTF-8 sequence that starts with `lead`.
inline size_t Utf8Length(uint8_t lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

void AppendUtf8(std::string* out, uint32_t cp);
std::u32string DecodeUtf8(std::string_view s);
std::string EncodeUtf8(std::u32string_view s);

Category CategoryOf(uint32_t cp);
bool IsLetter(uint32_t cp);       // \p{L}
bool IsNumber(uint32_t cp);       // \p{N}
bool IsMark(uint32_t cp);         // \p{M}
bool IsPunctuation(uint32_t cp);  // \p{P}
bool IsWhitespace(uint32_t cp);   // White_Space (regex \s, Rust char::is_whitespace)
bool IsAlphanumeric(uint32_t cp); // \p{L} or \p{N}
uint8_t CombiningClass(uint32_t cp);

enum class NormalForm : uint8_t { kNfc, kNfd, kNfkc, kNfkd };
std::string Normalize(std::string_view s, NormalForm form);

// Per-character full lowercase (Rust char::to_lowercase, no final-sigma rule).
std::string Lowercase(std::string_view s);

}  // namespace alloy::formats::unicode
