#include "formats/path_guard.h"

#include <sys/stat.h>

#include <filesystem>
#include <system_error>

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

std::string ContainmentRoot(const std::string& dir) {
  std::error_code ec;
  const fs::path real = fs::canonical(dir, ec);
  if (ec) return dir;
  // The last `models--*/snapshots/<sha>` run of components, if any: files of
  // a snapshot (or of a folder inside one) link into the repo's blobs/.
  std::vector<fs::path> parts(real.begin(), real.end());
  for (size_t i = parts.size(); i-- > 0;) {
    if (i + 2 >= parts.size()) continue;
    if (StartsWith(parts[i].string(), "models--") && parts[i + 1] == "snapshots") {
      fs::path root;
      for (size_t j = 0; j <= i; ++j) root /= parts[j];
      return root.string();
    }
  }
  return real.string();
}

Status CheckInsideDirectory(const std::string& dir, const std::string& path, SymlinkPolicy policy) {
  if (policy == SymlinkPolicy::kFollow) return Status::OK();
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::OK();  // absent: the caller says so
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  if (ec) return Status::OK();  // dangling link: the caller reports a missing file
  const std::string root = ContainmentRoot(dir);
  const std::string target = real.string();
  if (target == root || StartsWith(target, root == "/" ? root : root + "/")) return Status::OK();
  return Status::InvalidArgument(path + ": symlink leads outside the model directory " + root +
                                 " (to " + target + "); pass --follow-symlinks to read it anyway");
}

Status CheckFilesInsideDirectory(const std::string& dir, const std::vector<std::string>& names,
                                 SymlinkPolicy policy) {
  if (policy == SymlinkPolicy::kFollow) return Status::OK();
  for (const std::string& name : names) {
    ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(dir, dir + "/" + name, policy));
  }
  return Status::OK();
}

}  // namespace alloy::formats
