// Fixture files written through alloy's own safetensors writer (Begin /
// WriteAt / Finish), for tests that need valid checkpoints on disk: model
// directories, shards, hub-cache blobs.
//
// Thread safety: plain functions; each call writes its own file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "formats/tensor_info.h"
#include "formats/tensor_source.h"

namespace alloy::testing {

struct FixtureTensor {
  std::string name;
  formats::DType dtype = formats::DType::kF32;
  std::vector<int64_t> shape;
  std::string data;  // exactly the tensor's byte size
};

// `n` deterministic bytes that differ between seeds.
std::string PatternBytes(size_t n, uint32_t seed);

// A tensor whose data is PatternBytes(byte size, seed).
FixtureTensor PatternTensor(std::string name, formats::DType dtype, std::vector<int64_t> shape,
                            uint32_t seed);

// TensorInfo (name, dtype, shape, nbytes) of a fixture tensor.
formats::TensorInfo InfoOf(const FixtureTensor& t);

// Writes `tensors` to a safetensors file at `path` with MakeSafetensorsWriter;
// fails the current test (REQUIRE) on any error.
void WriteSafetensorsFixture(const std::string& path, const std::vector<FixtureTensor>& tensors,
                             const std::map<std::string, std::string>& metadata = {});

// Checks (Catch2 CHECK/REQUIRE) that `src` holds every fixture tensor with
// exactly its bytes.
void CheckSourceHolds(formats::TensorSource& src, const std::vector<FixtureTensor>& tensors);

}  // namespace alloy::testing
