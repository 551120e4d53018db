#include "formats/model_ref.h"

#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "formats/file_util.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;

// Built by appending: `"'" + std::string(s)` trips GCC 12's -Wrestrict false
// positive (PR 105651).
std::string Quote(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

bool IsVarStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsVarChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// `~` (alone or before '/') becomes $HOME; `$VAR` and `${VAR}` become the
// variable's value. Unset variables stay as written, like Python's
// os.path.expanduser(os.path.expandvars(...)) that huggingface_hub uses.
std::string ExpandPath(std::string_view value, const GetEnvFn& getenv) {
  std::string out;
  size_t i = 0;
  while (i < value.size()) {
    if (value[i] != '$') {
      out += value[i++];
      continue;
    }
    const bool braced = i + 1 < value.size() && value[i + 1] == '{';
    const size_t start = i + (braced ? 2 : 1);
    size_t end = start;
    if (end < value.size() && IsVarStart(value[end])) {
      while (end < value.size() && IsVarChar(value[end])) ++end;
    }
    if (end == start || (braced && (end >= value.size() || value[end] != '}'))) {
      out += value[i++];
      continue;
    }
    const std::string var(value.substr(start, end - start));
    const size_t stop = braced ? end + 1 : end;
    const char* v = getenv(var.c_str());
    if (v != nullptr) {
      out += v;
    } else {
      out += value.substr(i, stop - i);
    }
    i = stop;
  }
  if (!out.empty() && out[0] == '~' && (out.size() == 1 || out[1] == '/')) {
    const char* home = getenv("HOME");
    if (home != nullptr && *home != '\0') out = std::string(home) + out.substr(1);
  }
  return out;
}

const char* NonEmpty(const GetEnvFn& getenv, const char* name) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

bool IsCommitSha(std::string_view s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
  }
  return true;
}

// huggingface_hub's validate_repo_id, offline subset.
Status ValidateRepoId(std::string_view ref, std::string_view repo) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(Quote(ref) +
                                   " is neither an existing path nor a valid Hugging Face repo "
                                   "id (org/name[@revision]): " +
                                   std::string(why));
  };
  if (repo.find("--") != std::string_view::npos) return bad("'--' is not allowed");
  if (repo.find("..") != std::string_view::npos) return bad("'..' is not allowed");
  if (repo.size() >= 4 && repo.substr(repo.size() - 4) == ".git") {
    return bad("must not end in '.git'");
  }
  const size_t slash = repo.find('/');
  if (slash != std::string_view::npos && repo.find('/', slash + 1) != std::string_view::npos) {
    return bad("at most one '/' is allowed");
  }
  std::vector<std::string_view> parts = {repo.substr(0, slash)};
  if (slash != std::string_view::npos) parts.push_back(repo.substr(slash + 1));
  for (std::string_view part : parts) {
    if (part.empty() || part.size() > 96) return bad("each part must be 1 to 96 characters");
    for (char c : part) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
        return bad("only letters, digits, '_', '.' and '-' are allowed");
      }
    }
    const char first = part.front();
    const char last = part.back();
    if (first == '-' || first == '.' || last == '-' || last == '.') {
      return bad("a part must not start or end with '-' or '.'");
    }
  }
  return Status::OK();
}

// A revision names a file under refs/, so it must not climb out of it.
Status ValidateRevision(std::string_view ref, std::string_view revision) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(Quote(ref) + ": invalid revision " + Quote(revision) + ": " +
                                   std::string(why));
  };
  if (revision.empty()) return bad("empty");
  if (revision.find('\\') != std::string_view::npos ||
      revision.find('\0') != std::string_view::npos) {
    return bad("contains a backslash or NUL");
  }
  size_t start = 0;
  while (true) {
    const size_t slash = revision.find('/', start);
    const std::string_view part = revision.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty() || part == "." || part == "..") return bad("bad path component");
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Status::OK();
}

// Every entry of the snapshot must resolve (a dangling link is an
// interrupted download) to a place inside the repo folder.
Status ValidateSnapshot(const std::string& repo_dir, const std::string& snapshot) {
  std::error_code ec;
  const fs::path repo_real = fs::canonical(repo_dir, ec);
  if (ec) return Status::IoError("cannot resolve " + repo_dir + ": " + ec.message());
  const std::string prefix = repo_real.string() + "/";
  fs::recursive_directory_iterator it(snapshot, ec);
  if (ec) return Status::IoError("cannot list " + snapshot + ": " + ec.message());
  for (fs::recursive_directory_iterator end; it != end; it.increment(ec)) {
    if (ec) return Status::IoError("cannot list " + snapshot + ": " + ec.message());
    const fs::path& entry = it->path();
    std::error_code link_ec;
    if (!fs::is_symlink(it->symlink_status(link_ec))) continue;
    const fs::path target = fs::read_symlink(entry, link_ec);
    std::error_code real_ec;
    const fs::path real = fs::canonical(entry, real_ec);
    if (real_ec) {
      return Status::Corrupt(entry.string() + ": cache entry incomplete: dangling symlink to " +
                             target.string() + " (interrupted download? fetch the model again)");
    }
    if (real.string().rfind(prefix, 0) != 0) {
      return Status::Corrupt(entry.string() +
                             ": cache entry corrupt: symlink escapes the repo folder " + repo_dir +
                             " (resolves to " + real.string() + ")");
    }
  }
  if (ec) return Status::IoError("cannot list " + snapshot + ": " + ec.message());
  return Status::OK();
}

}  // namespace

std::vector<std::string> HubCacheRoots(const GetEnvFn& getenv) {
  std::vector<std::string> roots;
  auto add = [&](std::string root) {
    root = StripTrailingSlashes(std::move(root));
    for (const std::string& r : roots) {
      if (r == root) return;
    }
    roots.push_back(std::move(root));
  };
  if (const char* v = NonEmpty(getenv, "HF_HUB_CACHE")) add(ExpandPath(v, getenv));
  if (const char* v = NonEmpty(getenv, "HUGGINGFACE_HUB_CACHE")) add(ExpandPath(v, getenv));
  if (const char* v = NonEmpty(getenv, "HF_HOME"))
    add(StripTrailingSlashes(ExpandPath(v, getenv)) + "/hub");
  if (const char* v = NonEmpty(getenv, "XDG_CACHE_HOME")) {
    add(StripTrailingSlashes(ExpandPath(v, getenv)) + "/huggingface/hub");
  }
  if (const char* home = NonEmpty(getenv, "HOME")) {
    add(StripTrailingSlashes(home) + "/.cache/huggingface/hub");
  }
  return roots;
}

Result<std::string> ResolveModelReference(std::string_view ref, const GetEnvFn& getenv) {
  if (ref.empty()) return Status::InvalidArgument("empty model reference");
  const std::string ref_str(ref);
  struct stat st;
  if (::stat(ref_str.c_str(), &st) == 0) return ref_str;
  const char first = ref.front();
  if (first == '/' || first == '.' || first == '~') {
    return Status::NotFound(ref_str + ": no such file or directory");
  }

  const size_t at = ref.find('@');
  const std::string_view repo = ref.substr(0, at);
  const std::string_view revision = at == std::string_view::npos ? "main" : ref.substr(at + 1);
  ALLOY_RETURN_IF_ERROR(ValidateRepoId(ref, repo));
  ALLOY_RETURN_IF_ERROR(ValidateRevision(ref, revision));

  std::string folder = "models--";
  for (char c : repo) {
    if (c == '/') {
      folder += "--";
    } else {
      folder += c;
    }
  }

  const std::vector<std::string> roots = HubCacheRoots(getenv);
  if (roots.empty()) {
    return Status::NotFound("model '" + ref_str +
                            "' is not a local path, and no Hugging Face cache is configured "
                            "(HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, XDG_CACHE_HOME and "
                            "HOME are all unset)");
  }
  std::vector<std::string> looked;
  for (const std::string& root : roots) {
    const std::string repo_dir = root + "/" + folder;
    if (!IsDirectory(repo_dir)) {
      looked.push_back(repo_dir + " (absent)");
      continue;
    }
    std::string commit(revision);
    const bool from_ref = !IsCommitSha(revision);
    if (from_ref) {
      const std::string ref_path = repo_dir + "/refs/" + std::string(revision);
      if (!IsRegularFile(ref_path)) {
        looked.push_back(ref_path + " (absent)");
        continue;
      }
      ALLOY_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(ref_path, 4096));
      const size_t b = text.find_first_not_of(" \t\r\n");
      const size_t e = text.find_last_not_of(" \t\r\n");
      commit = b == std::string::npos ? "" : text.substr(b, e - b + 1);
      if (!IsCommitSha(commit)) {
        return Status::Corrupt(ref_path +
                               ": cache entry corrupt: expected a 40-character lowercase hex "
                               "commit sha, got '" +
                               commit.substr(0, 64) + "'");
      }
    }
    const std::string snapshot = repo_dir + "/snapshots/" + commit;
    if (!IsDirectory(snapshot)) {
      if (from_ref) {
        return Status::Corrupt(snapshot + ": cache entry incomplete: snapshot missing (refs/" +
                               std::string(revision) + " points to " + commit +
                               "; fetch the model again)");
      }
      looked.push_back(snapshot + " (absent)");
      continue;
    }
    ALLOY_RETURN_IF_ERROR(ValidateSnapshot(repo_dir, snapshot));
    return snapshot;
  }
  std::string msg = "model '" + ref_str +
                    "' not found: it is not a local path and not in the Hugging Face cache "
                    "(looked in: ";
  for (size_t i = 0; i < looked.size(); ++i) {
    if (i) msg += "; ";
    msg += looked[i];
  }
  msg += "). alloy works offline: download it first, e.g. `huggingface-cli download " +
         std::string(repo) + "`";
  return Status::NotFound(std::move(msg));
}

Result<std::string> ResolveModelReference(std::string_view ref) {
  return ResolveModelReference(ref,
                               [](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace alloy::formats
