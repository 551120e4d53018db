#include "formats/model_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "formats/file_util.h"
#include "formats/safetensors_writer.h"
#include "formats/temp_files.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Status BadSize(std::string_view text, std::string_view why) {
  return Status::InvalidArgument("invalid byte size '" + std::string(text) +
                                 "': " + std::string(why) +
                                 " (examples: 5B, 500M, 2GB, 1GiB, 1.5GB, 1048576)");
}

// Returns the multiplier for a (lower-cased) unit suffix, 0 when unknown.
uint64_t UnitMultiplier(std::string_view unit) {
  static const std::map<std::string, uint64_t, std::less<>> kUnits = {
      {"", 1},
      {"k", 1'000ULL},
      {"m", 1'000'000ULL},
      {"b", 1'000'000'000ULL},  // mergekit: "5B" is five billion bytes
      {"t", 1'000'000'000'000ULL},
      {"kb", 1'000ULL},
      {"mb", 1'000'000ULL},
      {"gb", 1'000'000'000ULL},
      {"tb", 1'000'000'000'000ULL},
      {"kib", 1ULL << 10},
      {"mib", 1ULL << 20},
      {"gib", 1ULL << 30},
      {"tib", 1ULL << 40},
  };
  auto it = kUnits.find(unit);
  return it == kUnits.end() ? 0 : it->second;
}

// A plain file name inside the output directory.
Status ValidateRelativeName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find_first_of(std::string_view("/\\\0", 3)) != std::string::npos) {
    return Status::InvalidArgument("invalid output file name '" + name +
                                   "': must be a plain file name without separators");
  }
  return Status::OK();
}

// Names the weight files own; added files may not shadow them.
bool IsReservedName(const std::string& name, const std::string& stem) {
  if (name == stem + ".safetensors.index.json") return true;
  return name.rfind(stem, 0) == 0 && name.ends_with(".safetensors");
}

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

bool DirIsEmpty(const std::string& dir, std::error_code& ec) {
  fs::directory_iterator it(dir, ec);
  if (ec) return false;
  return it == fs::directory_iterator();
}

}  // namespace

Result<uint64_t> ParseByteSize(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  size_t pos = 0;
  unsigned __int128 int_part = 0;
  size_t n_int_digits = 0;
  for (; pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]));
       ++pos, ++n_int_digits) {
    int_part = int_part * 10 + static_cast<unsigned>(s[pos] - '0');
    if (int_part > UINT64_MAX) return BadSize(text, "too large");
  }
  unsigned __int128 frac = 0;
  unsigned __int128 frac_scale = 1;
  size_t n_frac_digits = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    for (; pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])); ++pos) {
      // Digits beyond 1e-18 cannot change a whole-byte result for units <= TiB.
      if (n_frac_digits < 18) {
        frac = frac * 10 + static_cast<unsigned>(s[pos] - '0');
        frac_scale *= 10;
      }
      ++n_frac_digits;
    }
    if (n_frac_digits == 0) return BadSize(text, "expected digits after '.'");
  }
  if (n_int_digits == 0 && n_frac_digits == 0) return BadSize(text, "expected a number");
  while (pos < s.size() && s[pos] == ' ') ++pos;
  const uint64_t mult = UnitMultiplier(Lower(s.substr(pos)));
  if (mult == 0) {
    return BadSize(text, "unknown unit '" + std::string(s.substr(pos)) + "'");
  }
  // Exact integer arithmetic; fractions of a byte are rounded down.
  const unsigned __int128 value = int_part * mult + frac * mult / frac_scale;
  if (value > UINT64_MAX) return BadSize(text, "too large");
  return static_cast<uint64_t>(value);
}

std::string ShardFileName(size_t i, size_t n, std::string_view stem) {
  if (n == 1) return std::string(stem) + ".safetensors";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "-%05zu-of-%05zu.safetensors", i, n);
  return std::string(stem) + buf;
}

namespace {

class ModelDirWriterImpl final : public ModelDirWriter {
 public:
  ModelDirWriterImpl(std::string out_dir, std::string tmp_dir, ModelWriterOptions options)
      : out_dir_(std::move(out_dir)), tmp_dir_(std::move(tmp_dir)), options_(options) {}
  ~ModelDirWriterImpl() override { Abort(); }

  Status Begin(const std::vector<TensorInfo>& tensors,
               const std::map<std::string, std::string>& metadata) override;
  Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) override;
  Status Finish() override;
  void Abort() override;

  Status AddFile(const std::string& relative_name, std::string_view contents) override;
  Status CopyFile(const std::string& src_path, const std::string& relative_name) override;
  const std::vector<std::string>& weight_files() const override { return weight_files_; }
  const std::string& out_dir() const override { return out_dir_; }

 private:
  struct Slot {
    size_t shard = 0;
    size_t local = 0;
  };

  Status CheckExtraName(const std::string& relative_name);
  Status WriteIndex(const std::vector<TensorInfo>& tensors);
  Status InstallOutput();

  std::string out_dir_;
  std::string tmp_dir_;  // empty once removed or renamed into place
  ModelWriterOptions options_;
  bool begun_ = false;
  bool finished_ = false;
  std::vector<std::string> weight_files_;
  std::vector<std::unique_ptr<TensorSink>> shards_;
  std::vector<bool> shard_done_;
  std::vector<Slot> slots_;  // per Begin() index
  std::string index_json_;   // empty for a single shard
  std::mutex extra_mu_;
  std::set<std::string> extra_files_;
};

Status ModelDirWriterImpl::CheckExtraName(const std::string& relative_name) {
  ALLOY_RETURN_IF_ERROR(ValidateRelativeName(relative_name));
  if (IsReservedName(relative_name, options_.weights_stem)) {
    return Status::InvalidArgument("cannot add '" + relative_name + "' to " + out_dir_ +
                                   ": the name is reserved for the weight files");
  }
  if (tmp_dir_.empty() || finished_) {
    return Status::InvalidArgument(out_dir_ + ": cannot add files after Finish() or Abort()");
  }
  return Status::OK();
}

Status ModelDirWriterImpl::AddFile(const std::string& relative_name, std::string_view contents) {
  ALLOY_RETURN_IF_ERROR(CheckExtraName(relative_name));
  ALLOY_RETURN_IF_ERROR(WriteWholeFile(tmp_dir_ + "/" + relative_name, contents, options_.fsync));
  std::lock_guard<std::mutex> lock(extra_mu_);
  extra_files_.insert(relative_name);
  return Status::OK();
}

Status ModelDirWriterImpl::CopyFile(const std::string& src_path, const std::string& relative_name) {
  ALLOY_RETURN_IF_ERROR(CheckExtraName(relative_name));
  const std::string dst = tmp_dir_ + "/" + relative_name;
  std::error_code ec;
  fs::copy_file(src_path, dst, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    std::string msg = "cannot copy " + src_path + " to " + dst + ": " + ec.message();
    if (ec == std::errc::no_such_file_or_directory) return Status::NotFound(std::move(msg));
    return Status::IoError(std::move(msg));
  }
  if (options_.fsync) ALLOY_RETURN_IF_ERROR(FsyncPath(dst));
  std::lock_guard<std::mutex> lock(extra_mu_);
  extra_files_.insert(relative_name);
  return Status::OK();
}

Status ModelDirWriterImpl::Begin(const std::vector<TensorInfo>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  if (begun_) return Status::InvalidArgument(out_dir_ + ": Begin() called twice");
  if (tmp_dir_.empty()) return Status::InvalidArgument(out_dir_ + ": Begin() after Abort()");
  // Names must be unique across shards, which per-shard writers cannot see.
  std::set<std::string_view> names;
  for (const TensorInfo& t : tensors) {
    if (!names.insert(t.name).second) {
      return Status::InvalidArgument(out_dir_ + ": duplicate tensor name '" + t.name + "'");
    }
  }

  // Greedy cut in Begin() order (mergekit's writer): start a new shard when
  // the current one holds bytes and this tensor would push it past the limit.
  // An oversized tensor therefore sits alone; zero-size tensors never cut.
  std::vector<std::vector<size_t>> shard_members(1);
  uint64_t current = 0;
  uint64_t total = 0;
  slots_.resize(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t nbytes = tensors[i].nbytes;
    if (!CheckedAdd(total, nbytes, &total)) {
      return Status::InvalidArgument(out_dir_ + ": total tensor size overflows 64 bits");
    }
    if (nbytes > 0 && current > 0 &&
        (nbytes > options_.max_shard_bytes || current > options_.max_shard_bytes - nbytes)) {
      shard_members.emplace_back();
      current = 0;
    }
    slots_[i] = Slot{shard_members.size() - 1, shard_members.back().size()};
    shard_members.back().push_back(i);
    current += nbytes;
  }

  const size_t n_shards = shard_members.size();
  for (size_t s = 0; s < n_shards; ++s) weight_files_.push_back(ShardFileName(s + 1, n_shards, options_.weights_stem));
  for (size_t s = 0; s < n_shards; ++s) {
    std::vector<TensorInfo> shard_tensors;
    shard_tensors.reserve(shard_members[s].size());
    for (size_t i : shard_members[s]) shard_tensors.push_back(tensors[i]);
    shards_.push_back(MakeSafetensorsWriter(tmp_dir_ + "/" + weight_files_[s],
                                            SafetensorsWriterOptions{options_.fsync}));
    Status st = shards_.back()->Begin(shard_tensors, metadata);
    if (!st.ok()) {
      for (auto& shard : shards_) shard->Abort();
      shards_.clear();
      weight_files_.clear();
      slots_.clear();
      return st;
    }
  }
  shard_done_.assign(n_shards, false);
  if (n_shards > 1) ALLOY_RETURN_IF_ERROR(WriteIndex(tensors));
  begun_ = true;
  return Status::OK();
}

Status ModelDirWriterImpl::WriteIndex(const std::vector<TensorInfo>& tensors) {
  // Same shape as transformers' index: keys sorted, 2-space indent.
  nlohmann::json index;
  uint64_t total = 0;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < tensors.size(); ++i) {
    total += tensors[i].nbytes;
    weight_map[tensors[i].name] = weight_files_[slots_[i].shard];
  }
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = std::move(weight_map);
  try {
    index_json_ = index.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(out_dir_ + ": cannot write the index: " + e.what());
  }
  return Status::OK();
}

Status ModelDirWriterImpl::WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) {
  if (!begun_ || finished_) {
    return Status::InvalidArgument(out_dir_ + ": WriteAt() outside Begin()..Finish()");
  }
  if (index >= slots_.size()) {
    return Status::InvalidArgument(out_dir_ + ": tensor index " + std::to_string(index) +
                                   " out of range (" + std::to_string(slots_.size()) + " tensors)");
  }
  const Slot& slot = slots_[index];
  return shards_[slot.shard]->WriteAt(slot.local, offset, bytes);
}

Status ModelDirWriterImpl::Finish() {
  if (finished_) return Status::InvalidArgument(out_dir_ + ": Finish() called twice");
  if (!begun_) return Status::InvalidArgument(out_dir_ + ": Finish() before Begin()");
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (shard_done_[s]) continue;
    Status st = shards_[s]->Finish();
    // Incomplete data is the caller's bug and recoverable (write the rest,
    // Finish again); anything else loses the output.
    if (st.code() == ErrorCode::kInvalidArgument) return st;
    if (!st.ok()) {
      Abort();
      return st;
    }
    shard_done_[s] = true;
  }
  Status st;
  if (!index_json_.empty()) {
    st = WriteWholeFile(tmp_dir_ + "/" + options_.weights_stem + ".safetensors.index.json",
                       index_json_, options_.fsync);
  }
  if (st.ok() && options_.fsync) st = FsyncPath(tmp_dir_);
  if (st.ok()) st = InstallOutput();
  if (!st.ok()) {
    Abort();
    return st;
  }
  finished_ = true;
  if (options_.fsync) ALLOY_RETURN_IF_ERROR(FsyncPath(ParentDirectory(out_dir_)));
  return Status::OK();
}

Status ModelDirWriterImpl::InstallOutput() {
  // rename(2) replaces a missing or empty directory atomically.
  if (::rename(tmp_dir_.c_str(), out_dir_.c_str()) == 0) {
    tmp_dir_.clear();
    return Status::OK();
  }
  const int err = errno;
  if (err != ENOTEMPTY && err != EEXIST) {
    return Status::IoError("cannot rename " + tmp_dir_ + " to " + out_dir_ + ": " +
                           std::strerror(err) +
                           (err == EXDEV || err == ENOSYS || err == EPERM || err == EOPNOTSUPP
                                ? " (the filesystem may not support rename, e.g. FUSE or "
                                  "object-store mounts)"
                                : ""));
  }
  if (!options_.overwrite) {
    return Status::InvalidArgument(
        out_dir_ + " became non-empty while writing; pass --overwrite to replace it");
  }
  // Move the old directory aside first so there is never a moment where a
  // half-deleted output sits under the final name.
  const std::string old_dir = OldDirName(out_dir_, ::getpid());
  std::error_code ec;
  fs::remove_all(old_dir, ec);
  if (::rename(out_dir_.c_str(), old_dir.c_str()) != 0) {
    const int err1 = errno;
    return ErrnoStatus("cannot move the old output aside to " + old_dir + ":", out_dir_, err1);
  }
  if (::rename(tmp_dir_.c_str(), out_dir_.c_str()) != 0) {
    const int err2 = errno;
    ::rename(old_dir.c_str(), out_dir_.c_str());  // best effort: put the old output back
    return ErrnoStatus("cannot rename " + tmp_dir_ + " to", out_dir_, err2);
  }
  tmp_dir_.clear();
  fs::remove_all(old_dir, ec);
  if (ec) {
    return Status::IoError("wrote " + out_dir_ + " but could not remove the old output " + old_dir +
                           ": " + ec.message());
  }
  return Status::OK();
}

void ModelDirWriterImpl::Abort() {
  if (finished_) return;
  for (auto& shard : shards_) shard->Abort();
  shards_.clear();
  if (!tmp_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);
    tmp_dir_.clear();
  }
}

}  // namespace

namespace {

// True when `dir` holds files a model directory has: weights, an index,
// config.json or a merge recipe.
bool LooksLikeModelDirectory(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "config.json" || name == "mergekit_config.yml" || name == "adapter_config.json" ||
        name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json") ||
        name.ends_with(".bin") || name.ends_with(".gguf")) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<ModelDirWriter>> ModelDirWriter::Create(std::string out_dir,
                                                               ModelWriterOptions options) {
  if (out_dir.empty()) return Status::InvalidArgument("empty output directory");
  if (options.max_shard_bytes == 0) {
    return Status::InvalidArgument("maximum shard size must be positive");
  }
  out_dir = StripTrailingSlashes(std::move(out_dir));
  // Temporaries of killed runs go first; an old output that a killed
  // --overwrite had moved aside comes back under its name, so the check below
  // sees it.
  (void)RemoveStaleTemporaries(out_dir);
  std::error_code ec;
  const fs::file_status st = fs::status(out_dir, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) {
      return Status::InvalidArgument("output " + out_dir + " exists and is not a directory");
    }
    const bool empty = DirIsEmpty(out_dir, ec);
    if (ec) return Status::IoError("cannot list " + out_dir + ": " + ec.message());
    if (!empty && !options.overwrite) {
      return Status::InvalidArgument("output directory " + out_dir +
                                     " exists and is not empty; pass --overwrite to replace it");
    }
    // --overwrite removes the old directory, so it only replaces what looks
    // like a model: a typo must never delete a home or project directory.
    if (!empty && !LooksLikeModelDirectory(out_dir)) {
      return Status::InvalidArgument(
          "output directory " + out_dir +
          " is not empty and does not look like a model (no config.json, *.safetensors, "
          "index or mergekit_config.yml); refusing to replace it even with --overwrite");
    }
  }
  const std::string parent = ParentDirectory(out_dir);
  fs::create_directories(parent, ec);
  if (ec) return Status::IoError("cannot create " + parent + ": " + ec.message());

  // Partial directories of live runs are left alone; a collision with our
  // own pid (another writer in this process) gets a counter.
  const std::string base = PartialDirName(out_dir, ::getpid());
  std::string tmp_dir = base;
  for (int attempt = 1;; ++attempt) {
    if (::mkdir(tmp_dir.c_str(), 0755) == 0) break;
    const int err = errno;
    if (err != EEXIST || attempt >= 1000) {
      return ErrnoStatus("cannot create temporary directory", tmp_dir, err);
    }
    tmp_dir = base + "-" + std::to_string(attempt);
  }
  return std::unique_ptr<ModelDirWriter>(
      new ModelDirWriterImpl(std::move(out_dir), std::move(tmp_dir), options));
}

}  // namespace alloy::formats
