// Strict JSON parsing for untrusted headers and index files.
//
// nlohmann-json's DOM parser silently keeps the last of two duplicate keys, so
// this parser drives nlohmann's SAX interface and builds the DOM itself,
// refusing duplicate keys (compared after escape decoding) and nesting deeper
// than kMaxJsonDepth. Everything else is RFC 8259 as nlohmann reads it: no
// comments, no trailing commas, no NaN literals, no lone surrogates.
//
// Thread safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "formats/status.h"

namespace alloy::formats {

inline constexpr int kMaxJsonDepth = 128;

// Parses `text`. On failure returns kCorrupt with a message starting with
// "invalid JSON in <what>: " followed by the reason and the byte position
// (e.g. "duplicate key \"w\" at byte 57").
Result<nlohmann::json> ParseStrictJson(std::string_view text, std::string_view what);

}  // namespace alloy::formats
