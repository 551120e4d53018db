// ProgressBar: a one-line terminal progress display on stderr (bytes, rate,
// ETA, current item), redrawn at most 10 times a second. Draws nothing when
// disabled or when stderr is not a terminal. Also: human-readable sizes and
// the process's peak resident memory.
//
// Thread safety: call from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "formats/file_util.h"

namespace alloy::cli {

class ProgressBar {
 public:
  // `unit`: "" counts bytes (sizes and MB/s); otherwise done/total are counts
  // of `unit` ("modules").
  ProgressBar(std::string label, bool enabled, std::string unit = "");
  ~ProgressBar();
  void Update(uint64_t done, uint64_t total, std::string_view item);
  // Clears the line.
  void Finish();

 private:
  std::string label_;
  bool enabled_;
  std::string unit_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

using formats::HumanBytes;
// "1,235,814,400"
std::string GroupedInt(uint64_t n);
// Peak resident set size of this process, in bytes.
uint64_t PeakRssBytes();
// "in 1.23 s, peak RSS 45.6 MB": the end of a command's summary line.
std::string TimeAndMemory(double seconds);

}  // namespace alloy::cli
