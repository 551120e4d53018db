// PlannedFile: one output file whose layout is known before any data is
// written — a header at offset 0 and a list of regions (one per tensor) at
// fixed offsets — filled by concurrent positioned writes and renamed into
// place when complete. The safetensors and GGUF writers are thin layers over
// it.
//
// The file is created as `<path>.tmp-<pid>-<n>` in the target's directory (so
// the rename never crosses filesystems), sized and reserved up front (a full
// disk fails at Create(), not hours later); bytes not covered by a write stay
// zero (GGUF's padding relies on that). Finish() refuses a region with fewer
// bytes written than its size, then fsyncs (optionally), closes and renames.
// Abort() (and the destructor, before Finish) removes the temporary file.
// Create() first removes `<path>.tmp-*` files of processes that are gone
// (killed runs; see formats/temp_files.h).
//
// Thread safety: WriteAt() may be called concurrently for disjoint ranges;
// Create/Finish/Abort must not race with anything.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"

namespace alloy::formats {

class PlannedFile {
 public:
  struct Region {
    std::string label;     // for messages: "tensor 'x'"
    uint64_t offset = 0;   // absolute offset in the file
    uint64_t size = 0;
  };

  PlannedFile(std::string path, bool fsync) : path_(std::move(path)), fsync_(fsync) {}
  ~PlannedFile() { Abort(); }
  PlannedFile(const PlannedFile&) = delete;
  PlannedFile& operator=(const PlannedFile&) = delete;

  // Creates the temporary file, writes `header` at 0 and sizes it to
  // `file_size`. REQUIRES: the regions lie inside [header.size(), file_size).
  // Fails with kInvalidArgument when called twice, kIoError on the OS.
  Status Create(std::string_view header, uint64_t file_size, std::vector<Region> regions);
  // Writes `bytes` at `offset` inside region `index`. Fails with
  // kInvalidArgument when outside the region or not between Create and
  // Finish, kIoError when the write fails.
  Status WriteAt(size_t index, uint64_t offset, std::span<const uint8_t> bytes);
  // Checks every region was written, then fsync (if asked), close, rename.
  Status Finish();
  // Removes the temporary file. Idempotent; no-op after Finish(); a fresh
  // Create() is allowed afterwards.
  void Abort();

  const std::string& path() const { return path_; }
  bool created() const { return fd_ >= 0; }

 private:
  std::string path_;
  bool fsync_ = false;
  bool finished_ = false;
  std::string tmp_path_;
  int fd_ = -1;
  std::vector<Region> regions_;
  // Bytes written per region. Counts may exceed sizes when ranges are
  // rewritten; Finish() only refuses counts below the size.
  std::unique_ptr<std::atomic<uint64_t>[]> written_;
};

}  // namespace alloy::formats
