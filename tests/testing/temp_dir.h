// TempDir: a fresh directory under $TMPDIR (or /tmp), removed with its
// contents on destruction. Plus small file helpers for tests.
#pragma once

#include <string>
#include <string_view>

namespace alloy::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string Join(std::string_view name) const;

 private:
  std::string path_;
};

// Writes `bytes` to `path` (creating parent directories). Aborts the test on failure.
void WriteFileBytes(const std::string& path, std::string_view bytes);
// Reads the whole file; aborts the test on failure.
std::string ReadFileBytes(const std::string& path);

}  // namespace alloy::testing
