#include "formats/byte_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

#include "formats/tensor_info.h"

namespace alloy::formats {
namespace {

std::string RangeString(uint64_t offset, uint64_t len) {
  return "[offset " + std::to_string(offset) + ", +" + std::to_string(len) + ")";
}

// kCorrupt when [offset, offset + len) does not fit in a source of `size`
// bytes; `offset + len` is checked for wraparound first.
Status CheckRange(const std::string& name, uint64_t offset, uint64_t len, uint64_t size) {
  uint64_t end = 0;
  if (!CheckedAdd(offset, len, &end) || end > size) {
    return Status::Corrupt(name + ": read of " + RangeString(offset, len) + " exceeds file size " +
                           std::to_string(size));
  }
  return Status::OK();
}

std::string ErrnoString(int err) { return std::string(std::strerror(err)); }

// Page-aligned sub-range of [offset, offset + len): inward shrinks to whole
// pages inside the range (so neighbouring tensors keep their pages), outward
// grows to cover every touched page. False when the result is empty.
bool AlignRange(uint64_t offset, uint64_t len, uint64_t size, bool inward, uint64_t* begin,
                uint64_t* end) {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (offset >= size) return false;
  uint64_t stop = 0;
  if (!CheckedAdd(offset, len, &stop) || stop > size) stop = size;
  if (inward) {
    *begin = (offset + page - 1) / page * page;
    // The last page counts as whole when the range reaches EOF.
    *end = stop == size ? stop : stop / page * page;
  } else {
    *begin = offset / page * page;
    *end = stop;
  }
  return *begin < *end;
}

// A file read through pread (kPread) or mmap (kMmap). The mapping is created
// on the first View(), so header validation through ReadAt() never maps. If
// mmap fails the source falls back to pread-backed views.
class FileSource final : public ByteSource {
 public:
  FileSource(std::string name, int fd, uint64_t size, FileAccess access)
      : name_(std::move(name)), fd_(fd), size_(size),
        map_state_(access == FileAccess::kMmap ? kUnmapped : kNoMap) {}

  ~FileSource() override {
    if (map_ != nullptr) munmap(const_cast<uint8_t*>(map_), static_cast<size_t>(size_));
    close(fd_);
  }

  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  const std::string& name() const override { return name_; }
  uint64_t size() const override { return size_; }

  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    ALLOY_RETURN_IF_ERROR(CheckRange(name_, offset, out.size(), size_));
    size_t done = 0;
    while (done < out.size()) {
      // Linux caps one read at about 2 GiB; ask for at most 1 GiB at a time.
      size_t want = std::min<size_t>(out.size() - done, size_t{1} << 30);
      ssize_t got = pread(fd_, out.data() + done, want, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        return Status::IoError(name_ + ": read of " + RangeString(offset, out.size()) +
                               " failed: " + ErrnoString(errno));
      }
      if (got == 0) {
        return Status::IoError(name_ + ": read of " + RangeString(offset, out.size()) +
                               " hit end of file at byte " + std::to_string(offset + done) +
                               " (file size was " + std::to_string(size_) +
                               " at open; was it truncated?)");
      }
      done += static_cast<size_t>(got);
    }
    return Status::OK();
  }

  Result<std::span<const uint8_t>> View(uint64_t offset, uint64_t len) override {
    ALLOY_RETURN_IF_ERROR(CheckRange(name_, offset, len, size_));
    if (len == 0) return std::span<const uint8_t>();
    if (EnsureMapped() == kMapped) {
      return std::span<const uint8_t>(map_ + offset, static_cast<size_t>(len));
    }
    return PreadView(offset, len);
  }

  void Release(uint64_t offset, uint64_t len) override {
    if (map_state_.load(std::memory_order_acquire) == kMapped) {
      uint64_t begin = 0;
      uint64_t end = 0;
      if (AlignRange(offset, len, size_, /*inward=*/true, &begin, &end)) {
        madvise(const_cast<uint8_t*>(map_) + begin, static_cast<size_t>(end - begin),
                MADV_DONTNEED);
      }
      return;
    }
    uint64_t stop = 0;
    if (!CheckedAdd(offset, len, &stop)) stop = UINT64_MAX;
    std::lock_guard<std::mutex> lock(buffers_mu_);
    for (auto it = buffers_.lower_bound(offset); it != buffers_.end() && it->first < stop;) {
      if (it->first + it->second.size <= stop) {
        it = buffers_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Prefetch(uint64_t offset, uint64_t len) override {
    uint64_t begin = 0;
    uint64_t end = 0;
    if (!AlignRange(offset, len, size_, /*inward=*/false, &begin, &end)) return;
    if (map_state_.load(std::memory_order_acquire) == kMapped) {
      madvise(const_cast<uint8_t*>(map_) + begin, static_cast<size_t>(end - begin),
              MADV_WILLNEED);
      return;
    }
    posix_fadvise(fd_, static_cast<off_t>(begin), static_cast<off_t>(end - begin),
                  POSIX_FADV_WILLNEED);
  }

 private:
  enum MapState : int { kUnmapped, kMapped, kNoMap };

  // Maps the whole file once; returns kMapped or kNoMap (pread fallback).
  MapState EnsureMapped() {
    int state = map_state_.load(std::memory_order_acquire);
    if (state != kUnmapped) return static_cast<MapState>(state);
    std::lock_guard<std::mutex> lock(map_mu_);
    state = map_state_.load(std::memory_order_relaxed);
    if (state != kUnmapped) return static_cast<MapState>(state);
    MapState result = kNoMap;
    // mmap(0) is EINVAL, and a file larger than the address space cannot be
    // mapped; both fall back to pread.
    if (size_ > 0 && static_cast<uint64_t>(static_cast<size_t>(size_)) == size_) {
      void* addr = mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_SHARED, fd_, 0);
      if (addr != MAP_FAILED) {
        // Merges stream tensors in file order; let the kernel read ahead.
        madvise(addr, static_cast<size_t>(size_), MADV_SEQUENTIAL);
        map_ = static_cast<const uint8_t*>(addr);
        result = kMapped;
      }
    }
    map_state_.store(result, std::memory_order_release);
    return result;
  }

  // Reads the range into an owned buffer that lives until a Release() covers
  // it. Reading happens outside the lock so threads read in parallel.
  Result<std::span<const uint8_t>> PreadView(uint64_t offset, uint64_t len) {
    {
      std::lock_guard<std::mutex> lock(buffers_mu_);
      auto [first, last] = buffers_.equal_range(offset);
      for (auto it = first; it != last; ++it) {
        if (it->second.size >= len) {
          return std::span<const uint8_t>(it->second.data.get(), static_cast<size_t>(len));
        }
      }
    }
    auto buffer = std::make_unique_for_overwrite<uint8_t[]>(static_cast<size_t>(len));
    ALLOY_RETURN_IF_ERROR(
        ReadAt(offset, std::span<uint8_t>(buffer.get(), static_cast<size_t>(len))));
    const uint8_t* data = buffer.get();
    std::lock_guard<std::mutex> lock(buffers_mu_);
    buffers_.emplace(offset, OwnedBytes{std::move(buffer), len});
    return std::span<const uint8_t>(data, static_cast<size_t>(len));
  }

  struct OwnedBytes {
    std::unique_ptr<uint8_t[]> data;
    uint64_t size = 0;
  };

  const std::string name_;
  const int fd_;
  const uint64_t size_;

  std::mutex map_mu_;
  std::atomic<int> map_state_;
  const uint8_t* map_ = nullptr;  // written once under map_mu_ before kMapped

  std::mutex buffers_mu_;
  std::multimap<uint64_t, OwnedBytes> buffers_;  // offset -> owned bytes
};

class MemorySource final : public ByteSource {
 public:
  MemorySource(std::string bytes, std::string name)
      : bytes_(std::move(bytes)), name_(std::move(name)) {}

  const std::string& name() const override { return name_; }
  uint64_t size() const override { return bytes_.size(); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    ALLOY_RETURN_IF_ERROR(CheckRange(name_, offset, out.size(), bytes_.size()));
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return Status::OK();
  }

  Result<std::span<const uint8_t>> View(uint64_t offset, uint64_t len) override {
    ALLOY_RETURN_IF_ERROR(CheckRange(name_, offset, len, bytes_.size()));
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes_.data()) + offset,
                                    static_cast<size_t>(len));
  }

  void Release(uint64_t, uint64_t) override {}
  void Prefetch(uint64_t, uint64_t) override {}

 private:
  const std::string bytes_;
  const std::string name_;
};

}  // namespace

Result<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path, FileAccess access) {
  int fd = -1;
  do {
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return Status::NotFound(path + ": no such file");
    }
    return Status::IoError(path + ": cannot open: " + ErrnoString(err));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return Status::IoError(path + ": cannot stat: " + ErrnoString(err));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument(path + ": is a directory, expected a file");
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument(path + ": not a regular file");
  }
  return std::unique_ptr<ByteSource>(
      new FileSource(path, fd, static_cast<uint64_t>(st.st_size), access));
}

std::unique_ptr<ByteSource> MakeMemorySource(std::string bytes, std::string name) {
  return std::make_unique<MemorySource>(std::move(bytes), std::move(name));
}

}  // namespace alloy::formats
