#include "formats/output_overlap.h"

#include <filesystem>

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;

// `path` absolute, with symlinks resolved as far as it exists, normalized and
// without a trailing '/'.
Result<std::string> Resolve(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (!ec) abs = fs::weakly_canonical(abs, ec);
  if (ec) return Status::IoError("cannot resolve " + path + ": " + ec.message());
  std::string s = abs.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// True when `inner` is `outer` or lies below it (whole components only).
bool IsWithin(const std::string& inner, const std::string& outer) {
  if (inner == outer || outer == "/") return true;
  return inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
         inner[outer.size()] == '/';
}

std::string Spelled(const std::string& given, const std::string& resolved) {
  std::string trimmed = given;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  return trimmed == resolved ? given : given + " (" + resolved + ")";
}

}  // namespace

Status CheckOutputOutsideInputs(const std::string& output, const std::vector<std::string>& inputs) {
  if (output.empty()) return Status::OK();
  ALLOY_ASSIGN_OR_RETURN(const std::string out, Resolve(output));
  for (const std::string& input : inputs) {
    if (input.empty()) continue;
    ALLOY_ASSIGN_OR_RETURN(const std::string in, Resolve(input));
    const char* relation = nullptr;
    if (out == in) {
      relation = " is the input ";
    } else if (IsWithin(out, in)) {
      relation = " is inside the input ";
    } else if (IsWithin(in, out)) {
      relation = " contains the input ";
    } else {
      continue;
    }
    return Status::InvalidArgument(
        "output " + Spelled(output, out) + relation + Spelled(input, in) +
        "; alloy reads its inputs while it writes, so writing there would corrupt or delete "
        "them: choose an output path outside every input");
  }
  return Status::OK();
}

}  // namespace alloy::formats
