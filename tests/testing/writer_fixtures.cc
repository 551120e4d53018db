#include "tests/testing/writer_fixtures.h"

#include <catch2/catch.hpp>
#include <span>

#include "formats/safetensors_writer.h"

namespace alloy::testing {

std::string PatternBytes(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

FixtureTensor PatternTensor(std::string name, formats::DType dtype, std::vector<int64_t> shape,
                            uint32_t seed) {
  auto info = formats::MakeTensorInfo(name, dtype, shape);
  REQUIRE(info.ok());
  FixtureTensor t{std::move(name), dtype, std::move(shape), {}};
  t.data = PatternBytes(static_cast<size_t>(info->nbytes), seed);
  return t;
}

formats::TensorInfo InfoOf(const FixtureTensor& t) {
  auto info = formats::MakeTensorInfo(t.name, t.dtype, t.shape);
  REQUIRE(info.ok());
  return *info;
}

void WriteSafetensorsFixture(const std::string& path, const std::vector<FixtureTensor>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  std::vector<formats::TensorInfo> infos;
  for (const FixtureTensor& t : tensors) {
    infos.push_back(InfoOf(t));
    REQUIRE(infos.back().nbytes == t.data.size());
  }
  auto writer = formats::MakeSafetensorsWriter(path);
  formats::Status st = writer->Begin(infos, metadata);
  INFO(st.ToString());
  REQUIRE(st.ok());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string& d = tensors[i].data;
    st = writer->WriteAt(
        i, 0, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(d.data()), d.size()));
    INFO(st.ToString());
    REQUIRE(st.ok());
  }
  st = writer->Finish();
  INFO(st.ToString());
  REQUIRE(st.ok());
}

void CheckSourceHolds(formats::TensorSource& src, const std::vector<FixtureTensor>& tensors) {
  for (const FixtureTensor& t : tensors) {
    INFO(t.name);
    const formats::TensorInfo* info = src.Find(t.name);
    REQUIRE(info != nullptr);
    auto view = src.View(*info);
    REQUIRE(view.ok());
    CHECK(std::string(reinterpret_cast<const char*>(view->data()), view->size()) == t.data);
  }
}

}  // namespace alloy::testing
