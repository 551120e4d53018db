// The table of corrupted safetensors files (checkpoint-formats.md §7, cases
// 1-28). Each id starts with the case number so failures map back to the list.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/testing/safetensors_builder.h"

namespace alloy::testing {
namespace {

// The base file most cases corrupt: F32 `w` = [1, 2].
SafetensorsBuilder OneTensor() {
  SafetensorsBuilder b;
  b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f}));
  return b;
}

// A file whose header region is exactly `json` (padded with spaces) and whose
// data section is `data`.
std::string WithHeader(const std::string& json, const std::string& data = "") {
  SafetensorsBuilder b;
  b.HeaderJson(json);
  return b.Build() + data;
}

const char kJson[] = "invalid JSON in header";
const char kUtf8[] = "invalid UTF-8 in header";
const char kMeta[] = "metadata values must be strings";
const char kCovered[] = "file not fully covered";
const char kOverflow[] = "overflow computing buffer size";

void AddHeaderLengthCases(std::vector<MalformedCase>* cases) {
  // 1. Too short to hold the length prefix.
  cases->push_back({"01_too_small_empty", "", "header too small"});
  cases->push_back({"01_too_small_1_byte", std::string(1, '\x02'), "header too small"});
  cases->push_back({"01_too_small_7_bytes", LeU64(2).substr(0, 7), "header too small"});
  // 2-3. Lengths above the cap are refused before anything is allocated.
  cases->push_back({"02_too_large_1e8_plus_1", LeU64(100'000'001) + "{}", "header too large"});
  cases->push_back({"02_too_large_high_byte", LeU64(uint64_t{1} << 56) + "{}", "header too large"});
  cases->push_back({"03_too_large_u64_max", LeU64(UINT64_MAX) + "{}", "header too large"});
  // 4. 8 + N beyond the file.
  cases->push_back({"04_length_past_eof", OneTensor().HeaderLength(200).Build(),
                    "invalid header length"});
  cases->push_back({"04_length_at_cap_past_eof", LeU64(100'000'000) + "{}  ",
                    "invalid header length"});
  // 5. An empty header is not JSON.
  cases->push_back({"05_length_zero", LeU64(0), kJson});
  cases->push_back({"05_length_zero_with_data", LeU64(0) + F32Bytes({1.0f}), kJson});
}

void AddEncodingCases(std::vector<MalformedCase>* cases) {
  // 6. Not UTF-8.
  cases->push_back({"06_utf8_fffe", WithHeader("\xFF\xFE{}"), kUtf8});
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f})).name_json = "\"w\xC0\xAF\"";  // overlong '/'
    cases->push_back({"06_utf8_overlong_in_name", b.Build(), kUtf8});
  }
  cases->push_back({"06_utf8_encoded_surrogate",
                    OneTensor().MetadataJson("{\"k\":\"\xED\xA0\x80\"}").Build(), kUtf8});
  cases->push_back({"06_utf8_truncated_sequence",
                    OneTensor().MetadataJson("{\"k\":\"\xE2\x82\"}").Build(), kUtf8});
  // 7. Broken JSON.
  cases->push_back({"07_json_open_brace_only", WithHeader("{"), kJson});
  {
    std::string json = OneTensor().Json();
    cases->push_back({"07_json_truncated",
                      LeU64(json.size() / 2) + json.substr(0, json.size() / 2), kJson});
  }
  cases->push_back({"07_json_trailing_comma",
                    WithHeader("{\"__metadata__\":{\"a\":\"b\",}}"), kJson});
  cases->push_back({"07_json_comment", WithHeader("/* c */ {}"), kJson});
  cases->push_back({"07_json_nan_in_shape",
                    WithHeader("{\"w\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,0]}}"),
                    kJson});
  cases->push_back({"07_json_lone_surrogate_name",
                    WithHeader("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[0],"
                               "\"data_offsets\":[0,0]}}"),
                    kJson});
  cases->push_back({"07_json_byte_order_mark", WithHeader("\xEF\xBB\xBF{}"), kJson});
  cases->push_back({"07_json_single_quotes", WithHeader("{'a':'b'}"), kJson});
  cases->push_back({"07_json_two_values", WithHeader("{}{}"), kJson});
  cases->push_back({"07_json_form_feed_padding", OneTensor().PadTo(64, '\f').Build(), kJson});
  // 8. The top level must be an object.
  cases->push_back({"08_top_level_array", WithHeader("[]"), "invalid JSON in header: expected object"});
  cases->push_back({"08_top_level_string", WithHeader("\"w\""), "invalid JSON in header: expected object"});
  cases->push_back({"08_top_level_null", WithHeader("null"), "invalid JSON in header: expected object"});
  // 27. Only space/tab/CR/LF pad a header; NUL does not.
  cases->push_back({"27_nul_padding", OneTensor().PadTo(64, '\0').Build(), kJson});
  cases->push_back({"27_nul_leading", OneTensor().LeadingBytes(std::string(1, '\0')).Build(), kJson});
  // 28. Nesting deeper than 128 (root + __metadata__ + 127 arrays = 129).
  cases->push_back({"28_depth_129_in_metadata",
                    OneTensor()
                        .MetadataJson("{\"k\":" + std::string(127, '[') + std::string(127, ']') + "}")
                        .Build(),
                    "nesting depth exceeds 128"});
}

void AddEntryCases(std::vector<MalformedCase>* cases) {
  // 9. Unknown (or mis-cased) dtype names.
  cases->push_back({"09_dtype_f128", [] {
                      SafetensorsBuilder b;
                      b.Add("w", "F128", {1}, std::string(16, '\0'));
                      return b.Build();
                    }(), "unknown dtype 'F128' for tensor 'w'"});
  cases->push_back({"09_dtype_lowercase_f32", [] {
                      SafetensorsBuilder b;
                      b.Add("w", "f32", {2}, F32Bytes({1.0f, 2.0f}));
                      return b.Build();
                    }(), "unknown dtype 'f32' for tensor 'w'"});
  {
    SafetensorsBuilder b = OneTensor();
    b.Add("x", "F32", {1}, F32Bytes({3.0f})).dtype_json = "32";
    cases->push_back({"09_dtype_number", b.Build(), "unknown dtype for tensor 'x'"});
  }
  // 10. Shapes: negative, float, string, not an array.
  for (const auto& [id, shape] : std::vector<std::pair<std::string, std::string>>{
           {"10_shape_negative", "[-1]"},
           {"10_shape_float", "[2.0]"},
           {"10_shape_string", "[\"2\"]"},
           {"10_shape_not_array", "2"},
           {"10_shape_null", "null"},
           {"10_shape_too_big_for_u64", "[18446744073709551616]"}}) {
    SafetensorsBuilder b;
    b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f})).shape_json = shape;
    cases->push_back({id, b.Build(), "invalid shape for tensor 'w'"});
  }
  // 11. data_offsets: wrong length, negative, float, not an array.
  for (const auto& [id, offsets] : std::vector<std::pair<std::string, std::string>>{
           {"11_offsets_one_element", "[0]"},
           {"11_offsets_three_elements", "[0,4,8]"},
           {"11_offsets_negative", "[-8,0]"},
           {"11_offsets_float", "[0,8.0]"},
           {"11_offsets_empty", "[]"},
           {"11_offsets_object", "{\"begin\":0,\"end\":8}"}}) {
    SafetensorsBuilder b;
    b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f})).offsets_json = offsets;
    cases->push_back({id, b.Build(), "invalid data_offsets for tensor 'w'"});
  }
  // 12. Missing fields.
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    SafetensorsBuilder b;
    StEntry& e = b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f}));
    e.omit_dtype = std::string(field) == "dtype";
    e.omit_shape = std::string(field) == "shape";
    e.omit_offsets = std::string(field) == "data_offsets";
    cases->push_back({std::string("12_missing_") + field, b.Build(),
                      std::string("missing field '") + field + "' for tensor 'w'"});
  }
  cases->push_back({"12_entry_not_object", WithHeader("{\"w\":5}"),
                    "entry for tensor 'w' must be an object"});
  // 13. __metadata__ must be a string -> string map (null is fine).
  for (const auto& [id, meta] : std::vector<std::pair<std::string, std::string>>{
           {"13_metadata_value_number", "{\"format\":\"pt\",\"n\":1}"},
           {"13_metadata_value_object", "{\"k\":{}}"},
           {"13_metadata_value_array", "{\"k\":[\"a\"]}"},
           {"13_metadata_value_null", "{\"k\":null}"},
           {"13_metadata_not_object", "\"pt\""}}) {
    cases->push_back({id, OneTensor().MetadataJson(meta).Build(), kMeta});
  }
}

void AddDuplicateCases(std::vector<MalformedCase>* cases) {
  // 14. Two identical entries (the reference accepts this).
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {0}, "");
    b.Add("w", "F32", {0}, "");
    cases->push_back({"14_duplicate_tensor_identical", b.Build(), "duplicate key \"w\""});
  }
  // 15. The same name once plainly and once with \u escapes.
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {1}, F32Bytes({1.0f}));
    b.Add("w", "F32", {1}, F32Bytes({2.0f})).name_json = "\"\\u0077\"";
    cases->push_back({"15_duplicate_tensor_escaped", b.Build(), "duplicate key \"w\""});
  }
  {
    SafetensorsBuilder b;
    b.Add("a.b", "F32", {1}, F32Bytes({1.0f}));
    b.Add("", "F32", {1}, F32Bytes({2.0f})).name_json = "\"a\\u002eb\"";
    cases->push_back({"15_duplicate_tensor_escaped_dot", b.Build(), "duplicate key \"a.b\""});
  }
  // 16. Duplicated __metadata__, and duplicates inside objects.
  cases->push_back({"16_duplicate_metadata",
                    OneTensor().Metadata("format", "pt").ExtraTopLevel(",\"__metadata__\":{}").Build(),
                    "duplicate key \"__metadata__\""});
  cases->push_back({"16_duplicate_metadata_inner_key",
                    OneTensor().MetadataJson("{\"format\":\"pt\",\"format\":\"tf\"}").Build(),
                    "duplicate key \"format\""});
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f})).extra_fields = ",\"dtype\":\"F32\"";
    cases->push_back({"16_duplicate_field_in_entry", b.Build(), "duplicate key \"dtype\""});
  }
}

void AddOffsetCases(std::vector<MalformedCase>* cases) {
  // 17. The first tensor does not start at 0.
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {1}, F32Bytes({1.0f, 2.0f})).offsets = {{4, 8}};
    cases->push_back({"17_first_begin_4", b.Build(), "invalid offset for tensor 'w'"});
  }
  // 18. A gap between two tensors.
  {
    SafetensorsBuilder b;
    b.Add("a", "F32", {1}, F32Bytes({1.0f}));
    b.Add("b", "F32", {1}, F32Bytes({2.0f, 3.0f})).offsets = {{8, 12}};
    cases->push_back({"18_gap_between_tensors", b.Build(), "invalid offset for tensor 'b'"});
  }
  // 19. Aliasing: ten tensors all claiming [0,16] (the reference's JSON attack).
  {
    SafetensorsBuilder b;
    for (int i = 0; i < 10; ++i) {
      std::string data = i == 0 ? std::string(16, 'x') : std::string();
      b.Add(std::string("t") + std::to_string(i), "U8", {16}, data).offsets = {{0, 16}};
    }
    cases->push_back({"19_overlap_all_alias", b.Build(), "invalid offset for tensor 't1'"});
  }
  {
    SafetensorsBuilder b;
    b.Add("a", "F32", {2}, F32Bytes({1.0f, 2.0f}));
    b.Add("b", "F32", {2}, F32Bytes({3.0f})).offsets = {{4, 12}};
    cases->push_back({"19_overlap_partial", b.Build(), "invalid offset for tensor 'b'"});
  }
  // 20. END < BEGIN.
  {
    SafetensorsBuilder b;
    b.Add("a", "F32", {1}, F32Bytes({1.0f}));
    b.Add("b", "F32", {1}, F32Bytes({2.0f})).offsets = {{4, 0}};
    cases->push_back({"20_end_before_begin", b.Build(), "invalid offset for tensor 'b'"});
  }
  // 21. Byte length disagrees with shape x dtype.
  {
    SafetensorsBuilder b;
    b.Add("w", "I32", {2, 2}, I32Bytes({7}));
    cases->push_back({"21_size_mismatch_i32_2x2", b.Build(),
                      "invalid shape, data type, or offset for tensor 'w'"});
  }
  {
    SafetensorsBuilder b;
    b.Add("w", "F16", {2}, F32Bytes({1.0f, 2.0f}));
    cases->push_back({"21_size_mismatch_dtype", b.Build(),
                      "invalid shape, data type, or offset for tensor 'w'"});
  }
  // 22-23. Overflow in numel and in numel x bits.
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f})).shape_json = "[2,18446744073709551614]";
    cases->push_back({"22_overflow_dim_u64", b.Build(), kOverflow});
  }
  {
    SafetensorsBuilder b;
    b.Add("w", "I32", {2, INT64_MAX}, I32Bytes({1, 2}));
    cases->push_back({"23_overflow_numel_times_bits", b.Build(), kOverflow});
  }
  {
    SafetensorsBuilder b;
    b.Add("w", "F64", {int64_t{1} << 61}, F32Bytes({1.0f, 2.0f}));
    cases->push_back({"23_overflow_bits_only", b.Build(), kOverflow});
  }
  // 24. Sub-byte tensors that do not end on a byte boundary.
  {
    SafetensorsBuilder b;
    b.Add("w", "F4", {3}, std::string(2, '\0')).offsets = {{0, 2}};
    cases->push_back({"24_f4_odd_count", b.Build(), "misaligned sub-byte tensor 'w'"});
  }
  {
    SafetensorsBuilder b;
    b.Add("w", "F6_E2M3", {3}, std::string(3, '\0'));
    cases->push_back({"24_f6_misaligned", b.Build(), "misaligned sub-byte tensor 'w'"});
  }
  // 25-26. The data region must end exactly at EOF.
  cases->push_back({"25_trailing_bytes", OneTensor().AppendBytes("extra_bogus_data").Build(),
                    kCovered});
  cases->push_back({"25_trailing_one_byte", OneTensor().AppendBytes("x").Build(), kCovered});
  cases->push_back({"26_data_two_bytes_short", OneTensor().TruncateBytes(2).Build(), kCovered});
  cases->push_back({"26_data_missing", OneTensor().TruncateBytes(8).Build(), kCovered});
  cases->push_back({"26_empty_header_with_data", WithHeader("{}", "xx"), kCovered});
}

}  // namespace

std::vector<MalformedCase> MalformedSafetensorsCases() {
  std::vector<MalformedCase> cases;
  AddHeaderLengthCases(&cases);
  AddEncodingCases(&cases);
  AddEntryCases(&cases);
  AddDuplicateCases(&cases);
  AddOffsetCases(&cases);
  return cases;
}

}  // namespace alloy::testing
