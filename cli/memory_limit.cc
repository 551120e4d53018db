#include "cli/memory_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "formats/model_writer.h"

namespace alloy::cli {
namespace {

using formats::ErrorCode;
using formats::Status;

uint64_t g_applied = 0;

// Per thread (workers plus the main one): glibc's default 8 MiB stack.
constexpr uint64_t kStackAllowance = uint64_t{8} << 20;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Mib(uint64_t bytes) {
  char buf[64];
  if (bytes >= (uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f MiB", static_cast<double>(bytes) / (1 << 20));
  }
  return buf;
}

}  // namespace

formats::Result<std::optional<uint64_t>> ParseMemoryLimit(const std::string& text) {
  const std::string lower = Lower(text);
  if (lower == "none" || lower == "off" || lower == "0") return std::optional<uint64_t>();
  formats::Result<uint64_t> bytes = formats::ParseByteSize(text);
  if (!bytes.ok()) {
    return Status(ErrorCode::kInvalidArgument,
                  "--memory-limit: " + bytes.status().message() +
                      " (examples: 8GiB, 512MiB, 16GB; 'none' for no limit)");
  }
  if (*bytes < kMinMemoryLimit) {
    return Status(ErrorCode::kInvalidArgument,
                  "--memory-limit " + text + " is below the smallest usable limit of " +
                      Mib(kMinMemoryLimit));
  }
  return std::optional<uint64_t>(*bytes);
}

Status ApplyMemoryLimit(uint64_t bytes) {
  struct rlimit lim {};
  if (::getrlimit(RLIMIT_DATA, &lim) != 0) {
    return Status(ErrorCode::kIoError,
                  std::string("--memory-limit: getrlimit failed: ") + std::strerror(errno));
  }
  const uint64_t threads = std::max(1u, std::thread::hardware_concurrency()) + uint64_t{1};
  uint64_t soft = bytes + threads * kStackAllowance;
  if (lim.rlim_max != RLIM_INFINITY) soft = std::min<uint64_t>(soft, lim.rlim_max);
  lim.rlim_cur = static_cast<rlim_t>(soft);
  if (::setrlimit(RLIMIT_DATA, &lim) != 0) {
    return Status(ErrorCode::kIoError,
                  std::string("--memory-limit: setrlimit failed: ") + std::strerror(errno));
  }
  g_applied = bytes;
  return Status::OK();
}

uint64_t AppliedMemoryLimit() { return g_applied; }

std::string OutOfMemoryMessage() {
  if (g_applied == 0) {
    return "out of memory (no --memory-limit was set: the machine ran out; lower --threads, "
           "or set --memory-limit to fail earlier)";
  }
  return "out of memory: the --memory-limit of " + Mib(g_applied) +
         " was reached; raise it, or lower --threads (temporary output was removed)";
}

}  // namespace alloy::cli
