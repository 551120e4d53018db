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
  const std::string spelled = ref.revision.empty() ? ref.path : ref.path + "@" + ref.revision;
  ALLOY_ASSIGN_OR_RETURN(std::string resolved, formats::ResolveModelReference(spelled));
  // Decision (h): identity is the canonical path, so `//a/m`, `/a/m/` and a
  // symlink to it are one model.
  std::error_code ec;
  std::filesystem::path canonical = std::filesystem::canonical(resolved, ec);
  const std::string key = ec ? resolved : canonical.string();
  auto it = by_path_.find(key);
  if (it != by_path_.end()) return it->second.opened;

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
  return opened;
}

ModelOpener DiskModelOpener::AsOpener() {
  return [this](const ModelRef& ref) { return Open(ref); };
}

}  // namespace alloy::merge
