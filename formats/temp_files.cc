#include "formats/temp_files.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>

#include "formats/file_util.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTmpInfix = ".tmp-";
constexpr std::string_view kPartialInfix = ".alloy-partial-";
constexpr std::string_view kOldInfix = ".alloy-old-";

// A decimal number spelled exactly as std::to_string prints it (no sign, no
// leading zero, at most 18 digits), else nullopt.
std::optional<int64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 18 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// "<a>-<b>" with both parts decimal, else nullopt.
std::optional<std::pair<int64_t, int64_t>> ParsePair(std::string_view s) {
  const size_t dash = s.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto a = ParseDecimal(s.substr(0, dash));
  auto b = ParseDecimal(s.substr(dash + 1));
  if (!a || !b) return std::nullopt;
  return std::make_pair(*a, *b);
}

enum class Kind { kTmpFile, kPartialDir, kOldDir };

struct Match {
  Kind kind;
  int64_t pid;
};

// Which of `base`'s temporaries `name` is, if any; exact spelling only.
std::optional<Match> MatchTemporary(std::string_view name, std::string_view base) {
  if (name.size() <= base.size() || name.substr(0, base.size()) != base) return std::nullopt;
  const std::string_view rest = name.substr(base.size());
  if (rest.starts_with(kTmpInfix)) {
    auto pair = ParsePair(rest.substr(kTmpInfix.size()));
    if (pair) return Match{Kind::kTmpFile, pair->first};
  } else if (rest.starts_with(kPartialInfix)) {
    // "<pid>", or "<pid>-<k>" (k >= 1) when a writer of the same process
    // found its first choice taken.
    const std::string_view tail = rest.substr(kPartialInfix.size());
    if (auto pid = ParseDecimal(tail)) return Match{Kind::kPartialDir, *pid};
    auto pair = ParsePair(tail);
    if (pair && pair->second >= 1) return Match{Kind::kPartialDir, pair->first};
  } else if (rest.starts_with(kOldInfix)) {
    if (auto pid = ParseDecimal(rest.substr(kOldInfix.size()))) return Match{Kind::kOldDir, *pid};
  }
  return std::nullopt;
}

}  // namespace

std::string TempFileName(const std::string& path, int64_t pid, uint64_t n) {
  return path + std::string(kTmpInfix) + std::to_string(pid) + "-" + std::to_string(n);
}

std::string PartialDirName(const std::string& out_dir, int64_t pid) {
  return out_dir + std::string(kPartialInfix) + std::to_string(pid);
}

std::string OldDirName(const std::string& out_dir, int64_t pid) {
  return out_dir + std::string(kOldInfix) + std::to_string(pid);
}

bool ProcessIsGone(int64_t pid) {
  // pid 0 and negative pids name process groups, not a process; pids past
  // pid_t's range cannot exist.
  if (pid <= 0) return false;
  if (pid > INT32_MAX) return true;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

StaleCleanup RemoveStaleTemporaries(const std::string& path) {
  StaleCleanup result;
  std::string target = path;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  const size_t slash = target.find_last_of('/');
  const std::string base = slash == std::string::npos ? target : target.substr(slash + 1);
  if (base.empty() || base == "." || base == ".." || base == "/") return result;
  const std::string dir = ParentDirectory(target);
  const int64_t self = ::getpid();

  std::error_code ec;
  std::vector<std::pair<std::string, Match>> found;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    auto match = MatchTemporary(name, base);
    if (match && match->pid != self) found.emplace_back(dir + "/" + name, *match);
  }
  for (const auto& [entry, match] : found) {
    if (!ProcessIsGone(match.pid)) continue;
    // The kind must fit the name: never follow a symlink, never remove a
    // directory that claims to be a file.
    std::error_code type_ec;
    const fs::file_status st = fs::symlink_status(entry, type_ec);
    if (type_ec) continue;
    const bool want_dir = match.kind != Kind::kTmpFile;
    if (want_dir ? !fs::is_directory(st) : !fs::is_regular_file(st)) continue;
    if (match.kind == Kind::kOldDir) {
      std::error_code exists_ec;
      if (!fs::exists(fs::symlink_status(target, exists_ec)) &&
          ::rename(entry.c_str(), target.c_str()) == 0) {
        result.restored.push_back(entry);
        continue;
      }
    }
    std::error_code rm_ec;
    if (want_dir) {
      fs::remove_all(entry, rm_ec);
    } else {
      fs::remove(entry, rm_ec);
    }
    if (!rm_ec) result.removed.push_back(entry);
  }
  return result;
}

}  // namespace alloy::formats
