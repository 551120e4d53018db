#include "formats/zip_reader.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <span>

#include "formats/tensor_info.h"

namespace alloy::formats {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kEocdBytes = 22;
constexpr uint64_t kMaxCommentBytes = 65535;
constexpr uint64_t kZip64LocatorBytes = 20;
constexpr uint64_t kZip64EocdBytes = 56;
constexpr uint64_t kCentralBytes = 46;
constexpr uint64_t kLocalBytes = 30;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr uint16_t kFlagEncrypted = 0x0001;
constexpr uint16_t kFlagStrongEncryption = 0x0040;

uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t U32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t U64(const uint8_t* p) { return U32(p) | (static_cast<uint64_t>(U32(p + 4)) << 32); }


// Empty when `name` is acceptable, else why not.
std::string_view BadNameReason(std::string_view name) {
  if (name.empty()) return "empty name";
  if (name.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (name.find('\\') != std::string_view::npos) return "contains a backslash";
  if (name.front() == '/') return "absolute path";
  if (name.size() >= 2 && std::isalpha(static_cast<unsigned char>(name[0])) && name[1] == ':') {
    return "drive letter";
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string_view::npos) slash = name.size();
    if (name.substr(start, slash - start) == "..") return "'..' path component";
    start = slash + 1;
  }
  return {};
}

class DirectoryParser {
 public:
  explicit DirectoryParser(const ByteSource& src) : src_(src) {}

  Status Parse(std::vector<ZipEntry>* entries) {
    ALLOY_RETURN_IF_ERROR(FindEnd());
    ALLOY_RETURN_IF_ERROR(ReadCentralDirectory(entries));
    for (ZipEntry& entry : *entries) ALLOY_RETURN_IF_ERROR(CheckLocalHeader(&entry));
    return Status::OK();
  }

 private:
  Status Corrupt(const std::string& msg) const {
    return Status::Corrupt(src_.name() + ": invalid zip archive: " + msg);
  }

  // Locates the EOCD (it must end exactly at EOF: no trailing bytes, so a
  // zip cannot hide behind or in front of another format) and, when a ZIP64
  // locator precedes it, the ZIP64 record.
  Status FindEnd() {
    const uint64_t size = src_.size();
    if (size < kEocdBytes) {
      return Corrupt("file is " + std::to_string(size) +
                     " bytes, too small for the 22-byte end of central directory record");
    }
    const uint64_t tail_len = std::min(size, kEocdBytes + kMaxCommentBytes);
    const uint64_t tail_start = size - tail_len;
    std::vector<uint8_t> tail(static_cast<size_t>(tail_len));
    ALLOY_RETURN_IF_ERROR(src_.ReadAt(tail_start, tail));
    bool found = false;
    for (uint64_t pos = tail_len - kEocdBytes + 1; pos-- > 0;) {
      const uint8_t* p = tail.data() + pos;
      if (U32(p) == kEocdSig && pos + kEocdBytes + U16(p + 20) == tail_len) {
        eocd_offset_ = tail_start + pos;
        found = true;
        break;
      }
    }
    if (!found) return Corrupt("no end of central directory record ending at EOF");
    const uint8_t* e = tail.data() + (eocd_offset_ - tail_start);
    const uint16_t disk = U16(e + 4);
    const uint16_t cd_disk = U16(e + 6);
    const uint16_t n_here = U16(e + 8);
    const uint16_t n_total = U16(e + 10);
    const uint32_t cd_size = U32(e + 12);
    const uint32_t cd_offset = U32(e + 16);
    n_entries_ = n_total;
    cd_size_ = cd_size;
    cd_offset_ = cd_offset;
    cd_limit_ = eocd_offset_;
    if (disk != 0 || cd_disk != 0 || n_here != n_total) {
      return Status::Unsupported(src_.name() + ": multi-disk zip archives are not supported");
    }

    if (eocd_offset_ >= kZip64LocatorBytes) {
      uint8_t loc[kZip64LocatorBytes];
      ALLOY_RETURN_IF_ERROR(src_.ReadAt(eocd_offset_ - kZip64LocatorBytes, loc));
      if (U32(loc) == kZip64LocatorSig) {
        ALLOY_RETURN_IF_ERROR(ReadZip64End(U64(loc + 8), U32(loc + 4), U32(loc + 16)));
        // A 32-bit field that is not saturated must agree with the ZIP64 one:
        // two readers must never see two different directories.
        if ((n_total != 0xFFFF && n_total != n_entries_) ||
            (cd_size != 0xFFFFFFFF && cd_size != cd_size_) ||
            (cd_offset != 0xFFFFFFFF && cd_offset != cd_offset_)) {
          return Corrupt("the ZIP64 end of central directory record disagrees with the 32-bit one");
        }
      }
    }

    uint64_t cd_end = 0;
    if (!CheckedAdd(cd_offset_, cd_size_, &cd_end) || cd_end > cd_limit_) {
      return Corrupt("central directory [offset " + std::to_string(cd_offset_) + ", +" +
                     std::to_string(cd_size_) + ") runs past its end record at byte " +
                     std::to_string(cd_limit_));
    }
    if (cd_size_ > kMaxZipDirectoryBytes) {
      return Corrupt("central directory of " + std::to_string(cd_size_) +
                     " bytes exceeds the limit of " + std::to_string(kMaxZipDirectoryBytes));
    }
    if (n_entries_ > kMaxZipEntries || n_entries_ > cd_size_ / kCentralBytes) {
      return Corrupt(std::to_string(n_entries_) + " entries cannot fit in a central directory of " +
                     std::to_string(cd_size_) + " bytes (limit " + std::to_string(kMaxZipEntries) +
                     " entries)");
    }
    return Status::OK();
  }

  Status ReadZip64End(uint64_t offset, uint32_t disk, uint32_t n_disks) {
    if (disk != 0 || n_disks > 1) {
      return Status::Unsupported(src_.name() + ": multi-disk zip archives are not supported");
    }
    uint64_t end = 0;
    if (!CheckedAdd(offset, kZip64EocdBytes, &end) || end > eocd_offset_ - kZip64LocatorBytes) {
      return Corrupt("ZIP64 end of central directory offset " + std::to_string(offset) +
                     " is not before its locator");
    }
    uint8_t rec[kZip64EocdBytes];
    ALLOY_RETURN_IF_ERROR(src_.ReadAt(offset, rec));
    if (U32(rec) != kZip64EocdSig) {
      return Corrupt("no ZIP64 end of central directory record at byte " + std::to_string(offset));
    }
    if (U32(rec + 16) != 0 || U32(rec + 20) != 0 || U64(rec + 24) != U64(rec + 32)) {
      return Status::Unsupported(src_.name() + ": multi-disk zip archives are not supported");
    }
    n_entries_ = U64(rec + 32);
    cd_size_ = U64(rec + 40);
    cd_offset_ = U64(rec + 48);
    cd_limit_ = offset;
    return Status::OK();
  }

  Status ReadCentralDirectory(std::vector<ZipEntry>* entries) {
    std::vector<uint8_t> cd(static_cast<size_t>(cd_size_));
    ALLOY_RETURN_IF_ERROR(src_.ReadAt(cd_offset_, cd));
    entries->reserve(static_cast<size_t>(n_entries_));
    size_t pos = 0;
    for (uint64_t entry_idx = 0; entry_idx < n_entries_; ++entry_idx) {
      const std::string where = "central directory entry " + std::to_string(entry_idx) +
                                " (byte " + std::to_string(cd_offset_ + pos) + ")";
      if (cd.size() - pos < kCentralBytes || U32(cd.data() + pos) != kCentralSig) {
        return Corrupt(where + ": bad signature or truncated record");
      }
      const uint8_t* p = cd.data() + pos;
      ZipEntry entry;
      entry.flags = U16(p + 8);
      entry.method = U16(p + 10);
      entry.crc32 = U32(p + 16);
      entry.compressed_size = U32(p + 20);
      entry.uncompressed_size = U32(p + 24);
      const size_t name_len = U16(p + 28);
      const size_t extra_len = U16(p + 30);
      const size_t comment_len = U16(p + 32);
      const uint16_t disk_start = U16(p + 34);
      entry.local_header_offset = U32(p + 42);
      if (cd.size() - pos - kCentralBytes < name_len + extra_len + comment_len) {
        return Corrupt(where + ": name, extra field and comment run past the directory");
      }
      const uint8_t* name = p + kCentralBytes;
      entry.name.assign(reinterpret_cast<const char*>(name), name_len);
      ALLOY_RETURN_IF_ERROR(
          ApplyZip64Extra(std::span<const uint8_t>(name + name_len, extra_len), where, &entry));
      pos += kCentralBytes + name_len + extra_len + comment_len;

      if (disk_start != 0 && disk_start != 0xFFFF) {
        return Status::Unsupported(src_.name() + ": multi-disk zip archives are not supported");
      }
      if (std::string_view why = BadNameReason(entry.name); !why.empty()) {
        return Corrupt("entry " + QuotedText(entry.name) + ": " + std::string(why));
      }
      if ((entry.flags & (kFlagEncrypted | kFlagStrongEncryption)) != 0) {
        return Status::Unsupported(src_.name() + ": entry " + QuotedText(entry.name) +
                                   " is encrypted");
      }
      if (entry.method == kZipStored && entry.compressed_size != entry.uncompressed_size) {
        return Corrupt("STORED entry " + QuotedText(entry.name) + " has compressed size " +
                       std::to_string(entry.compressed_size) + " but uncompressed size " +
                       std::to_string(entry.uncompressed_size));
      }
      entries->push_back(std::move(entry));
    }
    if (pos != cd.size()) {
      return Corrupt("central directory holds " + std::to_string(cd.size() - pos) +
                     " bytes after its " + std::to_string(n_entries_) + " entries");
    }
    return Status::OK();
  }

  // The ZIP64 extended-information field replaces exactly the saturated
  // 32-bit fields, in the order uncompressed, compressed, local offset.
  Status ApplyZip64Extra(std::span<const uint8_t> extra, const std::string& where,
                         ZipEntry* entry) const {
    const bool need_usize = entry->uncompressed_size == 0xFFFFFFFF;
    const bool need_csize = entry->compressed_size == 0xFFFFFFFF;
    const bool need_offset = entry->local_header_offset == 0xFFFFFFFF;
    size_t pos = 0;
    while (extra.size() - pos >= 4) {
      const uint16_t id = U16(extra.data() + pos);
      const size_t len = U16(extra.data() + pos + 2);
      pos += 4;
      if (extra.size() - pos < len) return Corrupt(where + ": extra field runs past its record");
      if (id == kZip64ExtraId) {
        std::span<const uint8_t> body = extra.subspan(pos, len);
        size_t at = 0;
        auto take = [&](uint64_t* field) {
          if (body.size() - at < 8) return false;
          *field = U64(body.data() + at);
          at += 8;
          return true;
        };
        if ((need_usize && !take(&entry->uncompressed_size)) ||
            (need_csize && !take(&entry->compressed_size)) ||
            (need_offset && !take(&entry->local_header_offset))) {
          return Corrupt(where + ": ZIP64 extra field too short");
        }
        return Status::OK();
      }
      pos += len;
    }
    if (need_usize || need_csize || need_offset) {
      return Corrupt(where + ": saturated sizes without a ZIP64 extra field");
    }
    return Status::OK();
  }

  // The payload offset comes from the local header's own lengths (torch's
  // local headers carry the `FB` alignment padding that the central directory
  // does not repeat).
  Status CheckLocalHeader(ZipEntry* entry) const {
    const std::string what = "entry " + QuotedText(entry->name);
    uint64_t fixed_end = 0;
    if (!CheckedAdd(entry->local_header_offset, kLocalBytes, &fixed_end) || fixed_end > cd_offset_) {
      return Corrupt(what + ": local header offset " + std::to_string(entry->local_header_offset) +
                     " is not before the central directory (byte " + std::to_string(cd_offset_) +
                     ")");
    }
    uint8_t h[kLocalBytes];
    ALLOY_RETURN_IF_ERROR(src_.ReadAt(entry->local_header_offset, h));
    if (U32(h) != kLocalSig) {
      return Corrupt(what + ": no local header signature at byte " +
                     std::to_string(entry->local_header_offset));
    }
    const uint16_t method = U16(h + 8);
    const uint64_t name_len = U16(h + 26);
    const uint64_t extra_len = U16(h + 28);
    const uint64_t data_offset = fixed_end + name_len + extra_len;  // < 2^64: fixed_end < size
    if (data_offset > cd_offset_) {
      return Corrupt(what + ": local header at byte " + std::to_string(entry->local_header_offset) +
                     " runs into the central directory");
    }
    std::string local_name(static_cast<size_t>(name_len), '\0');
    ALLOY_RETURN_IF_ERROR(src_.ReadAt(
        fixed_end, std::span<uint8_t>(reinterpret_cast<uint8_t*>(local_name.data()),
                                      local_name.size())));
    if (local_name != entry->name) {
      return Corrupt(what + ": local header at byte " + std::to_string(entry->local_header_offset) +
                     " names " + QuotedText(local_name) + " instead");
    }
    if (method != entry->method) {
      return Corrupt(what + ": local header method " + std::to_string(method) +
                     " differs from the central directory's " + std::to_string(entry->method));
    }
    uint64_t data_end = 0;
    if (!CheckedAdd(data_offset, entry->compressed_size, &data_end) || data_end > cd_offset_) {
      return Corrupt(what + ": payload [offset " + std::to_string(data_offset) + ", +" +
                     std::to_string(entry->compressed_size) +
                     ") runs past the start of the central directory (byte " +
                     std::to_string(cd_offset_) + ")");
    }
    entry->data_offset = data_offset;
    return Status::OK();
  }

  const ByteSource& src_;
  uint64_t eocd_offset_ = 0;
  uint64_t cd_limit_ = 0;  // the directory must end here (EOCD or ZIP64 record)
  uint64_t n_entries_ = 0;
  uint64_t cd_size_ = 0;
  uint64_t cd_offset_ = 0;
};

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

}  // namespace

Result<ZipArchive> ZipArchive::Open(const ByteSource& src) {
  ZipArchive archive;
  ALLOY_RETURN_IF_ERROR(DirectoryParser(src).Parse(&archive.entries_));
  for (size_t entry_idx = 0; entry_idx < archive.entries_.size(); ++entry_idx) {
    const std::string& name = archive.entries_[entry_idx].name;
    if (!archive.index_.emplace(name, entry_idx).second) {
      return Status::Corrupt(src.name() + ": invalid zip archive: duplicate entry " +
                             QuotedText(name));
    }
  }
  return archive;
}

const ZipEntry* ZipArchive::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Result<std::string> ReadStoredEntry(const ByteSource& src, const ZipEntry& entry,
                                    uint64_t max_bytes) {
  if (entry.method != kZipStored) {
    return Status::Unsupported(src.name() + ": zip entry " + QuotedText(entry.name) +
                               " is compressed (method " + std::to_string(entry.method) +
                               "); only STORED entries are read");
  }
  if (entry.uncompressed_size > max_bytes) {
    return Status::Corrupt(src.name() + ": zip entry " + QuotedText(entry.name) + " is " +
                           std::to_string(entry.uncompressed_size) +
                           " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  std::string bytes(static_cast<size_t>(entry.uncompressed_size), '\0');
  ALLOY_RETURN_IF_ERROR(src.ReadAt(
      entry.data_offset,
      std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size())));
  if (entry.crc32 != 0 && Crc32(bytes) != entry.crc32) {
    return Status::Corrupt(src.name() + ": zip entry " + QuotedText(entry.name) +
                           ": CRC-32 mismatch (payload at byte " +
                           std::to_string(entry.data_offset) + ")");
  }
  return bytes;
}

uint32_t Crc32(std::string_view bytes, uint32_t crc) {
  static constexpr std::array<uint32_t, 256> kTable = MakeCrcTable();
  crc = ~crc;
  for (char c : bytes) crc = kTable[(crc ^ static_cast<uint8_t>(c)) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace alloy::formats
