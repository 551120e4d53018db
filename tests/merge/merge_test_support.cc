#include "tests/merge/merge_test_support.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <memory>

#include "formats/model_dir.h"
#include "kernels/convert.h"
#include "merge/codec.h"
#include "merge/merge_job.h"

namespace alloy::merge::testing_support {

using alloy::testing::FixtureTensor;

FixtureTensor ValuesTensor(std::string name, std::vector<int64_t> shape,
                           const std::vector<float>& values, formats::DType dtype) {
  FixtureTensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  const size_t elem = static_cast<size_t>(formats::DTypeBits(dtype)) / 8;
  t.data.resize(values.size() * elem);
  std::vector<float> copy(values);
  kernels::EncodeStats stats;
  EncodeFromF32(dtype, copy, std::span<uint8_t>(reinterpret_cast<uint8_t*>(t.data.data()), t.data.size()),
                kernels::Overflow::kToInf, &stats);
  return t;
}

MiniModel OneTensorModel(const std::string& name, const std::vector<float>& values,
                         std::vector<int64_t> shape) {
  if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
  MiniModel m;
  m.name = name;
  m.tensors.push_back(ValuesTensor(kLayerWeight, std::move(shape), values));
  return m;
}

std::string WriteMiniModel(const alloy::testing::TempDir& dir, const MiniModel& m) {
  const std::string path = dir.Join(m.name);
  std::filesystem::create_directories(path);
  alloy::testing::WriteFileBytes(
      path + "/config.json",
      "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
      "\"num_hidden_layers\": " + std::to_string(m.layers) + ", \"torch_dtype\": \"float32\"}\n");
  if (!std::filesystem::exists(path + "/model.safetensors")) {
    alloy::testing::WriteSafetensorsFixture(path + "/model.safetensors", m.tensors);
  }
  return path;
}

MergeOutput RunRecipe(const alloy::testing::TempDir& dir, std::string recipe,
                      const std::vector<MiniModel>& models, const RunOptions& options) {
  for (const MiniModel& m : models) WriteMiniModel(dir, m);
  for (size_t pos = 0; (pos = recipe.find("$D", pos)) != std::string::npos;) {
    recipe.replace(pos, 2, dir.path());
  }
  const std::string recipe_path = dir.Join(options.out_name + ".yaml");
  alloy::testing::WriteFileBytes(recipe_path, recipe);
  MergeOutput result;
  result.out_dir = dir.Join(options.out_name);
  MergeJobOptions job;
  job.execute.threads = options.threads;
  job.execute.seed = options.seed;
  job.overwrite = true;
  auto report = RunMergeFile(recipe_path, result.out_dir, job);
  if (!report.ok()) {
    result.status = report.status();
    return result;
  }
  for (const std::string& w : report->warnings) result.stderr_text += w + "\n";
  auto src = formats::OpenModel(result.out_dir, formats::FileAccess::kPread);
  REQUIRE(src.ok());
  for (const formats::TensorInfo& info : (*src)->tensors()) {
    std::vector<uint8_t> bytes(info.nbytes);
    REQUIRE((*src)->Read(info, 0, bytes).ok());
    std::vector<float> values(info.numel());
    DecodeToF32(info.dtype, bytes, values);
    result.values[info.name] = std::move(values);
    result.dtypes[info.name] = info.dtype;
  }
  return result;
}

std::string FileBytes(const std::string& file) {
  return alloy::testing::ReadFileBytes(file);
}

void CheckThreadsAgree(const alloy::testing::TempDir& dir, const std::vector<std::string>& recipes,
                       const std::vector<MiniModel>& models, const std::string& prefix) {
  for (size_t idx = 0; idx < recipes.size(); ++idx) {
    CAPTURE(recipes[idx]);
    std::string bytes[2];
    for (int threads : {1, 2}) {
      const std::string out = prefix + std::to_string(idx) + "-t" + std::to_string(threads);
      auto got = RunRecipe(dir, recipes[idx], models, {.threads = threads, .out_name = out});
      INFO(got.status.ToString());
      REQUIRE(got.status.ok());
      bytes[threads - 1] = FileBytes(got.out_dir + "/model.safetensors");
    }
    CHECK(bytes[0] == bytes[1]);
  }
}

}  // namespace alloy::merge::testing_support
