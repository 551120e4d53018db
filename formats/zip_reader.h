// Minimal, validating zip reader for torch.save archives (checkpoint-formats.md
// §3.2). It reads only the layout: the end-of-central-directory record (and
// the ZIP64 record + locator when present), the central directory and each
// entry's local header. It never inflates: compressed entries are listed but
// their bytes cannot be read (a torch.save storage is always STORED, and a
// DEFLATE `data/0` is the `torch_dos` zip bomb).
//
// Layout read (all little-endian):
//   local header   "PK\3\4", 26 bytes of fields, name, extra, payload, ...
//   central dir    "PK\1\2" records (46 bytes + name + extra + comment)
//   [ZIP64 EOCD    "PK\6\6" record, then its locator "PK\6\7" (20 bytes)]
//   EOCD           "PK\5\6" (22 bytes + comment), ending at EOF
//
// Checks, in order, before anything is returned: EOCD found and ending at
// EOF, single disk, ZIP64 values consistent with the 32-bit ones, entry count
// within kMaxZipEntries and the directory size, central directory inside the
// file and before the EOCD; per entry: names non-empty, relative, without
// `..`, backslashes or NUL, unique; not encrypted; the local header's name
// equals the central one and its method matches; the payload
// [local + 30 + name_len + extra_len, + compressed_size) lies before the
// central directory; STORED entries have compressed == uncompressed size.
//
// Thread safety: ZipArchive is an immutable value after Open().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "formats/byte_source.h"
#include "formats/status.h"

namespace alloy::formats {

inline constexpr uint64_t kMaxZipEntries = 1'000'000;
inline constexpr uint64_t kMaxZipDirectoryBytes = uint64_t{64} << 20;
inline constexpr uint16_t kZipStored = 0;

struct ZipEntry {
  std::string name;
  uint16_t method = kZipStored;  // 0 STORED, 8 DEFLATE, ...
  uint16_t flags = 0;
  uint32_t crc32 = 0;            // 0 when the writer disabled CRCs
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;      // absolute payload start, from the local header's lengths
};

class ZipArchive {
 public:
  // Reads and validates the archive layout of `src` through ReadAt() only.
  // On failure returns kCorrupt with a message starting with src.name() and
  // naming the entry and byte offset ("invalid zip archive: ..."), kIoError
  // when a read fails, or kUnsupported for multi-disk or encrypted archives.
  static Result<ZipArchive> Open(const ByteSource& src);

  // Entries in central-directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry called `name`, or nullptr.
  const ZipEntry* Find(std::string_view name) const;

 private:
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Reads a whole STORED entry (small entries: data.pkl, byteorder, version)
// and checks its CRC-32 when the archive recorded one. Fails with
// kUnsupported for a compressed entry, kCorrupt when it is larger than
// `max_bytes` or the CRC differs, kIoError when the read fails.
Result<std::string> ReadStoredEntry(const ByteSource& src, const ZipEntry& entry,
                                    uint64_t max_bytes);

// CRC-32 (IEEE 802.3, as zip uses it) of `bytes`, continuing from `crc`.
uint32_t Crc32(std::string_view bytes, uint32_t crc = 0);

}  // namespace alloy::formats
