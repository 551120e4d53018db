#include "formats/byte_source.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/temp_dir.h"

namespace alloy::formats {
namespace {

using testing::TempDir;
using testing::WriteFileBytes;

std::string Pattern(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>((i * 131 + i / 251) & 0xFF);
  return out;
}

std::string AsString(std::span<const uint8_t> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

// True when /proc/self/maps lists a mapping of `path`.
bool IsMapped(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0)
      return true;
  }
  return false;
}

std::unique_ptr<ByteSource> OpenKind(const TempDir& dir, const std::string& bytes,
                                     const char* label) {
  std::string label_str = label;
  if (label_str == "memory") return MakeMemorySource(bytes, "mem.bin");
  std::string path = dir.Join("f.bin");
  WriteFileBytes(path, bytes);
  auto src = OpenFileSource(path, label_str == "mmap" ? FileAccess::kMmap : FileAccess::kPread);
  REQUIRE(src.ok());
  return std::move(src).value();
}

TEST_CASE("ByteSource conformance over mmap, pread and memory", "[formats][byte_source]") {
  const char* label = GENERATE("mmap", "pread", "memory");
  TempDir dir;
  const std::string bytes = Pattern(3 * 4096 + 123);
  std::unique_ptr<ByteSource> src = OpenKind(dir, bytes, label);
  INFO(label);
  CHECK(src->size() == bytes.size());

  SECTION("ReadAt copies exact ranges") {
    std::vector<uint8_t> buf(100);
    REQUIRE(src->ReadAt(4000, buf).ok());
    CHECK(std::string(buf.begin(), buf.end()) == bytes.substr(4000, 100));
    REQUIRE(src->ReadAt(bytes.size() - 100, buf).ok());
    CHECK(std::string(buf.begin(), buf.end()) == bytes.substr(bytes.size() - 100));
    CHECK(src->ReadAt(bytes.size(), std::span<uint8_t>()).ok());
  }
  SECTION("View returns the bytes and stays valid") {
    auto whole = src->View(0, bytes.size());
    REQUIRE(whole.ok());
    CHECK(AsString(*whole) == bytes);
    auto mid = src->View(4097, 5000);
    REQUIRE(mid.ok());
    CHECK(AsString(*mid) == bytes.substr(4097, 5000));
    auto empty = src->View(bytes.size(), 0);
    REQUIRE(empty.ok());
    CHECK(empty->empty());
    src->Prefetch(0, bytes.size());
    src->Prefetch(bytes.size() + 10, 10);  // out of range: ignored
    CHECK(AsString(*whole) == bytes);
  }
  SECTION("Release keeps data readable through a fresh View") {
    auto v = src->View(0, bytes.size());
    REQUIRE(v.ok());
    src->Release(0, bytes.size());
    src->Release(100, UINT64_MAX);       // clamps
    src->Release(bytes.size() + 1, 5);   // beyond: ignored
    auto again = src->View(0, bytes.size());
    REQUIRE(again.ok());
    CHECK(AsString(*again) == bytes);
  }
  SECTION("out-of-range reads name the file, range and size") {
    std::vector<uint8_t> buf(10);
    Status s = src->ReadAt(bytes.size() - 5, buf);
    CHECK(s.code() == ErrorCode::kCorrupt);
    CHECK(s.message().rfind(src->name() + ": ", 0) == 0);
    CHECK(s.message().find("[offset " + std::to_string(bytes.size() - 5) + ", +10)") !=
          std::string::npos);
    CHECK(s.message().find("exceeds file size " + std::to_string(bytes.size())) !=
          std::string::npos);
    auto v = src->View(UINT64_MAX, 2);  // offset + len wraps around
    CHECK(v.status().code() == ErrorCode::kCorrupt);
    auto v2 = src->View(bytes.size() + 1, 0);
    CHECK(v2.status().code() == ErrorCode::kCorrupt);
  }
  SECTION("concurrent View/Read/Release") {
    std::vector<std::thread> threads;
    std::vector<int> failures(4, 0);
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        // Views and releases stay inside this thread's quarter (a Release
        // invalidates pread views of the range); reads go anywhere.
        for (int iter = 0; iter < 200; ++iter) {
          uint64_t off = static_cast<uint64_t>(t * 3000 + (iter * 131) % 2000);
          auto v = src->View(off, 1000);
          if (!v.ok() || AsString(*v) != bytes.substr(off, 1000)) ++failures[t];
          std::vector<uint8_t> buf(64);
          uint64_t read_off = static_cast<uint64_t>((t * 997 + iter * 131) % 12000);
          if (!src->ReadAt(read_off, buf).ok() ||
              std::string(buf.begin(), buf.end()) != bytes.substr(read_off, 64)) {
            ++failures[t];
          }
          if (iter % 7 == 0) src->Release(off, 1000);
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == std::vector<int>(4, 0));
  }
}

TEST_CASE("mmap source maps lazily, on the first View", "[formats][byte_source]") {
  TempDir dir;
  std::string path = dir.Join("lazy.bin");
  WriteFileBytes(path, Pattern(10000));
  auto src = OpenFileSource(path, FileAccess::kMmap);
  REQUIRE(src.ok());
  std::vector<uint8_t> buf(16);
  REQUIRE((*src)->ReadAt(0, buf).ok());
  (*src)->Prefetch(0, 100);
  (*src)->Release(0, 100);
  CHECK_FALSE(IsMapped(path));
  REQUIRE((*src)->View(0, 16).ok());
  CHECK(IsMapped(path));
  src->reset();
  CHECK_FALSE(IsMapped(path));

  auto pread = OpenFileSource(path, FileAccess::kPread);
  REQUIRE(pread.ok());
  REQUIRE((*pread)->View(0, 16).ok());
  CHECK_FALSE(IsMapped(path));
}

TEST_CASE("pread views live until a Release covers them", "[formats][byte_source]") {
  TempDir dir;
  std::string path = dir.Join("p.bin");
  const std::string bytes = Pattern(1000);
  WriteFileBytes(path, bytes);
  auto src = OpenFileSource(path, FileAccess::kPread);
  REQUIRE(src.ok());
  ByteSource& s = **src;
  auto a = s.View(100, 50);
  REQUIRE(a.ok());
  auto b = s.View(100, 20);  // a shorter view at the same offset reuses the buffer
  REQUIRE(b.ok());
  CHECK(b->data() == a->data());
  s.Release(100, 49);   // does not cover [100, 150)
  s.Release(120, 100);  // starts inside: does not cover it either
  auto c = s.View(100, 50);
  REQUIRE(c.ok());
  CHECK(c->data() == a->data());
  CHECK(AsString(*a) == bytes.substr(100, 50));
  s.Release(0, 1000);
  auto d = s.View(100, 50);
  REQUIRE(d.ok());
  CHECK(AsString(*d) == bytes.substr(100, 50));
}

TEST_CASE("zero-length files", "[formats][byte_source]") {
  TempDir dir;
  std::string path = dir.Join("empty.bin");
  WriteFileBytes(path, "");
  for (FileAccess access : {FileAccess::kMmap, FileAccess::kPread}) {
    auto src = OpenFileSource(path, access);
    REQUIRE(src.ok());
    CHECK((*src)->size() == 0);
    auto v = (*src)->View(0, 0);
    REQUIRE(v.ok());
    CHECK(v->empty());
    CHECK((*src)->ReadAt(0, std::span<uint8_t>()).ok());
    std::vector<uint8_t> one(1);
    CHECK((*src)->ReadAt(0, one).code() == ErrorCode::kCorrupt);
    CHECK((*src)->View(0, 1).status().code() == ErrorCode::kCorrupt);
    (*src)->Release(0, 0);
    (*src)->Prefetch(0, 10);
  }
  auto mem = MakeMemorySource("", "empty");
  CHECK(mem->View(0, 0).ok());
}

TEST_CASE("OpenFileSource errors", "[formats][byte_source]") {
  TempDir dir;
  auto missing = OpenFileSource(dir.Join("nope.safetensors"));
  CHECK(missing.status().code() == ErrorCode::kNotFound);
  CHECK(missing.status().message().find("nope.safetensors") != std::string::npos);
  auto missing_parent = OpenFileSource(dir.Join("nodir/x.bin"));
  CHECK(missing_parent.status().code() == ErrorCode::kNotFound);
  auto directory = OpenFileSource(dir.path());
  CHECK(directory.status().code() == ErrorCode::kInvalidArgument);
  CHECK(directory.status().message().find(dir.path()) == 0);
}

TEST_CASE("reads past a file truncated after open fail with kIoError", "[formats][byte_source]") {
  TempDir dir;
  std::string path = dir.Join("shrink.bin");
  WriteFileBytes(path, Pattern(5000));
  auto src = OpenFileSource(path, FileAccess::kPread);
  REQUIRE(src.ok());
  REQUIRE(truncate(path.c_str(), 1000) == 0);
  std::vector<uint8_t> buf(100);
  Status s = (*src)->ReadAt(2000, buf);
  CHECK(s.code() == ErrorCode::kIoError);
  CHECK(s.message().find("shrink.bin") != std::string::npos);
  auto v = (*src)->View(2000, 100);
  CHECK(v.status().code() == ErrorCode::kIoError);
}

}  // namespace
}  // namespace alloy::formats
