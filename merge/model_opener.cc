#include "merge/model_opener.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "formats/file_util.h"
#include "formats/lora_adapter.h"
#include "formats/json_strict.h"
#include "formats/model_dir.h"
#include "formats/model_ref.h"
#include "merge/gguf_model.h"
#include "merge/lora_source.h"

namespace alloy::merge {

std::vector<std::string> LocalInputPaths(
    const ModelRef& original, const std::vector<std::pair<std::string, std::string>>& path_map) {
  ModelRef ref = original;
  ApplyPathMap(ref, path_map);
  std::vector<std::string> paths;
  auto add = [&](const std::string& path, const std::string& revision) {
    if (path.empty()) return;
    std::error_code ec;
    const std::string spelled =
        revision.empty() || std::filesystem::exists(path, ec) ? path : path + "@" + revision;
    formats::Result<std::string> resolved = formats::ResolveModelReference(spelled);
    if (!resolved.ok()) return;
    const std::string& p = *resolved;
    paths.push_back(p.ends_with(".index.json") ? formats::ModelDirectoryOf(p) : p);
  };
  add(ref.path, ref.revision);
  add(ref.lora_path, ref.lora_revision);
  return paths;
}

DiskModelOpener::DiskModelOpener(std::vector<std::pair<std::string, std::string>> path_map,
                                 formats::FileAccess access, double lora_scale,
                                 formats::SymlinkPolicy symlinks)
    : path_map_(std::move(path_map)),
      access_(access),
      lora_scale_(lora_scale),
      symlinks_(symlinks) {}

// `path` (with `revision`) as a canonical local path: an existing path as is
// (a revision is then ignored, with a warning, as in mergekit), else a hub id
// from the local cache.
formats::Result<std::string> DiskModelOpener::Resolve(const std::string& path,
                                                      const std::string& revision,
                                                      const std::string& text) {
  std::string spelled = path;
  if (!revision.empty()) {
    std::error_code exists_ec;
    if (std::filesystem::exists(path, exists_ec)) {
      const std::string w = "model '" + text + "': revision '" + revision +
                            "' is ignored for the local path " + path;
      if (std::find(warnings_.begin(), warnings_.end(), w) == warnings_.end()) {
        warnings_.push_back(w);
      }
    } else {
      spelled += "@" + revision;
    }
  }
  ALLOY_ASSIGN_OR_RETURN(std::string resolved, formats::ResolveModelReference(spelled));
  // Decision (h): identity is the canonical path, so `//a/m`, `/a/m/` and a
  // symlink to it are one model.
  std::error_code ec;
  std::filesystem::path canonical = std::filesystem::canonical(resolved, ec);
  return ec ? resolved : canonical.string();
}

formats::Result<OpenedModel> DiskModelOpener::Open(const ModelRef& original) {
  ModelRef ref = original;
  ApplyPathMap(ref, path_map_);
  ALLOY_ASSIGN_OR_RETURN(const std::string key, Resolve(ref.path, ref.revision, original.text));
  std::string lora_key;
  if (ref.has_lora()) {
    ALLOY_ASSIGN_OR_RETURN(lora_key, Resolve(ref.lora_path, ref.lora_revision, original.text));
  }
  // A model with an adapter is another model than the bare one.
  const std::string identity = lora_key.empty() ? key : key + "+" + lora_key;
  auto it = by_path_.find(identity);
  if (it != by_path_.end()) return WithArchitecture(it->second.opened, ref);

  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::TensorSource> source,
                         OpenCheckpoint(key, access_, &warnings_, symlinks_));
  if (!lora_key.empty()) {
    auto adapter = formats::LoraAdapter::Open(lora_key, access_, symlinks_);
    if (!adapter.ok()) return adapter.status().WithContext("LoRA '" + ref.lora_path + "'");
    ALLOY_ASSIGN_OR_RETURN(source, ApplyLora(std::move(source), std::move(*adapter), lora_scale_));
  }
  OpenedModel opened;
  opened.source = source.get();
  opened.path = key;
  opened.directory = formats::ModelDirectoryOf(key);
  opened.identity = identity;
  const std::string config_path = opened.directory + "/config.json";
  if (const formats::GgufHeader* gguf = GgufHeaderOf(*source)) {
    // A GGUF file carries its configuration in its metadata.
    opened.config = ConfigFromGguf(*gguf, *source);
  } else if (formats::IsRegularFile(config_path)) {
    ALLOY_RETURN_IF_ERROR(formats::CheckInsideDirectory(opened.directory, config_path, symlinks_));
    ALLOY_ASSIGN_OR_RETURN(std::string text, formats::ReadSmallFile(config_path));
    ALLOY_ASSIGN_OR_RETURN(opened.config, formats::ParseStrictJson(text, config_path));
  }
  Entry& entry = by_path_[identity];
  entry.source = std::move(source);
  entry.opened = opened;
  return WithArchitecture(opened, ref);
}

ModelOpener DiskModelOpener::AsOpener() {
  return [this](const ModelRef& ref) { return Open(ref); };
}

// The dict form's `override_architecture` replaces config.json's
// `architectures` wherever alloy reads it (the plan, the output config).
formats::Result<OpenedModel> DiskModelOpener::WithArchitecture(OpenedModel opened,
                                                               const ModelRef& ref) {
  if (ref.override_architecture.empty()) return opened;
  if (!opened.config.is_object()) {
    return formats::Status::InvalidArgument(
        "model '" + ref.text + "': override_architecture needs a config.json in " +
        opened.directory);
  }
  opened.config["architectures"] = nlohmann::json::array({ref.override_architecture});
  return opened;
}

}  // namespace alloy::merge
