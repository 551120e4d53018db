// Small POSIX file helpers shared by formats/ and merge/: errno-aware
// messages, full-length pwrite, whole-file reads and writes, fsync.
//
// Every function reports failure as a Status naming the path and the errno
// text; none throws. Thread safety: pure functions over file descriptors and
// paths; concurrent calls on distinct ranges of one descriptor are safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "formats/status.h"

namespace alloy::formats {

// "<what> <path>: <strerror(err)>" as kIoError (kNotFound for ENOENT).
Status ErrnoStatus(std::string_view what, const std::string& path, int err);

// Writes all of `bytes` at `offset` of `fd`, looping on short writes and EINTR.
// `path` only appears in messages.
Status PwriteFull(int fd, const std::string& path, uint64_t offset, std::span<const uint8_t> bytes);

// Creates (or truncates) `path` and writes `contents`; fsyncs it when `fsync`.
Status WriteWholeFile(const std::string& path, std::string_view contents, bool fsync);

// fsyncs the file or directory at `path`.
Status FsyncPath(const std::string& path);

// The directory containing `path` ("." when `path` has no directory part).
std::string ParentDirectory(const std::string& path);

// "2.47 GB", "512 B": decimal units, as model sizes are quoted (one format for
// every byte count alloy prints).
std::string HumanBytes(double bytes);

// True when `path` is a regular file (after following symlinks).
bool IsRegularFile(const std::string& path);
// True when `path` is a directory (after following symlinks).
bool IsDirectory(const std::string& path);

inline constexpr uint64_t kMaxSmallFileBytes = uint64_t{256} << 20;

// Reads the whole file (configs, index files). Fails with kNotFound, kIoError,
// or kInvalidArgument when it is larger than `max_bytes`.
Result<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes = kMaxSmallFileBytes);

}  // namespace alloy::formats
