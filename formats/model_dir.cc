#include "formats/model_dir.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "formats/file_util.h"
#include "formats/gguf.h"
#include "formats/safetensors_reader.h"
#include "formats/sharded_source.h"
#include "formats/torch_reader.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;

enum class FileKind : uint8_t { kSafetensors, kZip, kPickle, kGguf, kJson, kUnknown };

bool IsJsonSpace(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Classifies a file by its leading bytes (DuckDB's MagicBytes). The
// safetensors test comes first: its first bytes are a length, which can look
// like another format's magic (N = 640 starts 80 02, like a pickle).
Result<FileKind> SniffFile(const std::string& path) {
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> src, OpenFileSource(path, FileAccess::kPread));
  const uint64_t size = src->size();
  std::array<uint8_t, 72> head{};
  const size_t n = static_cast<size_t>(std::min<uint64_t>(size, head.size()));
  ALLOY_RETURN_IF_ERROR(src->ReadAt(0, std::span<uint8_t>(head.data(), n)));
  if (n >= 8) {
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | head[static_cast<size_t>(i)];
    if (header_len >= 2 && header_len <= kMaxSafetensorsHeaderBytes && header_len <= size - 8) {
      size_t pos = 8;
      while (pos < n && IsJsonSpace(head[pos])) ++pos;
      if (pos < n && head[pos] == '{') return FileKind::kSafetensors;
    }
  }
  if (n >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0) return FileKind::kZip;
  if (n >= 4 && std::memcmp(head.data(), "GGUF", 4) == 0) return FileKind::kGguf;
  if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) return FileKind::kPickle;
  if (n >= 8 && std::memcmp(head.data(), "PYTORCH1", 8) == 0) return FileKind::kPickle;
  size_t pos = 0;
  while (pos < n && IsJsonSpace(head[pos])) ++pos;
  if (pos < n && (head[pos] == '{' || head[pos] == '[')) return FileKind::kJson;
  return FileKind::kUnknown;
}

// Opens one checkpoint file, choosing the reader by content, not extension.
Result<std::unique_ptr<TensorSource>> OpenCheckpointFile(const std::string& path,
                                                         FileAccess access) {
  ALLOY_ASSIGN_OR_RETURN(FileKind kind, SniffFile(path));
  switch (kind) {
    case FileKind::kZip:
    case FileKind::kPickle:
      // torch.save zip; a bare pickle is refused there as the legacy format.
      return OpenTorchFile(path, access);
    case FileKind::kGguf: {
      ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<GgufSource> gguf, GgufSource::OpenFile(path, access));
      return std::unique_ptr<TensorSource>(std::move(gguf));
    }
    case FileKind::kJson:
      return Status::InvalidArgument(path +
                                     ": this is a JSON file, not a checkpoint; pass the model "
                                     "directory or a .safetensors file");
    case FileKind::kSafetensors:
    case FileKind::kUnknown:
      // Unknown bytes go to the safetensors reader, whose errors say exactly
      // which check failed ("header too small", "invalid header length", ...).
      break;
  }
  return OpenSafetensorsFile(path, access);
}

constexpr std::array<std::string_view, 5> kLookedFor = {
    "model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
    "pytorch_model.bin", "adapter_config.json"};

Result<std::unique_ptr<TensorSource>> OpenModelDirectory(const std::string& dir, FileAccess access,
                                                         std::vector<std::string>* warnings,
                                                         SymlinkPolicy symlinks) {
  // Each file is checked before it is read: a link out of the directory is
  // refused rather than skipped, so the next candidate is never tried in its
  // place.
  const std::string index = dir + "/model.safetensors.index.json";
  ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(dir, index, symlinks));
  if (IsRegularFile(index)) {
    return OpenShardedIndex(index, ShardFormat::kSafetensors, access, warnings, symlinks);
  }
  const std::string single = dir + "/model.safetensors";
  ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(dir, single, symlinks));
  if (IsRegularFile(single)) return OpenCheckpointFile(single, access);

  // PyTorch only when there is no safetensors (transformers' order, §2.4).
  const std::string bin_index = dir + "/pytorch_model.bin.index.json";
  ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(dir, bin_index, symlinks));
  if (IsRegularFile(bin_index)) {
    return OpenShardedIndex(bin_index, ShardFormat::kTorch, access, warnings, symlinks);
  }
  const std::string bin = dir + "/pytorch_model.bin";
  ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(dir, bin, symlinks));
  if (IsRegularFile(bin)) return OpenCheckpointFile(bin, access);
  if (IsRegularFile(dir + "/adapter_config.json")) {
    return Status::Unsupported(dir +
                               ": found adapter_config.json; PEFT adapters are not supported yet "
                               "(merge the adapter into its base model first)");
  }

  std::string msg = dir + ": no checkpoint found (looked for ";
  for (size_t i = 0; i < kLookedFor.size(); ++i) {
    if (i) msg += ", ";
    msg += kLookedFor[i];
  }
  msg += ")";
  // Point at differently named weights (variants, consolidated.*) if any.
  std::vector<std::string> others;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) {
      others.push_back(name);
    }
  }
  std::sort(others.begin(), others.end());
  if (!others.empty()) {
    msg += "; other .safetensors files here: ";
    for (size_t i = 0; i < others.size() && i < 5; ++i) {
      if (i) msg += ", ";
      msg += others[i];
    }
    if (others.size() > 5) msg += ", ...";
    msg += " (pass one of them directly)";
  }
  return Status::NotFound(std::move(msg));
}

}  // namespace

const std::vector<std::string>& CompanionFileNames() {
  static const std::vector<std::string> kNames = {
      "config.json",
      "generation_config.json",
      "tokenizer.json",
      "tokenizer.model",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "added_tokens.json",
      "vocab.json",
      "merges.txt",
      "chat_template.jinja",
      "chat_template.json",
      "preprocessor_config.json",
  };
  return kNames;
}

Result<std::unique_ptr<TensorSource>> OpenModel(const std::string& path, FileAccess access,
                                                std::vector<std::string>* warnings,
                                                SymlinkPolicy symlinks) {
  if (path.empty()) return Status::InvalidArgument("empty model path");
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus("cannot open model", path, errno);
  }
  if (S_ISDIR(st.st_mode)) {
    std::string dir = path;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return OpenModelDirectory(dir, access, warnings, symlinks);
  }
  if (S_ISREG(st.st_mode)) return OpenCheckpointFile(path, access);
  return Status::InvalidArgument(path + ": not a regular file or directory");
}

std::vector<std::string> ListCompanionFiles(const std::string& dir) {
  std::vector<std::string> found;
  for (const std::string& name : CompanionFileNames()) {
    if (IsRegularFile(dir + "/" + name)) found.push_back(name);
  }
  return found;
}

std::string ModelDirectoryOf(const std::string& path) {
  if (IsDirectory(path)) return path;
  return ParentDirectory(path);
}

}  // namespace alloy::formats
