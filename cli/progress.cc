#include "cli/progress.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

namespace alloy::cli {

ProgressBar::ProgressBar(std::string label, bool enabled, std::string unit)
    : label_(std::move(label)),
      enabled_(enabled && ::isatty(STDERR_FILENO) == 1),
      unit_(std::move(unit)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(uint64_t done, uint64_t total, std::string_view item) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  std::string shown(item.substr(0, 40));
  if (unit_.empty()) {
    std::fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %s/%s %s/s ETA %.0fs %s", label_.c_str(),
                 bar.c_str(), frac * 100, HumanBytes(static_cast<double>(done)).c_str(),
                 HumanBytes(static_cast<double>(total)).c_str(), HumanBytes(rate).c_str(), eta,
                 shown.c_str());
  } else {
    std::fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %llu/%llu %s, %.1f/s ETA %.0fs %s",
                 label_.c_str(), bar.c_str(), frac * 100, static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(total), unit_.c_str(), rate, eta, shown.c_str());
  }
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (enabled_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  drawn_ = false;
}

std::string GroupedInt(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string TimeAndMemory(double seconds) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "in %.2f s, peak RSS %s", seconds,
                HumanBytes(static_cast<double>(PeakRssBytes())).c_str());
  return buf;
}

uint64_t PeakRssBytes() {
  struct rusage usage;
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace alloy::cli
