// Shared pieces of the cli tests: a command's exit code and output, run in
// process through its Run* function or as the built binary (ALLOY_BINARY).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "examples/tiny_models.h"
#include "formats/model_dir.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli::testing_support {

// True in ASan/UBSan/TSan builds. Their runtimes reserve terabytes of address
// space for shadow memory, so tests that cap address space or data size
// (ulimit -v, --memory-limit) cannot run there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizedBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitizedBuild = true;
#else
inline constexpr bool kSanitizedBuild = false;
#endif
#else
inline constexpr bool kSanitizedBuild = false;
#endif

struct Run {
  int code = -1;
  std::string out, err;
};

// Calls run(options, out, err) (RunMerge, RunConvert, ...) and captures it.
template <typename RunFn, typename Options>
Run RunCommand(RunFn run, const Options& options) {
  std::ostringstream out, err;
  Run r;
  r.code = run(options, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// Runs `alloy <args>`; stdout and stderr go to files in `dir`.
inline Run Binary(const std::string& args, const alloy::testing::TempDir& dir) {
  const std::string cmd = std::string(ALLOY_BINARY) + " " + args + " >" +
                          dir.Join("stdout.txt") + " 2>" + dir.Join("stderr.txt");
  const int status = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = alloy::testing::ReadFileBytes(dir.Join("stdout.txt"));
  r.err = alloy::testing::ReadFileBytes(dir.Join("stderr.txt"));
  return r;
}

// The "tiny" llama preset (fine-tune `index`; 0 is the base) written to
// dir/name; returns its path.
inline std::string TinyLlama(const alloy::testing::TempDir& dir, const std::string& name,
                             int index = 0) {
  alloy::examples::TinyModelSpec spec =
      *alloy::examples::TinyModelPreset("tiny", alloy::examples::Family::kLlama);
  spec.model_index = index;
  REQUIRE(alloy::examples::WriteTinyModel(spec, dir.Join(name)).ok());
  return dir.Join(name);
}

// Single-quoted for the shell.
inline std::string Q(const std::string& s) { return "'" + s + "'"; }

// The raw bytes of `tensor` in the model at `dir`.
inline std::string TensorBytes(const std::string& dir, const std::string& tensor) {
  auto src = formats::OpenModel(dir);
  REQUIRE(src.ok());
  const formats::TensorInfo* info = (*src)->Find(tensor);
  REQUIRE(info != nullptr);
  std::string bytes(info->nbytes, '\0');
  REQUIRE((*src)->Read(*info, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes.data()),
                                                     bytes.size()))
              .ok());
  return bytes;
}

}  // namespace alloy::cli::testing_support
