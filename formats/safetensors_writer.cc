#include "formats/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>

#include "formats/file_util.h"
#include "formats/safetensors_reader.h"

namespace alloy::formats {
namespace {

constexpr std::string_view kMetadataKey = "__metadata__";

// JSON string literal exactly as serde_json writes it: only '"', '\\' and
// control characters are escaped (lowercase \u00xx), UTF-8 passes through.
// nlohmann's dump() with ensure_ascii=false does the same; it throws on
// invalid UTF-8, which we turn into kInvalidArgument.
Status AppendJsonString(std::string* out, const std::string& s, std::string_view what) {
  // Fast path for the common case (printable ASCII, nothing to escape);
  // nlohmann's dump walks a UTF-8 state machine per byte.
  const bool plain = std::all_of(
      s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (plain) {
    *out += '"';
    *out += s;
    *out += '"';
    return Status::OK();
  }
  try {
    *out += nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    return Status::InvalidArgument(std::string(what) + " is not valid UTF-8");
  }
  return Status::OK();
}

Status HeaderTooLarge(uint64_t n, bool at_least) {
  return Status::InvalidArgument(
      "safetensors header of " + std::string(at_least ? "at least " : "") + std::to_string(n) +
      " bytes exceeds the limit of " + std::to_string(kMaxSafetensorsHeaderBytes));
}

std::string TensorLabel(const std::string& name) { return "tensor '" + name + "'"; }

}  // namespace

Result<SafetensorsLayout> PlanSafetensorsLayout(
    const std::vector<TensorInfo>& tensors, const std::map<std::string, std::string>& metadata) {
  // Validate every entry before building anything.
  for (const TensorInfo& t : tensors) {
    if (t.name.empty()) return Status::InvalidArgument("empty tensor name");
    if (t.name == kMetadataKey) {
      return Status::InvalidArgument(
          "tensor name '__metadata__' is reserved in safetensors (the file would be unreadable)");
    }
    Result<uint64_t> expected = CheckedByteSize(t.dtype, t.shape);
    if (!expected.ok()) {
      return Status::InvalidArgument(TensorLabel(t.name) + ": " + expected.status().message());
    }
    if (*expected != t.nbytes) {
      return Status::InvalidArgument(TensorLabel(t.name) + ": nbytes " + std::to_string(t.nbytes) +
                                     " disagrees with " + std::string(DTypeName(t.dtype)) +
                                     " shape " + ShapeString(t.shape) + " (" +
                                     std::to_string(*expected) + " bytes)");
    }
  }

  // Data order: dtype descending in enum order, then name ascending byte-wise
  // (std::string compares as unsigned char, like Rust's str ordering).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (tensors[a].dtype != tensors[b].dtype) return tensors[a].dtype > tensors[b].dtype;
    return tensors[a].name < tensors[b].name;
  });
  {
    std::vector<const std::string*> names;
    names.reserve(tensors.size());
    for (const TensorInfo& t : tensors) names.push_back(&t.name);
    std::sort(names.begin(), names.end(),
              [](const std::string* a, const std::string* b) { return *a < *b; });
    for (size_t i = 1; i < names.size(); ++i) {
      if (*names[i] == *names[i - 1]) {
        return Status::InvalidArgument("duplicate tensor name '" + *names[i] + "'");
      }
    }
  }

  SafetensorsLayout layout;
  layout.data_offsets.assign(tensors.size(), 0);

  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");  // transformers refuses files without a valid format

  // Refuse oversized headers before building them: names and metadata
  // appear at least verbatim, plus quotes and separators.
  uint64_t lower_bound = 0;
  for (const auto& [key, value] : meta) lower_bound += key.size() + value.size() + 6;
  for (const TensorInfo& t : tensors) lower_bound += t.name.size() + 3;
  if (lower_bound > kMaxSafetensorsHeaderBytes) return HeaderTooLarge(lower_bound, true);

  std::string json = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [key, value] : meta) {
    if (!first) json += ',';
    first = false;
    ALLOY_RETURN_IF_ERROR(AppendJsonString(&json, key, "metadata key"));
    json += ':';
    ALLOY_RETURN_IF_ERROR(AppendJsonString(&json, value, "metadata value for '" + key + "'"));
  }
  json += '}';

  uint64_t running = 0;
  for (size_t idx : order) {
    const TensorInfo& t = tensors[idx];
    uint64_t end = 0;
    if (!CheckedAdd(running, t.nbytes, &end)) {
      return Status::InvalidArgument("total tensor size overflows 64 bits at " +
                                     TensorLabel(t.name));
    }
    layout.data_offsets[idx] = running;
    json += ',';
    ALLOY_RETURN_IF_ERROR(AppendJsonString(&json, t.name, "tensor name"));
    json += ":{\"dtype\":\"";
    json += DTypeName(t.dtype);
    json += "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) json += ',';
      json += std::to_string(t.shape[d]);
    }
    json += "],\"data_offsets\":[";
    json += std::to_string(running);
    json += ',';
    json += std::to_string(end);
    json += "]}";
    running = end;
    // Stop early instead of building a gigantic string we will refuse anyway.
    if (json.size() > kMaxSafetensorsHeaderBytes) break;
  }
  json += '}';

  // Pad with spaces so the data section starts 8-aligned (reference >= 0.3).
  const uint64_t n = (json.size() + 7) / 8 * 8;
  if (n > kMaxSafetensorsHeaderBytes) {
    return HeaderTooLarge(n, false);
  }
  json.resize(static_cast<size_t>(n), ' ');

  layout.header.resize(8);
  for (int i = 0; i < 8; ++i) {
    layout.header[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  }
  layout.header += json;
  layout.file_size = 8 + n + running;
  return layout;
}

namespace {

std::atomic<uint64_t> g_temp_counter{0};

class SafetensorsWriter final : public TensorSink {
 public:
  SafetensorsWriter(std::string path, SafetensorsWriterOptions options)
      : path_(std::move(path)), options_(options) {}
  ~SafetensorsWriter() override { Abort(); }

  Status Begin(const std::vector<TensorInfo>& tensors,
               const std::map<std::string, std::string>& metadata) override;
  Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) override;
  Status Finish() override;
  void Abort() override;

 private:
  enum class State : uint8_t { kNew, kBegun, kFinished };

  std::string path_;
  SafetensorsWriterOptions options_;
  State state_ = State::kNew;
  std::string tmp_path_;
  int fd_ = -1;
  std::vector<TensorInfo> tensors_;
  std::vector<uint64_t> file_offsets_;  // absolute, per tensor (Begin order)
  // Bytes written per tensor. Counts may exceed nbytes when ranges are
  // rewritten; Finish() only refuses counts below nbytes.
  std::unique_ptr<std::atomic<uint64_t>[]> written_;
};

Status SafetensorsWriter::Begin(const std::vector<TensorInfo>& tensors,
                                const std::map<std::string, std::string>& metadata) {
  if (state_ != State::kNew) {
    return Status::InvalidArgument(path_ + ": Begin() called twice");
  }
  Result<SafetensorsLayout> planned = PlanSafetensorsLayout(tensors, metadata);
  if (!planned.ok()) return planned.status().WithContext(path_);
  SafetensorsLayout layout = std::move(planned).value();

  // Same directory as the target, so the final rename never crosses
  // filesystems; pid + counter keep concurrent writers apart.
  tmp_path_ = path_ + ".tmp-" + std::to_string(::getpid()) + "-" +
              std::to_string(g_temp_counter.fetch_add(1));
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    tmp_path_.clear();
    return Status::IoError("cannot create temporary file for " + path_ + ": " + std::strerror(err));
  }
  Status st =
      PwriteFull(fd_, tmp_path_, 0,
                 std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(layout.header.data()),
                                          layout.header.size()));
  if (st.ok() && ::ftruncate(fd_, static_cast<off_t>(layout.file_size)) != 0) {
    st = ErrnoStatus("cannot resize", tmp_path_, errno);
  }
  // Reserve the blocks now so a full disk fails here, not hours into a merge.
  // Filesystems without fallocate (EOPNOTSUPP) just skip the reservation.
  if (st.ok() && layout.file_size > layout.header.size()) {
    const off_t start = static_cast<off_t>(layout.header.size());
    const off_t len = static_cast<off_t>(layout.file_size - layout.header.size());
    if (::fallocate(fd_, 0, start, len) != 0 && errno == ENOSPC) {
      st = Status::IoError("not enough disk space for " + path_ + " (" +
                           std::to_string(layout.file_size) + " bytes)");
    }
  }
  if (!st.ok()) {
    Abort();
    return st;
  }

  tensors_ = tensors;
  file_offsets_.resize(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    file_offsets_[i] = layout.header.size() + layout.data_offsets[i];
  }
  written_ = std::make_unique<std::atomic<uint64_t>[]>(tensors.size());
  state_ = State::kBegun;
  return Status::OK();
}

Status SafetensorsWriter::WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) {
  if (state_ != State::kBegun || fd_ < 0) {
    return Status::InvalidArgument(path_ + ": WriteAt() outside Begin()..Finish()");
  }
  if (index >= tensors_.size()) {
    return Status::InvalidArgument(path_ + ": tensor index " + std::to_string(index) +
                                   " out of range (" + std::to_string(tensors_.size()) +
                                   " tensors)");
  }
  const TensorInfo& t = tensors_[index];
  uint64_t end = 0;
  if (!CheckedAdd(offset, bytes.size(), &end) || end > t.nbytes) {
    return Status::InvalidArgument(path_ + ": " + TensorLabel(t.name) + ": write [" +
                                   std::to_string(offset) + ", +" + std::to_string(bytes.size()) +
                                   ") is outside the tensor's " + std::to_string(t.nbytes) +
                                   " bytes");
  }
  if (bytes.empty()) return Status::OK();
  ALLOY_RETURN_IF_ERROR(PwriteFull(fd_, tmp_path_, file_offsets_[index] + offset, bytes));
  written_[index].fetch_add(bytes.size(), std::memory_order_relaxed);
  return Status::OK();
}

Status SafetensorsWriter::Finish() {
  if (state_ == State::kFinished) {
    return Status::InvalidArgument(path_ + ": Finish() called twice");
  }
  if (state_ != State::kBegun) return Status::InvalidArgument(path_ + ": Finish() before Begin()");
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const uint64_t got = written_[i].load(std::memory_order_relaxed);
    if (got < tensors_[i].nbytes) {
      return Status::InvalidArgument(path_ + ": " + TensorLabel(tensors_[i].name) + ": only " +
                                     std::to_string(got) + " of " +
                                     std::to_string(tensors_[i].nbytes) + " bytes were written");
    }
  }
  Status st;
  if (options_.fsync && ::fsync(fd_) != 0) st = ErrnoStatus("cannot fsync", tmp_path_, errno);
  // close() can report delayed write errors (NFS), so check it.
  if (::close(fd_) != 0 && st.ok()) st = ErrnoStatus("cannot close", tmp_path_, errno);
  fd_ = -1;
  if (st.ok() && ::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    st = Status::IoError("cannot rename " + tmp_path_ + " to " + path_ + ": " + std::strerror(err) +
                         " (some filesystems, e.g. FUSE or object-store mounts, do not support "
                         "rename; alloy never falls back to writing in place; write to a local "
                         "disk and copy)");
  }
  if (!st.ok()) {
    Abort();
    return st;
  }
  tmp_path_.clear();
  state_ = State::kFinished;
  if (options_.fsync) ALLOY_RETURN_IF_ERROR(FsyncPath(ParentDirectory(path_)));
  return Status::OK();
}

void SafetensorsWriter::Abort() {
  if (state_ == State::kFinished) return;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tmp_path_.empty()) {
    ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
  }
  tensors_.clear();
  file_offsets_.clear();
  written_.reset();
  // A fresh Begin() after Abort() is allowed.
  state_ = State::kNew;
}

}  // namespace

std::unique_ptr<TensorSink> MakeSafetensorsWriter(std::string path,
                                                  SafetensorsWriterOptions options) {
  return std::make_unique<SafetensorsWriter>(std::move(path), options);
}

}  // namespace alloy::formats
