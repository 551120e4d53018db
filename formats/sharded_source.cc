#include "formats/sharded_source.h"

#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>

#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/safetensors_reader.h"
#include "formats/torch_reader.h"

namespace alloy::formats {
namespace {

// Built by appending: `"'" + std::string(s)` trips GCC 12's -Wrestrict false
// positive (PR 105651).
std::string Quote(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

// Shard names are relative to the index's directory. `/` and `\` both count
// as separators whatever the host OS (an index written on Windows must not
// escape on Linux either); a backslash is refused outright because it means
// a different file on each OS.
Status ValidateShardName(const std::string& index_path, const std::string& tensor,
                         const std::string& shard, ShardFormat format) {
  auto bad = [&](std::string_view why) {
    return Status::Corrupt(index_path + ": invalid shard path " + Quote(shard) + " for tensor " +
                           Quote(tensor) + ": " + std::string(why));
  };
  if (shard.empty()) return bad("empty");
  if (shard.find('\0') != std::string::npos) return bad("contains a NUL byte");
  if (shard.find('\\') != std::string::npos) return bad("contains a backslash");
  if (shard.front() == '/') return bad("absolute path");
  if (shard.size() >= 2 && std::isalpha(static_cast<unsigned char>(shard[0])) && shard[1] == ':') {
    return bad("drive letter");
  }
  size_t start = 0;
  while (true) {
    const size_t slash = shard.find('/', start);
    const std::string_view part = std::string_view(shard).substr(
        start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..") {
      return bad("'.', '..' or empty path components are not allowed");
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  const bool torch = format == ShardFormat::kTorch;
  const std::string_view ext = torch ? ".bin" : ".safetensors";
  if (shard.size() <= ext.size() ||
      shard.compare(shard.size() - ext.size(), ext.size(), ext) != 0) {
    return Status::Corrupt(index_path + ": extension mismatch: shard " + Quote(shard) +
                           " for tensor " + Quote(tensor) + " is not a " + std::string(ext) +
                           " file, but the index is a " +
                           (torch ? "pytorch_model.bin" : "safetensors") + " index");
  }
  return Status::OK();
}

class ShardedSource final : public TensorSource {
 public:
  ShardedSource(std::string name, std::vector<std::unique_ptr<TensorSource>> shards,
                std::vector<std::string> files)
      : name_(std::move(name)), shards_(std::move(shards)), files_(std::move(files)) {}

  // Adds tensor `info` of shard `shard` (called in shard order, data order).
  void Add(size_t shard, const TensorInfo& info) {
    TensorInfo copy = info;
    copy.file_index = static_cast<uint32_t>(shard);
    by_name_.emplace(copy.name, tensors_.size());
    tensors_.push_back(std::move(copy));
    shard_infos_.push_back(&info);
  }

  const std::string& name() const override { return name_; }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TensorInfo* Find(std::string_view name) const override {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
  }
  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    ALLOY_ASSIGN_OR_RETURN(size_t idx, Locate(info));
    return shards_[tensors_[idx].file_index]->View(*shard_infos_[idx]);
  }
  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    ALLOY_ASSIGN_OR_RETURN(size_t idx, Locate(info));
    return shards_[tensors_[idx].file_index]->Read(*shard_infos_[idx], offset, out);
  }
  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override {
    Result<size_t> idx = Locate(info);
    if (!idx.ok()) return;
    shards_[tensors_[*idx].file_index]->Release(*shard_infos_[*idx], offset, len);
  }
  const std::map<std::string, std::string>& metadata() const override {
    static const std::map<std::string, std::string> kEmpty;
    return shards_.empty() ? kEmpty : shards_.front()->metadata();
  }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  // The position of `info` in tensors_: by address when it is one of ours,
  // else by name (a caller's copy).
  Result<size_t> Locate(const TensorInfo& info) const {
    if (!tensors_.empty() && &info >= tensors_.data() &&
        &info < tensors_.data() + tensors_.size()) {
      return static_cast<size_t>(&info - tensors_.data());
    }
    auto it = by_name_.find(info.name);
    if (it == by_name_.end()) {
      return Status::InvalidArgument(name_ + ": no tensor " + Quote(info.name));
    }
    return it->second;
  }

  std::string name_;
  std::vector<std::unique_ptr<TensorSource>> shards_;
  std::vector<std::string> files_;
  std::vector<TensorInfo> tensors_;
  std::vector<const TensorInfo*> shard_infos_;  // owned by shards_, parallel to tensors_
  std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace

Result<std::unique_ptr<TensorSource>> OpenShardedSafetensors(const std::string& index_path,
                                                             FileAccess access,
                                                             std::vector<std::string>* warnings,
                                                             SymlinkPolicy symlinks) {
  return OpenShardedIndex(index_path, ShardFormat::kSafetensors, access, warnings, symlinks);
}

Result<std::unique_ptr<TensorSource>> OpenShardedIndex(const std::string& index_path,
                                                       ShardFormat format, FileAccess access,
                                                       std::vector<std::string>* warnings,
                                                       SymlinkPolicy symlinks) {
  const std::string dir = ParentDirectory(index_path);
  ALLOY_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path));
  const ShardOpener open_file =
      [&](const std::string& shard, const std::string& path) -> Result<std::unique_ptr<TensorSource>> {
    ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(dir, path, symlinks));
    if (!IsRegularFile(path)) {
      return Status::Corrupt(index_path + ": missing shard " + Quote(shard) + " (expected at " +
                             path + "; incomplete download?)");
    }
    return format == ShardFormat::kTorch ? OpenTorchFile(path, access)
                                         : OpenSafetensorsFile(path, access);
  };
  return OpenShardedIndexText(text, index_path, format, open_file, warnings);
}

Result<std::unique_ptr<TensorSource>> OpenShardedIndexText(std::string_view text,
                                                           const std::string& index_path,
                                                           ShardFormat format,
                                                           const ShardOpener& open_shard,
                                                           std::vector<std::string>* warnings) {
  const std::string dir = ParentDirectory(index_path);
  Result<nlohmann::json> parsed = ParseStrictJson(text, index_path);
  if (!parsed.ok()) return Status::Corrupt("invalid index: " + parsed.status().message());
  const nlohmann::json& index = *parsed;
  auto invalid = [&](const std::string& why) {
    return Status::Corrupt(index_path + ": invalid index: " + why);
  };
  if (!index.is_object()) return invalid("expected a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end()) return invalid("missing \"weight_map\"");
  if (!wm->is_object()) return invalid("\"weight_map\" must be an object");

  // weight_map: tensor → shard name, validated; shards sorted by name.
  std::map<std::string, std::string, std::less<>> weight_map;
  std::map<std::string, size_t> shard_index;
  for (const auto& [tensor, value] : wm->items()) {
    if (!value.is_string()) {
      return invalid("weight_map value for tensor " + Quote(tensor) + " must be a string, got " +
                     value.type_name());
    }
    const std::string shard = value.get<std::string>();
    ALLOY_RETURN_IF_ERROR(ValidateShardName(index_path, tensor, shard, format));
    weight_map.emplace(tensor, shard);
    shard_index.emplace(shard, 0);
  }
  std::vector<std::string> shard_names;
  for (auto& [shard, idx] : shard_index) {
    idx = shard_names.size();
    shard_names.push_back(shard);
  }

  std::vector<std::unique_ptr<TensorSource>> shards;
  std::vector<std::string> files;
  for (const std::string& shard : shard_names) {
    const std::string path = dir + "/" + shard;
    ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<TensorSource> src, open_shard(shard, path));
    shards.push_back(std::move(src));
    files.push_back(path);
  }

  // A name stored in two shards is ambiguous even if the index picks one.
  std::map<std::string_view, size_t> holder;
  for (size_t s = 0; s < shards.size(); ++s) {
    for (const TensorInfo& t : shards[s]->tensors()) {
      auto [it, inserted] = holder.emplace(t.name, s);
      if (!inserted) {
        return Status::Corrupt(index_path + ": tensor " + Quote(t.name) +
                               " defined in multiple shards: " + Quote(shard_names[it->second]) +
                               " and " + Quote(shard_names[s]));
      }
    }
  }
  for (const auto& [tensor, shard] : weight_map) {
    const size_t s = shard_index.at(shard);
    if (shards[s]->Find(tensor) == nullptr) {
      return Status::Corrupt(index_path + ": tensor " + Quote(tensor) + " not found in shard " +
                             Quote(shard) + " (the index maps it there)");
    }
  }

  // Shard order, data order inside each shard. The TensorInfo pointers stay
  // valid when the shard sources move into the combined source.
  std::vector<std::pair<size_t, const TensorInfo*>> listed;
  for (size_t s = 0; s < shards.size(); ++s) {
    for (const TensorInfo& t : shards[s]->tensors()) {
      if (weight_map.find(t.name) != weight_map.end()) {
        listed.emplace_back(s, &t);
      } else if (warnings != nullptr) {
        warnings->push_back(files[s] + ": tensor " + Quote(t.name) +
                            " is not listed in the index weight_map; ignored");
      }
    }
  }
  auto source = std::make_unique<ShardedSource>(dir, std::move(shards), std::move(files));
  for (const auto& [s, info] : listed) source->Add(s, *info);
  return std::unique_ptr<TensorSource>(std::move(source));
}

}  // namespace alloy::formats
