// Commands that generate a mergekit recipe and run it through
// merge::RunMergeText (`alloy upscale`, `alloy lora apply`): quoting a model
// reference for the recipe, and probing the model the way the merge will
// read it.
#pragma once

#include <cstdint>
#include <string>

#include "formats/dtype.h"
#include "formats/path_guard.h"
#include "formats/status.h"

namespace alloy::cli {

// `s` as a YAML scalar: plain when it is obviously a path or hub id (with an
// optional `+adapter`), else single-quoted ('' stands for ').
std::string YamlScalar(const std::string& s);

// What a model is, read as a one-model passthrough plan reads it (headers and
// config.json only).
struct ProbedModel {
  int64_t layers = 0;
  formats::DType dtype = formats::DType::kBF16;  // the dtype most of its bytes are stored in
};

// Probes `model` (a path, hub id or `model+lora` reference). Fails with the
// opener's or planner's error, naming the model.
formats::Result<ProbedModel> ProbeModel(
    const std::string& model,
    formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside);

}  // namespace alloy::cli
