#include "merge/model_opener.h"

#include <filesystem>
#include <system_error>

#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/model_dir.h"
#include "formats/model_ref.h"

namespace alloy::merge {

DiskModelOpener::DiskModelOpener(std::vector<std::pair<std::string, std::string>> path_map,
                                 formats::FileAccess access)
    : path_map_(std::move(path_map)), access_(access) {}

formats::Result<OpenedModel> DiskModelOpener::Open(const ModelRef& original) {
  ModelRef ref = original;
  ApplyPathMap(ref, path_map_);
  if (ref.has_lora()) {
    return formats::Status::Unsupported("LoRA references (`model+lora`) are not supported yet");
  }
  // As mergekit: a path that exists on disk is used as is, and a revision
  // only selects what to fetch for a hub id.
  std::string spelled = ref.path;
  if (!ref.revision.empty()) {
    std::error_code exists_ec;
    if (std::filesystem::exists(ref.path, exists_ec)) {
      warnings_.push_back("model '" + original.text + "': revision '" + ref.revision +
                          "' is ignored for the local path " + ref.path);
    } else {
      spelled += "@" + ref.revision;
    }
  }
  ALLOY_ASSIGN_OR_RETURN(std::string resolved, formats::ResolveModelReference(spelled));
  // Decision (h): identity is the canonical path, so `//a/m`, `/a/m/` and a
  // symlink to it are one model.
  std::error_code ec;
  std::filesystem::path canonical = std::filesystem::canonical(resolved, ec);
  const std::string key = ec ? resolved : canonical.string();
  auto it = by_path_.find(key);
  if (it != by_path_.end()) return WithArchitecture(it->second.opened, ref);

  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::TensorSource> source,
                         formats::OpenModel(key, access_, &warnings_));
  OpenedModel opened;
  opened.source = source.get();
  opened.path = key;
  opened.directory = formats::ModelDirectoryOf(key);
  const std::string config_path = opened.directory + "/config.json";
  if (formats::IsRegularFile(config_path)) {
    ALLOY_ASSIGN_OR_RETURN(std::string text, formats::ReadSmallFile(config_path));
    ALLOY_ASSIGN_OR_RETURN(opened.config, formats::ParseStrictJson(text, config_path));
  }
  Entry& entry = by_path_[key];
  entry.source = std::move(source);
  entry.opened = opened;
  return WithArchitecture(opened, ref);
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

ModelOpener DiskModelOpener::AsOpener() {
  return [this](const ModelRef& ref) { return Open(ref); };
}

}  // namespace alloy::merge
