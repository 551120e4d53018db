// ByteSource: random-access, read-only bytes of one file (or of memory).
//
// Like LevelDB's RandomAccessFile. Three implementations: an mmap file source
// (maps lazily, on the first View(), so readers validate headers through
// ReadAt() before anything is mapped), a pread file source (the fallback for
// filesystems without mmap), and an in-memory source for tests.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "formats/status.h"

namespace alloy::formats {

class ByteSource {
 public:
  virtual ~ByteSource() = default;

  // The file path (or a label for memory sources), for messages.
  virtual const std::string& name() const = 0;
  virtual uint64_t size() const = 0;

  // Copies [offset, offset + out.size()) into `out`.
  // Fails with kCorrupt when the range is beyond size() (the message names
  // the file, the range and the size), kIoError when the read fails.
  virtual Status ReadAt(uint64_t offset, std::span<uint8_t> out) const = 0;

  // A zero-copy view of [offset, offset + len). Valid until Release() of a
  // range that covers it (pread source) or until the source is destroyed.
  // Fails like ReadAt.
  virtual Result<std::span<const uint8_t>> View(uint64_t offset, uint64_t len) = 0;

  // The range will not be needed again soon: mmap sources give its pages back
  // (madvise DONTNEED, page-aligned inward), so resident memory tracks the
  // working set. The bytes stay readable: a later View re-faults them.
  virtual void Release(uint64_t offset, uint64_t len) = 0;

  // The range will be read soon (madvise WILLNEED / readahead). A hint only.
  virtual void Prefetch(uint64_t offset, uint64_t len) = 0;
};

enum class FileAccess : uint8_t { kMmap, kPread };

// Opens `path` read-only. Does not map anything yet.
// Fails with kNotFound (no such file), kInvalidArgument (a directory), kIoError.
Result<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path,
                                                   FileAccess access = FileAccess::kMmap);

// A source over `bytes` (owned); `name` appears in messages.
std::unique_ptr<ByteSource> MakeMemorySource(std::string bytes, std::string name);

}  // namespace alloy::formats
