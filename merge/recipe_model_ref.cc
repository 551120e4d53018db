#include "merge/recipe_model_ref.h"

#include <algorithm>

namespace alloy::merge {
namespace {

using formats::Status;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits `part` at its `@` into path and revision (§2.2: at most one `@`).
Status SplitRevision(std::string_view part, std::string_view whole, std::string* path,
                     std::string* revision) {
  const size_t at = part.find('@');
  if (at != std::string_view::npos && part.find('@', at + 1) != std::string_view::npos) {
    return Status::InvalidArgument("model reference '" + std::string(whole) +
                                   "' has more than one '@' (write `path@revision`)");
  }
  *path = std::string(Trim(part.substr(0, at)));
  *revision = at == std::string_view::npos ? std::string() : std::string(Trim(part.substr(at + 1)));
  if (path->empty()) {
    return Status::InvalidArgument("model reference '" + std::string(whole) +
                                   "' has an empty path");
  }
  if (at != std::string_view::npos && revision->empty()) {
    return Status::InvalidArgument("model reference '" + std::string(whole) +
                                   "' has an empty revision after '@'");
  }
  return Status::OK();
}

std::string Slashes(std::string s) {
  std::replace(s.begin(), s.end(), '\\', '/');
  return s;
}

bool MapOne(std::string& path, const std::vector<std::pair<std::string, std::string>>& map) {
  size_t best = map.size();
  size_t best_len = 0;
  for (size_t i = 0; i < map.size(); ++i) {
    const std::string from = Slashes(map[i].first);
    if (from.empty() || path.compare(0, from.size(), from) != 0) continue;
    const bool boundary =
        path.size() == from.size() || from.back() == '/' || path[from.size()] == '/';
    if (boundary && from.size() > best_len) {
      best = i;
      best_len = from.size();
    }
  }
  if (best == map.size()) return false;
  path = map[best].second + path.substr(best_len);
  return true;
}

std::string NormalizePath(std::string_view raw) {
  std::string s = Slashes(std::string(raw));
  std::string out;
  for (char c : s) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out += c;
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  while (out.size() > 2 && out.compare(0, 2, "./") == 0) out.erase(0, 2);
  return out;
}

}  // namespace

formats::Result<ModelRef> ParseModelRef(std::string_view text) {
  const std::string_view trimmed = Trim(text);
  if (trimmed.empty()) return Status::InvalidArgument("empty model reference");
  ModelRef ref;
  ref.text = std::string(trimmed);
  const size_t plus = trimmed.find('+');
  if (plus != std::string_view::npos && trimmed.find('+', plus + 1) != std::string_view::npos) {
    return Status::InvalidArgument("can't parse model reference '" + ref.text +
                                   "': more than one '+' (write `model+lora`)");
  }
  ALLOY_RETURN_IF_ERROR(SplitRevision(trimmed.substr(0, plus), trimmed, &ref.path, &ref.revision));
  if (plus != std::string_view::npos) {
    ALLOY_RETURN_IF_ERROR(
        SplitRevision(trimmed.substr(plus + 1), trimmed, &ref.lora_path, &ref.lora_revision));
  }
  return ref;
}

void ApplyPathMap(ModelRef& ref, const std::vector<std::pair<std::string, std::string>>& map) {
  ref.path = Slashes(std::move(ref.path));
  MapOne(ref.path, map);
  if (ref.has_lora()) {
    ref.lora_path = Slashes(std::move(ref.lora_path));
    MapOne(ref.lora_path, map);
  }
}

std::string ModelKey(const ModelRef& ref) {
  std::string key = NormalizePath(ref.path);
  if (!ref.revision.empty()) key += "@" + ref.revision;
  if (ref.has_lora()) {
    key += "+" + NormalizePath(ref.lora_path);
    if (!ref.lora_revision.empty()) key += "@" + ref.lora_revision;
  }
  return key;
}

}  // namespace alloy::merge
