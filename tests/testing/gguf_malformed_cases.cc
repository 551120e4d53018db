// The table of corrupted GGUF files (checkpoint-formats.md §7, cases 49-65).
// Each id starts with the case number so failures map back to the list; byte
// offsets are computed from the builder, so they follow its layout.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/gguf_builder.h"

namespace alloy::testing {
namespace {

using formats::ErrorCode;

constexpr uint32_t kF32 = 0, kQ4_0 = 2, kQ6_K = 14;
constexpr uint64_t kTwo63 = uint64_t{1} << 63, kTwo62 = uint64_t{1} << 62;

// The spec's minimal example: `general.architecture` = "llama", F32 `t` = [1, 2].
GgufBuilder Base() {
  GgufBuilder b;
  b.KvString("general.architecture", "llama");
  b.Tensor("t", {2}, kF32, GgF32s({1.0f, 2.0f}));
  return b;
}

// One KV `key` (built by `add`) followed by the F32 tensor `t`.
template <typename AddKv>
GgufBuilder OneKv(AddKv add) {
  GgufBuilder b;
  add(b);
  b.Tensor("t", {2}, kF32, GgF32s({1.0f, 2.0f}));
  return b;
}

// Where the type id of the first KV sits (its key is `key`).
uint64_t FirstKvTypeAt(const std::string& key) { return 24 + 8 + key.size(); }

// Where the tensor infos of `b` start (after the KVs).
uint64_t InfoAt(const GgufBuilder& b) { return b.Prefix().size(); }

void Add(std::vector<GgufMalformedCase>* cases, std::string id, std::string bytes,
         std::string expected, std::optional<uint64_t> byte,
         ErrorCode code = ErrorCode::kCorrupt) {
  cases->push_back({std::move(id), std::move(bytes), std::move(expected), byte, code});
}

void AddPreambleCases(std::vector<GgufMalformedCase>* c) {
  // 49. Magic.
  Add(c, "49_magic_GGUG", Base().Magic("GGUG").Build(), "bad magic 'GGUG'", 0);
  Add(c, "49_magic_lowercase", Base().Magic("gguf").Build(), "bad magic 'gguf'", 0);
  Add(c, "49_magic_nul_bytes", Base().Magic(std::string(4, '\0')).Build(),
      "bad magic '\\x00\\x00\\x00\\x00'", 0);
  Add(c, "49_file_of_3_bytes", "GGU", "file ends inside the magic", 0);
  Add(c, "49_empty_file", "", "file ends inside the magic", 0);
  // 50. Version.
  Add(c, "50_version_0", Base().Version(0).Build(), "unsupported GGUF version 0", 4);
  Add(c, "50_version_1", Base().Version(1).Build(), "unsupported GGUF version 1", 4);
  Add(c, "50_version_4", Base().Version(4).Build(), "unsupported GGUF version 4", 4);
  Add(c, "50_version_byte_swapped", Base().Version(0x03000000).Build(), "big-endian GGUF file", 4,
      ErrorCode::kUnsupported);
  Add(c, "50_version_2_byte_swapped", Base().Version(0x02000000).Build(), "big-endian GGUF file",
      4, ErrorCode::kUnsupported);
  Add(c, "50_file_ends_in_version", "GGUF\x03", "file ends inside the version", 4);
  // 51. Counts.
  Add(c, "51_tensor_count_negative", Base().TensorCount(-1).Build(),
      "tensor count -1 is impossible", 8);
  Add(c, "51_tensor_count_int64_min", Base().TensorCount(INT64_MIN).Build(),
      "tensor count -9223372036854775808 is impossible", 8);
  // 160 - 24 = 136 bytes left: at most 5 tensor infos of 25 bytes fit.
  Add(c, "51_tensor_count_6_in_136_bytes", Base().TensorCount(6).Build(),
      "tensor count 6 is impossible for the 136 bytes left in the file", 8);
  Add(c, "51_tensor_count_int64_max", Base().TensorCount(INT64_MAX).Build(),
      "tensor count 9223372036854775807 is impossible", 8);
  Add(c, "51_kv_count_negative", Base().KvCount(-1).Build(), "metadata count -1 is impossible", 16);
  // At most 9 KVs of 14 bytes fit in 136 bytes.
  Add(c, "51_kv_count_10_in_136_bytes", Base().KvCount(10).Build(),
      "metadata count 10 is impossible for the 136 bytes left in the file", 16);
  Add(c, "51_kv_count_2_pow_40", Base().KvCount(int64_t{1} << 40).Build(),
      "metadata count 1099511627776 is impossible", 16);
  Add(c, "51_file_ends_in_counts", Base().TruncateAt(20).Build(),
      "file ends inside the metadata count", 16);
}

void AddMetadataCases(std::vector<GgufMalformedCase>* c) {
  // 52. Strings longer than the file or the 1 GiB cap.
  {
    GgufBuilder b = Base();
    b.Kv("general.name", kGgString, GgString("x")).key_length = kTwo63;
    Add(c, "52_key_length_2_pow_63", b.Build(), "metadata key length 9223372036854775808 exceeds",
        24 + 45);
  }
  {
    GgufBuilder b;
    b.Kv("k", kGgU8, "\x01").key_length = 1000;
    b.Tensor("t", {2}, kF32, GgF32s({1.0f, 2.0f}));
    Add(c, "52_key_length_past_eof", b.Build(), "metadata key length 1000 exceeds the", 24);
  }
  Add(c, "52_string_length_2_pow_63",
      OneKv([](GgufBuilder& b) { b.Kv("k", kGgString, GgLe<uint64_t>(kTwo63) + "llama"); }).Build(),
      "metadata string length 9223372036854775808 exceeds", FirstKvTypeAt("k") + 4);
  Add(c, "52_string_length_past_eof",
      OneKv([](GgufBuilder& b) { b.Kv("k", kGgString, GgLe<uint64_t>(200) + "llama"); }).Build(),
      "metadata string length 200 exceeds the", FirstKvTypeAt("k") + 4);
  Add(c, "52_string_length_over_1_GiB_cap",
      OneKv([](GgufBuilder& b) {
        b.Kv("k", kGgString, GgLe<uint64_t>((uint64_t{1} << 30) + 1) + "llama");
      }).Build(),
      "metadata string length 1073741825 exceeds", FirstKvTypeAt("k") + 4);
  Add(c, "52_array_string_length_2_pow_63",
      OneKv([](GgufBuilder& b) {
        b.KvArray("tokenizer.ggml.tokens", kGgString, 1, GgLe<uint64_t>(kTwo63) + "a");
      }).Build(),
      "array string length 9223372036854775808 exceeds",
      FirstKvTypeAt("tokenizer.ggml.tokens") + 16);
  {
    GgufBuilder b = Base();
    b.Tensor("u", {2}, kF32, GgF32s({1.0f, 2.0f})).name_length = kTwo63;
    Add(c, "52_tensor_name_length_2_pow_63", b.Build(),
        "tensor name length 9223372036854775808 exceeds", InfoAt(b) + 33);
  }
  {
    GgufBuilder b;  // no tensors, so the counts fit in the 16 bytes left
    b.KvString("general.architecture", "llama");
    Add(c, "52_key_past_eof_of_truncated_file", b.TruncateAt(40).Build(),
        "metadata key length 20 exceeds the 8 bytes left in the file", 24);
  }
  // 53. Keys.
  Add(c, "53_empty_key", OneKv([](GgufBuilder& b) { b.KvU32("", 1); }).Build(),
      "metadata key 0 is empty", 24);
  Add(c, "53_duplicate_key", Base().KvString("general.architecture", "llama").Build(),
      "duplicate metadata key 'general.architecture'", 24 + 45);
  // 54. Value types.
  Add(c, "54_value_type_13", OneKv([](GgufBuilder& b) { b.Kv("k", 13, "\x01"); }).Build(),
      "metadata 'k': invalid value type 13", FirstKvTypeAt("k"));
  Add(c, "54_value_type_u32_max",
      OneKv([](GgufBuilder& b) { b.Kv("k", 0xFFFFFFFFu, "\x01"); }).Build(),
      "metadata 'k': invalid value type 4294967295", FirstKvTypeAt("k"));
  Add(c, "54_nested_array",
      OneKv([](GgufBuilder& b) {
        b.KvArray("k", kGgArray, 1, GgArray(kGgU8, 1, "\x01"));
      }).Build(),
      "metadata 'k': nested arrays are not allowed", FirstKvTypeAt("k") + 4);
  Add(c, "54_array_element_type_13",
      OneKv([](GgufBuilder& b) { b.KvArray("k", 13, 1, "\x01"); }).Build(),
      "metadata 'k': invalid array element type 13", FirstKvTypeAt("k") + 4);
  // 55. Arrays longer than the file (refused before anything is allocated).
  Add(c, "55_u32_array_count_past_eof",
      OneKv([](GgufBuilder& b) { b.KvArray("k", kGgU32, 1000, GgLe<uint32_t>(7)); }).Build(),
      "metadata 'k': array of 1000 elements exceeds the", FirstKvTypeAt("k") + 8);
  Add(c, "55_u8_array_count_2_pow_62",
      OneKv([](GgufBuilder& b) { b.KvArray("k", kGgU8, kTwo62, "\x01"); }).Build(),
      "metadata 'k': array of 4611686018427387904 elements exceeds", FirstKvTypeAt("k") + 8);
  Add(c, "55_string_array_count_2_pow_62",
      OneKv([](GgufBuilder& b) {
        b.KvArray("tokenizer.ggml.tokens", kGgString, kTwo62, GgString("a"));
      }).Build(),
      "array of 4611686018427387904 elements exceeds", FirstKvTypeAt("tokenizer.ggml.tokens") + 8);
  Add(c, "55_f64_array_count_u64_max",
      OneKv([](GgufBuilder& b) { b.KvArray("k", kGgF64, UINT64_MAX, ""); }).Build(),
      "array of 18446744073709551615 elements exceeds", FirstKvTypeAt("k") + 8);
  Add(c, "55_bool_array_count_over_1_GiB_cap",
      OneKv([](GgufBuilder& b) { b.KvArray("k", kGgBool, (uint64_t{1} << 30) + 1, "\x01"); })
          .Build(),
      "array of 1073741825 elements exceeds", FirstKvTypeAt("k") + 8);
  // 56. general.alignment.
  Add(c, "56_alignment_typed_i32", Base().KvI32("general.alignment", 32).Build(),
      "metadata 'general.alignment' is i32, expected u32", std::nullopt);
  Add(c, "56_alignment_typed_string", Base().KvString("general.alignment", "32").Build(),
      "metadata 'general.alignment' is string, expected u32", std::nullopt);
  for (uint32_t a : {0u, 3u, 48u}) {
    Add(c, "56_alignment_" + std::to_string(a), Base().KvU32("general.alignment", a).Build(),
        "general.alignment " + std::to_string(a) + " is not a power of two", std::nullopt);
  }
  // 64. Bools other than 0 and 1.
  Add(c, "64_bool_value_2", OneKv([](GgufBuilder& b) { b.KvBool("k", 2); }).Build(),
      "metadata 'k': bool value 2 is not 0 or 1", FirstKvTypeAt("k") + 4);
  Add(c, "64_bool_value_255", OneKv([](GgufBuilder& b) { b.KvBool("k", 255); }).Build(),
      "metadata 'k': bool value 255 is not 0 or 1", FirstKvTypeAt("k") + 4);
  Add(c, "64_bool_array_element_2",
      OneKv([](GgufBuilder& b) { b.KvArray("k", kGgBool, 3, std::string("\x01\x00\x02", 3)); })
          .Build(),
      "metadata 'k': bool element is not 0 or 1", FirstKvTypeAt("k") + 16 + 2);
  // 65. Well-known keys with the wrong element type (llama.cpp #26690).
  Add(c, "65_scores_as_u8_array",
      Base().KvArray("tokenizer.ggml.scores", kGgU8, 2, "\x01\x02").Build(),
      "metadata 'tokenizer.ggml.scores' is array of u8, expected array of f32", std::nullopt);
  Add(c, "65_tokens_as_i32_array",
      Base().KvArray("tokenizer.ggml.tokens", kGgI32, 1, GgLe<int32_t>(5)).Build(),
      "metadata 'tokenizer.ggml.tokens' is array of i32, expected array of string", std::nullopt);
  Add(c, "65_token_type_as_f32_array",
      Base().KvArray("tokenizer.ggml.token_type", kGgF32, 1, GgF32s({1.0f})).Build(),
      "metadata 'tokenizer.ggml.token_type' is array of f32, expected array of i32", std::nullopt);
  Add(c, "65_architecture_as_u32",
      OneKv([](GgufBuilder& b) { b.KvU32("general.architecture", 1); }).Build(),
      "metadata 'general.architecture' is u32, expected string", std::nullopt);
  Add(c, "65_merges_not_an_array",
      Base().KvString("tokenizer.ggml.merges", "a b").Build(),
      "metadata 'tokenizer.ggml.merges' is string, expected array of string", std::nullopt);
}

void AddTensorInfoCases(std::vector<GgufMalformedCase>* c) {
  // 57. Names.
  {
    const std::string name(64, 'n');
    GgufBuilder b = Base();
    b.Tensor(name, {2}, kF32, GgF32s({1.0f, 2.0f}));
    Add(c, "57_name_64_bytes", b.Build(),
        "tensor '" + name + "': name is 64 bytes (ggml allows at most 63)", 102);
    GgufBuilder d = Base();
    d.Tensor("t", {2}, kF32, GgF32s({1.0f, 2.0f}));
    Add(c, "57_duplicate_name", d.Build(), "duplicate tensor 't'", 102);
  }
  // 58. Too many dimensions (refused before ne is read).
  for (uint32_t n : {5u, 0xFFFFFFFFu}) {
    GgufBuilder b = Base();
    b.Tensor("u", {2, 1, 1, 1, 1}, kF32, GgF32s({1.0f, 2.0f})).n_dims = n;
    Add(c, "58_n_dims_" + std::to_string(n), b.Build(),
        "tensor 'u': " + std::to_string(n) + " dimensions (ggml allows at most 4)",
        102 + 8 + 1);
  }
  // 59. Shapes.
  {
    GgufBuilder b = Base();
    b.Tensor("u", {2, -1}, kF32, "");
    Add(c, "59_negative_dim", b.Build(), "tensor 'u': negative dimension -1", 102 + 8 + 1 + 4 + 8);
  }
  {
    GgufBuilder b = Base();
    b.Tensor("u", {(int64_t{1} << 42) + 1, int64_t{1} << 22}, kF32, "");
    Add(c, "59_numel_overflows_u64", b.Build(), "overflows int64", 102);
  }
  {
    GgufBuilder b = Base();
    b.Tensor("u", {int64_t{1} << 32, int64_t{1} << 31}, kF32, "");  // exactly 2^63
    Add(c, "59_numel_2_pow_63", b.Build(), "overflows int64", 102);
  }
  {
    // 0 elements, but the torch-order product overflows before the 0.
    GgufBuilder b = Base();
    b.Tensor("u", {0, int64_t{1} << 51, int64_t{1} << 47}, kF32, "");
    Add(c, "59_zero_dim_hides_overflow", b.Build(), "overflows int64", 102);
  }
  {
    GgufBuilder b = Base();
    b.Tensor("u", {INT64_MAX, 2}, kF32, "");
    Add(c, "59_numel_int64_max_times_2", b.Build(), "overflows int64", 102);
  }
  // 60. Removed and unknown type ids.
  const std::vector<std::pair<uint32_t, std::string>> types = {
      {4, "removed type Q4_2"},          {5, "removed type Q4_3"},
      {31, "removed type Q4_0_4_4"},     {36, "removed type IQ4_NL_4_4"},
      {43, "unknown type id 43"},        {0xFFFFFFFFu, "unknown type id 4294967295"}};
  for (const auto& [id, msg] : types) {
    GgufBuilder b = Base();
    b.Tensor("u", {32}, id, std::string(32, '\0'));
    Add(c, "60_type_" + std::to_string(id), b.Build(), "tensor 'u': " + msg, 102 + 8 + 1 + 4 + 8);
  }
  // 61. Rows that are not whole blocks.
  {
    GgufBuilder b = Base();
    b.Tensor("q", {48}, kQ4_0, std::string(27, '\0'));
    Add(c, "61_q4_0_row_48", b.Build(),
        "tensor 'q': row length 48 is not a multiple of Q4_0's block of 32", 102);
    GgufBuilder k = Base();
    k.Tensor("q", {32, 8}, kQ6_K, std::string(210, '\0'));
    Add(c, "61_q6_k_row_32", k.Build(),
        "tensor 'q': row length 32 is not a multiple of Q6_K's block of 256", 102);
  }
}

void AddDataCases(std::vector<GgufMalformedCase>* c) {
  // 62. Offsets must be the running padded sum: no holes, overlaps or misalignment.
  {
    GgufBuilder b = Base();
    b.Tensor("u", {2}, kF32, GgF32s({3.0f, 4.0f})).offset = 64;
    Add(c, "62_hole", b.Build(), "tensor 'u': data offset 64 but the previous tensors end at 32",
        std::nullopt);
  }
  {
    GgufBuilder b = Base();
    b.Tensor("u", {2}, kF32, GgF32s({3.0f, 4.0f})).offset = 0;
    Add(c, "62_overlap", b.Build(), "tensor 'u': data offset 0 but the previous tensors end at 32",
        std::nullopt);
  }
  {
    GgufBuilder b = Base();
    b.Tensor("u", {2}, kF32, GgF32s({3.0f, 4.0f})).offset = 8;  // unpadded
    Add(c, "62_unpadded", b.Build(), "tensor 'u': data offset 8 but the previous tensors end at 32",
        std::nullopt);
  }
  {
    GgufBuilder b;
    b.Tensor("t", {2}, kF32, GgF32s({1.0f, 2.0f})).offset = 4;
    Add(c, "62_first_not_at_0", b.Build(),
        "tensor 't': data offset 4 but the previous tensors end at 0", std::nullopt);
  }
  {
    GgufBuilder b;
    b.Tensor("t", {2}, kF32, GgF32s({1.0f, 2.0f})).offset = UINT64_MAX;
    Add(c, "62_offset_u64_max", b.Build(), "data offset 18446744073709551615", std::nullopt);
  }
  // 63. Data beyond the end of the file.
  Add(c, "63_one_byte_short", Base().TruncateAt(135).Build(),
      "tensor 't': data [128, +8) is not within the file's 135 bytes", std::nullopt);
  Add(c, "63_no_data_section", Base().TruncateAt(128).Build(),
      "tensor 't': data [128, +8) is not within the file's 128 bytes", std::nullopt);
  Add(c, "63_cut_in_header_padding", Base().TruncateAt(110).Build(),
      "tensor 't': data [128, +8) is not within the file's 110 bytes", std::nullopt);
  {
    GgufBuilder b;
    b.Tensor("big", {int64_t{1} << 40}, kF32, "");
    Add(c, "63_huge_tensor", b.Build(), "tensor 'big': data [64, +4398046511104) is not within",
        std::nullopt);
  }
  {
    GgufBuilder b = Base();
    b.Tensor("u", {2}, kF32, GgF32s({3.0f, 4.0f}));
    Add(c, "63_second_tensor_short", b.TruncateBytes(25).Build(),
        "tensor 'u': data [192, +8) is not within the file's 199 bytes", std::nullopt);
  }
}

}  // namespace

std::vector<GgufMalformedCase> MalformedGgufCases() {
  std::vector<GgufMalformedCase> cases;
  AddPreambleCases(&cases);
  AddMetadataCases(&cases);
  AddTensorInfoCases(&cases);
  AddDataCases(&cases);
  return cases;
}

}  // namespace alloy::testing
