#include "formats/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <limits>

namespace alloy::formats {

Status ErrnoStatus(std::string_view what, const std::string& path, int err) {
  std::string msg(what);
  msg += " ";
  msg += path;
  msg += ": ";
  msg += std::strerror(err);
  if (err == EFBIG) msg += " (a file size limit was reached; see ulimit -f)";
  if (err == ENOENT) return Status::NotFound(std::move(msg));
  return Status::IoError(std::move(msg));
}

Status PwriteFull(int fd, const std::string& path, uint64_t offset,
                  std::span<const uint8_t> bytes) {
  // pwrite may write less than asked (signals, quotas, >2 GiB requests on
  // Linux), so loop until everything is on its way to the page cache.
  constexpr size_t kMaxChunk = size_t{1} << 30;
  size_t done = 0;
  while (done < bytes.size()) {
    const size_t want = std::min(bytes.size() - done, kMaxChunk);
    const uint64_t at = offset + done;
    if (at > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
      return Status::InvalidArgument(path + ": write offset " + std::to_string(at) +
                                     " is too large");
    }
    const ssize_t n = ::pwrite(fd, bytes.data() + done, want, static_cast<off_t>(at));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return ErrnoStatus(
          "cannot write " + std::to_string(want) + " bytes at offset " + std::to_string(at) + " of",
          path, err);
    }
    if (n == 0) {
      return Status::IoError(path + ": write at offset " + std::to_string(at) +
                             " made no progress (disk full?)");
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status WriteWholeFile(const std::string& path, std::string_view contents, bool fsync) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create", path, errno);
  Status st = PwriteFull(
      fd, path, 0,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(contents.data()), contents.size()));
  if (st.ok() && fsync && ::fsync(fd) != 0) st = ErrnoStatus("cannot fsync", path, errno);
  if (::close(fd) != 0 && st.ok()) st = ErrnoStatus("cannot close", path, errno);
  return st;
}

Status FsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open for fsync", path, errno);
  Status st;
  if (::fsync(fd) != 0) st = ErrnoStatus("cannot fsync", path, errno);
  ::close(fd);
  return st;
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + ": not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    return Status::InvalidArgument(path + ": file is " + std::to_string(size) +
                                   " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  std::string out(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoStatus("cannot read", path, err);
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

std::string ParentDirectory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace alloy::formats
