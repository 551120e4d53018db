#include "formats/planned_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "formats/file_util.h"
#include "formats/temp_files.h"
#include "formats/tensor_info.h"

namespace alloy::formats {
namespace {

std::atomic<uint64_t> g_temp_counter{0};

}  // namespace

Status PlannedFile::Create(std::string_view header, uint64_t file_size,
                           std::vector<Region> regions) {
  if (fd_ >= 0 || finished_) return Status::InvalidArgument(path_ + ": created twice");
  // Temporaries of this path left by killed runs go first (never a live
  // process's).
  (void)RemoveStaleTemporaries(path_);
  // Same directory as the target, so the final rename never crosses
  // filesystems; pid + counter keep concurrent writers apart.
  tmp_path_ = TempFileName(path_, ::getpid(), g_temp_counter.fetch_add(1));
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    tmp_path_.clear();
    return Status::IoError("cannot create temporary file for " + path_ + ": " + std::strerror(err));
  }
  Status st = PwriteFull(
      fd_, tmp_path_, 0,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(header.data()), header.size()));
  if (st.ok() && ::ftruncate(fd_, static_cast<off_t>(file_size)) != 0) {
    st = ErrnoStatus("cannot resize", tmp_path_, errno);
  }
  // Reserve the blocks now so a full disk fails here, not hours into a merge.
  // Filesystems without fallocate (EOPNOTSUPP) just skip the reservation.
  if (st.ok() && file_size > header.size()) {
    const off_t start = static_cast<off_t>(header.size());
    const off_t len = static_cast<off_t>(file_size - header.size());
    if (::fallocate(fd_, 0, start, len) != 0 && errno == ENOSPC) {
      st = Status::IoError("not enough disk space for " + path_ + " (" +
                           std::to_string(file_size) + " bytes): " + std::strerror(ENOSPC));
    }
  }
  if (!st.ok()) {
    Abort();
    return st;
  }
  regions_ = std::move(regions);
  written_ = std::make_unique<std::atomic<uint64_t>[]>(regions_.size());
  return Status::OK();
}

Status PlannedFile::WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes) {
  if (fd_ < 0) return Status::InvalidArgument(path_ + ": write outside Begin()..Finish()");
  if (index >= regions_.size()) {
    return Status::InvalidArgument(path_ + ": tensor index " + std::to_string(index) +
                                   " out of range (" + std::to_string(regions_.size()) +
                                   " tensors)");
  }
  const Region& r = regions_[index];
  uint64_t end = 0;
  if (!CheckedAdd(offset, bytes.size(), &end) || end > r.size) {
    return Status::InvalidArgument(path_ + ": " + r.label + ": write [" + std::to_string(offset) +
                                   ", +" + std::to_string(bytes.size()) +
                                   ") is outside the tensor's " + std::to_string(r.size) +
                                   " bytes");
  }
  if (bytes.empty()) return Status::OK();
  ALLOY_RETURN_IF_ERROR(PwriteFull(fd_, tmp_path_, r.offset + offset, bytes));
  written_[index].fetch_add(bytes.size(), std::memory_order_relaxed);
  return Status::OK();
}

Status PlannedFile::Finish() {
  if (finished_) return Status::InvalidArgument(path_ + ": Finish() called twice");
  if (fd_ < 0) return Status::InvalidArgument(path_ + ": Finish() before Begin()");
  for (size_t i = 0; i < regions_.size(); ++i) {
    const uint64_t got = written_[i].load(std::memory_order_relaxed);
    if (got < regions_[i].size) {
      return Status::InvalidArgument(path_ + ": " + regions_[i].label + ": only " +
                                     std::to_string(got) + " of " +
                                     std::to_string(regions_[i].size) + " bytes were written");
    }
  }
  Status st;
  if (fsync_ && ::fsync(fd_) != 0) st = ErrnoStatus("cannot fsync", tmp_path_, errno);
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
  finished_ = true;
  if (fsync_) ALLOY_RETURN_IF_ERROR(FsyncPath(ParentDirectory(path_)));
  return Status::OK();
}

void PlannedFile::Abort() {
  if (finished_) return;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tmp_path_.empty()) {
    ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
  }
  regions_.clear();
  written_.reset();
}

}  // namespace alloy::formats
