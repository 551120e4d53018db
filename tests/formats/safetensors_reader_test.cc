#include "formats/safetensors_reader.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/safetensors_builder.h"
#include "tests/testing/temp_dir.h"

namespace alloy::formats {
namespace {

using testing::F32Bytes;
using testing::SafetensorsBuilder;
using testing::TempDir;

std::string AsString(std::span<const uint8_t> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

// Opens `bytes` through the given ByteSource kind ("mmap", "pread", "memory").
std::unique_ptr<TensorSource> Open(const std::string& bytes, const std::string& kind,
                                   const TempDir& dir) {
  Result<std::unique_ptr<TensorSource>> src = Status::Corrupt("unset");
  if (kind == "memory") {
    src = OpenSafetensors(MakeMemorySource(bytes, "mem.safetensors"));
  } else {
    std::string path = dir.Join("model.safetensors");
    testing::WriteFileBytes(path, bytes);
    src = OpenSafetensorsFile(path, kind == "mmap" ? FileAccess::kMmap : FileAccess::kPread);
  }
  INFO(src.status().ToString());
  REQUIRE(src.ok());
  return std::move(src).value();
}

Result<SafetensorsHeader> Header(const std::string& bytes) {
  return ReadSafetensorsHeader(*MakeMemorySource(bytes, "t.safetensors"));
}

// Asserts that every tensor's View and Read return `expected[name]`.
void CheckData(TensorSource& src, const std::map<std::string, std::string>& expected) {
  REQUIRE(src.tensors().size() == expected.size());
  for (const TensorInfo& info : src.tensors()) {
    INFO(info.name);
    auto it = expected.find(info.name);
    REQUIRE(it != expected.end());
    CHECK(info.nbytes == it->second.size());
    auto view = src.View(info);
    REQUIRE(view.ok());
    CHECK(AsString(*view) == it->second);
    std::string copy(info.nbytes, '\0');
    REQUIRE(src.Read(info, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(copy.data()),
                                                 copy.size())).ok());
    CHECK(copy == it->second);
    CHECK(src.Find(info.name) == &info);
  }
}

TEST_CASE("the worked example of §1.1 byte for byte", "[formats][safetensors]") {
  SafetensorsBuilder b;
  b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f}));
  const std::string bytes = b.Build();
  REQUIRE(bytes == testing::WorkedExampleBytes());
  REQUIRE(bytes.size() == 72);
  CHECK(bytes.substr(0, 8) == std::string("\x38\0\0\0\0\0\0\0", 8));
  CHECK(bytes.substr(62, 2) == "  ");

  auto header = Header(bytes);
  REQUIRE(header.ok());
  CHECK(header->data_start == 64);
  REQUIRE(header->tensors.size() == 1);
  const TensorInfo& w = header->tensors[0];
  CHECK(w.name == "w");
  CHECK(w.dtype == DType::kF32);
  CHECK(w.shape == std::vector<int64_t>{2});
  CHECK(w.nbytes == 8);
  CHECK(w.file_offset == 64);
  CHECK(w.file_index == 0);
  CHECK(header->metadata.empty());
}

TEST_CASE("valid safetensors files through every ByteSource", "[formats][safetensors]") {
  const std::string kind = GENERATE("mmap", "pread", "memory");
  INFO(kind);
  TempDir dir;

  SECTION("empty header {} with zero tensors") {
    for (const std::string& bytes : {testing::LeU64(2) + "{}",
                                     SafetensorsBuilder().HeaderJson("{}").Build()}) {
      auto src = Open(bytes, kind, dir);
      CHECK(src->tensors().empty());
      CHECK(src->metadata().empty());
      CHECK(src->Find("w") == nullptr);
      CHECK(src->files().size() == 1);
    }
  }
  SECTION("scalar, zero-size tensors anywhere, sub-byte types") {
    SafetensorsBuilder b;
    b.Add("empty_first", "F32", {2, 0}, "");
    b.Add("scalar", "F32", {}, F32Bytes({7.0f}));
    b.Add("empty_mid", "BF16", {0}, "");
    b.Add("f4", "F4", {4}, "\x12\x34");
    b.Add("f6", "F6_E2M3", {4}, "abc");
    b.Add("empty_last", "I64", {3, 0, 5}, "");
    auto src = Open(b.Build(), kind, dir);
    CheckData(*src, {{"empty_first", ""}, {"scalar", F32Bytes({7.0f})}, {"empty_mid", ""},
                     {"f4", "\x12\x34"}, {"f6", "abc"}, {"empty_last", ""}});
    const TensorInfo* scalar = src->Find("scalar");
    REQUIRE(scalar != nullptr);
    CHECK(scalar->shape.empty());
    CHECK(scalar->numel() == 1);
    CHECK(src->Find("empty_last")->numel() == 0);
    CHECK(src->Find("empty_last")->shape == std::vector<int64_t>{3, 0, 5});
  }
  SECTION("unaligned data and an unpadded header") {
    SafetensorsBuilder b;
    b.PadTo(1);
    b.Add("bytes", "U8", {3}, "xyz");
    b.Add("w", "F32", {2}, F32Bytes({1.5f, -2.0f}));
    b.Add("d", "F64", {1}, std::string("\0\0\0\0\0\0\xf0\x3f", 8));
    const std::string bytes = b.Build();
    auto src = Open(bytes, kind, dir);
    CheckData(*src, {{"bytes", "xyz"}, {"w", F32Bytes({1.5f, -2.0f})},
                     {"d", std::string("\0\0\0\0\0\0\xf0\x3f", 8)}});
    CHECK(src->Find("w")->file_offset % 4 != 0);
    auto view = src->View(*src->Find("w"));
    REQUIRE(view.ok());
    float values[2];
    std::memcpy(values, view->data(), sizeof(values));  // copy when misaligned
    CHECK(values[0] == 1.5f);
    CHECK(values[1] == -2.0f);
  }
  SECTION("header padded with leading and trailing JSON whitespace") {
    SafetensorsBuilder b;
    b.LeadingBytes(" \t\r\n  ").PadTo(64, '\n');
    b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f}));
    auto src = Open(b.Build(), kind, dir);
    CheckData(*src, {{"w", F32Bytes({1.0f, 2.0f})}});
    for (char pad : {' ', '\t', '\r', '\n'}) {
      SafetensorsBuilder p;
      p.PadTo(32, pad);
      p.Add("w", "F32", {1}, F32Bytes({3.0f}));
      CHECK(Header(p.Build()).ok());
    }
  }
  SECTION("metadata: null, {}, strings") {
    auto null_meta = Open(SafetensorsBuilder().MetadataJson("null").Build(), kind, dir);
    CHECK(null_meta->metadata().empty());
    auto empty_meta = Open(SafetensorsBuilder().MetadataJson("{}").Build(), kind, dir);
    CHECK(empty_meta->metadata().empty());
    SafetensorsBuilder b;
    b.Metadata("format", "pt").Metadata("note", "caf\xC3\xA9 \"quoted\"").Metadata("", "");
    b.Add("w", "F32", {1}, F32Bytes({1.0f}));
    auto src = Open(b.Build(), kind, dir);
    CHECK(src->metadata() == std::map<std::string, std::string>{
                                 {"format", "pt"}, {"note", "caf\xC3\xA9 \"quoted\""}, {"", ""}});
  }
  SECTION("extra fields in a tensor entry are ignored") {
    SafetensorsBuilder b;
    b.Add("w", "F32", {1}, F32Bytes({1.0f})).extra_fields =
        ",\"quant\":{\"bits\":[4]},\"note\":null,\"data_offsets_old\":[9,9]";
    auto src = Open(b.Build(), kind, dir);
    CheckData(*src, {{"w", F32Bytes({1.0f})}});
  }
  SECTION("tensors come back in data order whatever the JSON order") {
    SafetensorsBuilder b;
    b.Add("z.second", "F32", {1}, F32Bytes({2.0f})).offsets = {{4, 8}};
    b.Add("a.first", "F32", {1}, F32Bytes({1.0f})).offsets = {{0, 4}};
    // The builder appends data in Add() order: swap it back into offset order.
    std::string bytes = b.Build();
    std::string data = bytes.substr(bytes.size() - 8);
    bytes.replace(bytes.size() - 8, 8, data.substr(4) + data.substr(0, 4));
    auto src = Open(bytes, kind, dir);
    REQUIRE(src->tensors().size() == 2);
    CHECK(src->tensors()[0].name == "a.first");
    CHECK(src->tensors()[1].name == "z.second");
    CheckData(*src, {{"a.first", F32Bytes({1.0f})}, {"z.second", F32Bytes({2.0f})}});
  }
  SECTION("escaped and non-ASCII names are decoded") {
    SafetensorsBuilder b;
    b.Add("", "F32", {1}, F32Bytes({1.0f})).name_json = "\"caf\\u00e9.\\\"q\\\"\"";
    b.Add("\xE6\xBC\xA2\xE5\xAD\x97", "U8", {1}, "k");
    auto src = Open(b.Build(), kind, dir);
    CHECK(src->Find("caf\xC3\xA9.\"q\"") != nullptr);
    CHECK(src->Find("\xE6\xBC\xA2\xE5\xAD\x97") != nullptr);
  }
  SECTION("Read, Release and Find details") {
    SafetensorsBuilder b;
    b.Add("a", "U8", {10}, "0123456789");
    b.Add("b", "U8", {5}, "abcde");
    auto src = Open(b.Build(), kind, dir);
    const TensorInfo& a = *src->Find("a");
    std::string name_buf = "abc";
    CHECK(src->Find(std::string_view(name_buf).substr(1, 1)) == src->Find("b"));
    CHECK(src->Find("c") == nullptr);
    CHECK(src->Find("") == nullptr);

    uint8_t buf[4];
    REQUIRE(src->Read(a, 3, buf).ok());
    CHECK(std::string(buf, buf + 4) == "3456");
    REQUIRE(src->Read(a, 6, buf).ok());
    CHECK(std::string(buf, buf + 4) == "6789");
    Status past = src->Read(a, 7, buf);
    CHECK(past.code() == ErrorCode::kInvalidArgument);
    CHECK(past.message().find("tensor 'a'") != std::string::npos);
    CHECK(src->Read(a, UINT64_MAX, buf).code() == ErrorCode::kInvalidArgument);
    CHECK(src->Read(a, 10, std::span<uint8_t>()).ok());

    src->Release(a);
    src->Release(a, 5, 100);
    src->Release(a, 100, 1);
    src->Release(*src->Find("b"), 0, 0);
    CheckData(*src, {{"a", "0123456789"}, {"b", "abcde"}});
    CHECK(src->name() == src->files()[0]);
  }
  SECTION("concurrent readers") {
    SafetensorsBuilder b;
    std::map<std::string, std::string> expected;
    for (int i = 0; i < 16; ++i) {
      std::string name = std::string("t") + std::to_string(i);
      std::string data(static_cast<size_t>(1000 + i * 517), static_cast<char>('a' + i));
      b.Add(name, "U8", {static_cast<int64_t>(data.size())}, data);
      expected[name] = data;
    }
    auto src = Open(b.Build(), kind, dir);
    std::vector<std::thread> threads;
    std::vector<int> bad(4, 0);
    for (int t = 0; t < 4; ++t) {
      // A Release invalidates pread views of the released range, so each
      // thread views and releases only its own tensors; Read copies are safe
      // for every tensor.
      threads.emplace_back([&, t] {
        for (int round = 0; round < 20; ++round) {
          for (size_t tensor_idx = 0; tensor_idx < src->tensors().size(); ++tensor_idx) {
            const TensorInfo& info = src->tensors()[tensor_idx];
            const std::string& want = expected.at(info.name);
            if (tensor_idx % 4 == static_cast<size_t>(t)) {
              auto view = src->View(info);
              if (!view.ok() || AsString(*view) != want) ++bad[t];
              if (round % 3 == 0) src->Release(info);
            }
            std::string copy(16, '\0');
            Status read = src->Read(info, info.nbytes - 16,
                                    std::span<uint8_t>(reinterpret_cast<uint8_t*>(copy.data()), 16));
            if (!read.ok() || copy != want.substr(want.size() - 16)) ++bad[t];
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(bad == std::vector<int>(4, 0));
  }
}

TEST_CASE("a large multi-page file: views survive Release", "[formats][safetensors]") {
  const std::string kind = GENERATE("mmap", "pread");
  TempDir dir;
  SafetensorsBuilder b;
  std::string big(3 * 1024 * 1024 + 7, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
  b.Add("big", "U8", {static_cast<int64_t>(big.size())}, big);
  b.Add("small", "U8", {3}, "end");
  auto src = Open(b.Build(), kind, dir);
  for (int round = 0; round < 3; ++round) {
    CheckData(*src, {{"big", big}, {"small", "end"}});
    src->Release(*src->Find("big"));
  }
}

// A ByteSource that forwards to memory but records whether View was called.
class SpySource final : public ByteSource {
 public:
  explicit SpySource(std::string bytes) : inner_(MakeMemorySource(std::move(bytes), "spy")) {}
  const std::string& name() const override { return inner_->name(); }
  uint64_t size() const override { return inner_->size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    return inner_->ReadAt(offset, out);
  }
  Result<std::span<const uint8_t>> View(uint64_t offset, uint64_t len) override {
    ++*views_;
    return inner_->View(offset, len);
  }
  void Release(uint64_t offset, uint64_t len) override { inner_->Release(offset, len); }
  void Prefetch(uint64_t offset, uint64_t len) override { inner_->Prefetch(offset, len); }
  void set_counter(int* views) { views_ = views; }

 private:
  std::unique_ptr<ByteSource> inner_;
  int* views_ = nullptr;
};

TEST_CASE("opening validates through ReadAt only", "[formats][safetensors]") {
  int views = 0;
  SafetensorsBuilder b;
  b.Add("w", "F32", {2}, F32Bytes({1.0f, 2.0f}));
  auto spy = std::make_unique<SpySource>(b.Build());
  spy->set_counter(&views);
  auto src = OpenSafetensors(std::move(spy));
  REQUIRE(src.ok());
  CHECK(views == 0);
  REQUIRE((*src)->View((*src)->tensors()[0]).ok());
  CHECK(views == 1);
}

TEST_CASE("header edge cases that are valid", "[formats][safetensors]") {
  // Depth 128 is allowed: the error is then about metadata, not nesting.
  auto deep = Header(SafetensorsBuilder()
                         .MetadataJson("{\"k\":" + std::string(126, '[') + std::string(126, ']') + "}")
                         .Build());
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.status().message().find("metadata values must be strings") != std::string::npos);
  // A tensor called like an escape of __metadata__ is the metadata key.
  auto escaped_meta = Header(SafetensorsBuilder().HeaderJson("{\"__metad\\u0061ta__\":{\"a\":\"b\"}}").Build());
  REQUIRE(escaped_meta.ok());
  CHECK(escaped_meta->metadata.at("a") == "b");
  // -0 is a non-negative integer.
  SafetensorsBuilder neg_zero;
  neg_zero.Add("w", "F32", {0}, "").shape_json = "[-0]";
  CHECK(Header(neg_zero.Build()).ok());
}

TEST_CASE("file-level errors name the path", "[formats][safetensors]") {
  TempDir dir;
  auto missing = OpenSafetensorsFile(dir.Join("missing.safetensors"));
  CHECK(missing.status().code() == ErrorCode::kNotFound);
  auto directory = OpenSafetensorsFile(dir.path());
  CHECK(directory.status().code() == ErrorCode::kInvalidArgument);
  std::string path = dir.Join("bad.safetensors");
  testing::WriteFileBytes(path, "tiny");
  for (FileAccess access : {FileAccess::kMmap, FileAccess::kPread}) {
    auto bad = OpenSafetensorsFile(path, access);
    CHECK(bad.status().code() == ErrorCode::kCorrupt);
    CHECK(bad.status().message() == path + ": header too small: file is 4 bytes, the 8-byte "
                                           "header length alone needs 8");
  }
}

}  // namespace
}  // namespace alloy::formats
