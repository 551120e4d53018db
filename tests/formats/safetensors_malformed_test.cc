// Every malformed-file case of checkpoint-formats.md §7 (safetensors part)
// must be refused with kCorrupt and a stable message; random corruptions of
// valid files must never crash the reader.
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "formats/safetensors_reader.h"
#include "tests/testing/safetensors_builder.h"
#include "tests/testing/temp_dir.h"

namespace alloy::formats {
namespace {

using testing::MalformedCase;
using testing::MalformedSafetensorsCases;
using testing::SafetensorsBuilder;

TEST_CASE("the malformed table covers §7 cases 1-28", "[formats][safetensors]") {
  std::vector<MalformedCase> cases = MalformedSafetensorsCases();
  CHECK(cases.size() >= 40);
  std::set<std::string> ids;
  std::set<int> numbers;
  for (const MalformedCase& c : cases) {
    CHECK(ids.insert(c.id).second);
    CHECK_FALSE(c.expected_substring.empty());
    numbers.insert(std::stoi(c.id.substr(0, 2)));
  }
  for (int n = 1; n <= 28; ++n) {
    INFO("case " << n);
    CHECK(numbers.count(n) == 1);
  }
}

TEST_CASE("malformed safetensors files are refused (memory source)", "[formats][safetensors]") {
  for (const MalformedCase& c : MalformedSafetensorsCases()) {
    DYNAMIC_SECTION(c.id) {
      auto src = OpenSafetensors(MakeMemorySource(c.bytes, "bad.safetensors"));
      REQUIRE_FALSE(src.ok());
      const Status& s = src.status();
      INFO(s.ToString());
      CHECK(s.code() == ErrorCode::kCorrupt);
      CHECK(s.message().rfind("bad.safetensors: ", 0) == 0);
      CHECK(s.message().find(c.expected_substring) != std::string::npos);
      // The header-only entry point agrees.
      auto header = ReadSafetensorsHeader(*MakeMemorySource(c.bytes, "bad.safetensors"));
      CHECK(header.status().message() == s.message());
    }
  }
}

TEST_CASE("malformed safetensors files are refused (file sources)", "[formats][safetensors]") {
  testing::TempDir dir;
  const std::string path = dir.Join("bad.safetensors");
  for (const MalformedCase& c : MalformedSafetensorsCases()) {
    testing::WriteFileBytes(path, c.bytes);
    for (FileAccess access : {FileAccess::kMmap, FileAccess::kPread}) {
      INFO(c.id << (access == FileAccess::kMmap ? " mmap" : " pread"));
      auto src = OpenSafetensorsFile(path, access);
      REQUIRE_FALSE(src.ok());
      CHECK(src.status().code() == ErrorCode::kCorrupt);
      CHECK(src.status().message().rfind(path + ": ", 0) == 0);
      CHECK(src.status().message().find(c.expected_substring) != std::string::npos);
    }
  }
}

TEST_CASE("messages name tensors and byte offsets", "[formats][safetensors]") {
  auto message = [](const std::string& bytes) {
    auto r = ReadSafetensorsHeader(*MakeMemorySource(bytes, "m.safetensors"));
    REQUIRE_FALSE(r.ok());
    return r.status().message();
  };
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {1}, testing::F32Bytes({1.0f, 2.0f})).offsets = {{4, 8}};
    CHECK(message(b.Build()) ==
          "m.safetensors: invalid offset for tensor 'w': data_offsets [4, 8) begins at data "
          "byte 4, expected 0 (leaves a gap; file byte " +
              std::to_string(b.Header().size() + 8) + ")");
  }
  {
    SafetensorsBuilder b;
    b.Add("w", "I32", {2, 2}, testing::I32Bytes({7}));
    std::string msg = message(b.Build());
    CHECK(msg.find("I32 [2, 2] needs 16 bytes, data_offsets [0, 4) hold 4") != std::string::npos);
    CHECK(msg.find("file byte " + std::to_string(b.Header().size() + 8)) != std::string::npos);
  }
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", {2}, testing::F32Bytes({1.0f, 2.0f}));
    b.AppendBytes("xyz");
    CHECK(message(b.Build()) ==
          "m.safetensors: incomplete metadata, file not fully covered: tensors end at file byte "
          "72, leaving 3 trailing bytes (file size 75)");
    b.AppendBytes("").TruncateBytes(2);
    CHECK(message(b.Build()).find("the data section is 2 bytes short") != std::string::npos);
  }
  CHECK(message(testing::LeU64(100'000'001) + "{}") ==
        "m.safetensors: header too large: header length 100000001 exceeds the limit of "
        "100000000 bytes");
  // A control character in a tensor name is escaped in the message.
  SafetensorsBuilder b;
  b.Add("a\nb", "F99", {1}, "x");
  CHECK(message(b.Build()).find("unknown dtype 'F99' for tensor 'a\\x0ab'") != std::string::npos);
}

// Parses `bytes` through a memory source; returns normally whatever happens.
void ParseNoCrash(const std::string& bytes) {
  auto src = OpenSafetensors(MakeMemorySource(bytes, "fuzz"));
  if (!src.ok()) {
    CHECK_FALSE(src.status().message().empty());
    return;
  }
  for (const TensorInfo& info : (*src)->tensors()) {
    auto view = (*src)->View(info);
    CHECK(view.ok());
  }
}

TEST_CASE("truncations and byte mutations never crash the reader", "[formats][safetensors]") {
  SafetensorsBuilder b;
  b.Metadata("format", "pt");
  b.Add("a", "F32", {2}, testing::F32Bytes({1.0f, 2.0f}));
  b.Add("b", "F4", {4}, "\x12\x34");
  b.Add("c", "U8", {0}, "");
  std::vector<std::string> seeds = {b.Build(), testing::WorkedExampleBytes()};
  for (const MalformedCase& c : MalformedSafetensorsCases()) seeds.push_back(c.bytes);

  for (const std::string& seed : seeds) {
    for (size_t len = 0; len <= seed.size() && len < 200; ++len) ParseNoCrash(seed.substr(0, len));
  }
  std::mt19937 rng(1234);
  const char interesting[] = {'\0', '"', '\\', '{', '}', '[', ']', ',', ':', '-', '9', '\xff',
                              ' ', 'e', '.'};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = seeds[static_cast<size_t>(iter) % seeds.size()];
    if (bytes.empty()) continue;
    int n_mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < n_mutations; ++m) {
      size_t pos = rng() % bytes.size();
      bytes[pos] = rng() % 2 ? static_cast<char>(rng() & 0xFF)
                             : interesting[rng() % sizeof(interesting)];
    }
    ParseNoCrash(bytes);
  }
}

}  // namespace
}  // namespace alloy::formats
