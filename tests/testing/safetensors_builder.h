// Test helpers that emit safetensors bytes directly (no dependency on the
// writer), with knobs for the corruptions of checkpoint-formats.md §7.
//
// SafetensorsBuilder lays tensors out in the order they are added, back to
// back from data offset 0, and writes the JSON in that order with
// `__metadata__` first. Every knob replaces one computed piece with raw text
// or bytes, so a test can break exactly one rule at a time.
//
// Thread safety: plain values; not for concurrent mutation.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace alloy::testing {

// Little-endian encodings.
std::string LeU64(uint64_t v);
std::string F32Bytes(std::initializer_list<float> values);
std::string I32Bytes(std::initializer_list<int32_t> values);

// One tensor entry. The optional raw-JSON fields replace the computed value
// verbatim; empty means "compute it".
struct StEntry {
  std::string name;
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  std::string data;  // bytes appended to the data section, in Add() order

  std::string name_json;     // e.g. "\"\\u0077\"" (escaped spelling of "w")
  std::string dtype_json;    // e.g. "5"
  std::string shape_json;    // e.g. "[-1]", "[2.0]"
  std::string offsets_json;  // e.g. "[0,4,8]"
  std::optional<std::pair<uint64_t, uint64_t>> offsets;  // instead of back-to-back
  std::string extra_fields;  // raw members appended inside the entry: ",\"x\":1"
  bool omit_dtype = false;
  bool omit_shape = false;
  bool omit_offsets = false;
};

class SafetensorsBuilder {
 public:
  // Adds a tensor with computed offsets; returns the entry to tweak knobs.
  StEntry& Add(std::string name, std::string dtype, std::vector<int64_t> shape, std::string data);
  StEntry& Add(StEntry entry);

  SafetensorsBuilder& Metadata(std::string key, std::string value);
  // Replaces the whole `__metadata__` value with raw JSON ("null", "{\"k\":1}").
  SafetensorsBuilder& MetadataJson(std::string raw);
  // Raw members appended at the top level after the tensors: ",\"w\":{...}".
  SafetensorsBuilder& ExtraTopLevel(std::string raw);
  // Replaces the entire header JSON (before padding).
  SafetensorsBuilder& HeaderJson(std::string raw);
  // Header padding: whitespace before the JSON, and the fill byte used to pad
  // the JSON to a multiple of `alignment` (default 8 with ' '; 1 = no padding).
  SafetensorsBuilder& LeadingBytes(std::string prefix);
  SafetensorsBuilder& PadTo(uint64_t alignment, char fill = ' ');
  // Overrides the u64 header length N.
  SafetensorsBuilder& HeaderLength(uint64_t n);
  // Bytes appended after the data section, and bytes cut off the end.
  SafetensorsBuilder& AppendBytes(std::string tail);
  SafetensorsBuilder& TruncateBytes(size_t n);

  // The header JSON as it will be written (before padding).
  std::string Json() const;
  // The padded header region (N bytes unless HeaderLength overrides N).
  std::string Header() const;
  // The whole file.
  std::string Build() const;

 private:
  std::vector<StEntry> entries_;
  std::map<std::string, std::string> metadata_;
  std::optional<std::string> metadata_json_;
  std::string extra_top_level_;
  std::optional<std::string> header_json_;
  std::string leading_;
  uint64_t alignment_ = 8;
  char fill_ = ' ';
  std::optional<uint64_t> header_length_;
  std::string tail_;
  size_t truncate_ = 0;
};

// The worked example of checkpoint-formats.md §1.1, written out by hand:
// F32 `w` = [1.0, 2.0], 72 bytes.
std::string WorkedExampleBytes();

// One corrupted file and a stable piece of the error message it must produce
// (the message also starts with the file name, which is not included here).
struct MalformedCase {
  std::string id;
  std::string bytes;
  std::string expected_substring;
};

// Every safetensors case of checkpoint-formats.md §7 (1-28), with variants.
std::vector<MalformedCase> MalformedSafetensorsCases();

}  // namespace alloy::testing
