// The kill test: `alloy merge` (sharded output), `alloy convert` (directory)
// and `alloy convert` to GGUF are started and killed with SIGKILL at spread,
// deterministic points of their run: during start-up and planning, while the
// shards are written, while the output is finalized, and after it completed.
// After each kill the output path must not exist or be byte-identical to an
// uninterrupted reference run; a rerun without --overwrite must then succeed
// (or say the output exists, when the killed run had completed), clean the
// dead run's temporaries and leave none of its own.
//
// The kill points are fractions of the reference run's own timeline (when its
// temporary output appeared, when its config files appeared, when it
// completed), measured by polling its output directory, so they land in the
// same phases on a fast or a slow machine. Prints one summary line.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using alloy::testing::TempDir;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Starts `binary args...` with stdout to /dev/null and stderr to `err_path`.
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::string& err_path) {
  std::vector<std::string> all = {binary};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    const int null_fd = ::open("/dev/null", O_WRONLY);
    const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (null_fd >= 0) ::dup2(null_fd, 1);
    if (err_fd >= 0) ::dup2(err_fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  REQUIRE(pid > 0);
  return pid;
}

// Waits for `pid`; its exit code, or -signal when a signal ended it.
int Wait(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    REQUIRE(errno == EINTR);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// True when the files at `a` and `b` have the same bytes.
bool SameFile(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::file_size(a, ec) != fs::file_size(b, ec) || ec) return false;
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  std::vector<char> ba(1 << 20), bb(1 << 20);
  while (fa && fb) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    if (fa.gcount() != fb.gcount() ||
        !std::equal(ba.begin(), ba.begin() + fa.gcount(), bb.begin())) {
      return false;
    }
  }
  return fa.eof() && fb.eof();
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// `a` and `b` (files, or directories of files) hold the same bytes.
bool SameOutput(const std::string& a, const std::string& b) {
  if (!fs::is_directory(a)) return fs::is_regular_file(a) && SameFile(a, b);
  const std::vector<std::string> names = Names(a);
  if (names != Names(b)) return false;
  return std::all_of(names.begin(), names.end(), [&](const std::string& n) {
    return fs::is_regular_file(a + "/" + n) && SameFile(a + "/" + n, b + "/" + n);
  });
}

bool IsTemporaryName(const std::string& name) {
  return name.find(".alloy-partial-") != std::string::npos ||
         name.find(".tmp-") != std::string::npos || name.find(".alloy-old-") != std::string::npos;
}

// alloy temporaries next to `out` and inside it.
std::vector<std::string> Temporaries(const std::string& out) {
  std::vector<std::string> found;
  for (const std::string& n : Names(fs::path(out).parent_path().string())) {
    if (IsTemporaryName(n)) found.push_back(n);
  }
  if (fs::is_directory(out)) {
    for (const std::string& n : Names(out)) {
      if (IsTemporaryName(n)) found.push_back(fs::path(out).filename().string() + "/" + n);
    }
  }
  return found;
}

enum Phase { kPlanning, kWriting, kFinalizing, kCompleted, kNumPhases };
const char* const kPhaseNames[] = {"planning", "writing", "finalizing", "completed"};

// Where a run writing `out` is, judged from the file system: the temporary
// output does not exist yet (start-up, parsing, planning), exists with only
// weight temporaries (writing), has config or finished weight files in it
// (finalizing), or the output is in place.
Phase Probe(const std::string& out) {
  if (fs::exists(out)) return kCompleted;
  const std::string base = fs::path(out).filename().string();
  Phase phase = kPlanning;
  for (const std::string& n : Names(fs::path(out).parent_path().string())) {
    if (n.rfind(base + ".tmp-", 0) == 0) phase = std::max(phase, kWriting);
    if (n.rfind(base + ".alloy-partial-", 0) != 0) continue;
    phase = std::max(phase, kWriting);
    for (const std::string& inner : Names(fs::path(out).parent_path().string() + "/" + n)) {
      if (inner.find(".tmp-") == std::string::npos) phase = kFinalizing;
    }
  }
  return phase;
}

// The reference run's timeline: seconds from spawn until the temporary
// output appeared, until finalizing began, until the output was in place.
struct Timeline {
  double writing = 0, finalizing = 0, completed = 0;
};

// Runs the job to completion, polling its output every ~0.3 ms.
Timeline RunReference(const std::string& binary, const std::vector<std::string>& args,
                      const std::string& out, const std::string& err_path) {
  Timeline t;
  const Clock::time_point start = Clock::now();
  const pid_t pid = Spawn(binary, args, err_path);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    const Phase p = Probe(out);
    const double now = Since(start);
    if (p >= kWriting && t.writing == 0) t.writing = now;
    if (p >= kFinalizing && t.finalizing == 0) t.finalizing = now;
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  t.completed = Since(start);
  INFO(ReadAll(err_path));
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(fs::exists(out));
  if (t.writing == 0) t.writing = t.completed * 0.5;
  if (t.finalizing == 0 || t.finalizing < t.writing) t.finalizing = t.writing;
  return t;
}

// When to kill: `delay` seconds after the spawn, or, with `on_finalizing`,
// `delay` seconds after the run is first seen finalizing.
struct KillPoint {
  double delay = 0;
  bool on_finalizing = false;
};

// `n_plan` points in start-up/planning and `n_write` while writing, as
// fractions of the reference timeline; `n_final` while finalizing, 0.4 ms
// apart from when that phase is first seen (it lasts only a few ms, less than
// the run-to-run jitter, so a fixed delay rarely lands in it); `n_after`
// after completion.
std::vector<KillPoint> KillPoints(const Timeline& t, int n_plan, int n_write, int n_final,
                                  int n_after) {
  std::vector<KillPoint> points;
  auto spread = [&](double from, double to, int n) {
    for (int i = 0; i < n; ++i) points.push_back({from + (to - from) * (i + 0.5) / n, false});
  };
  points.push_back({0.0, false});
  spread(0.0, t.writing, n_plan - 1);
  spread(t.writing, t.finalizing, n_write);
  for (int i = 0; i < n_final; ++i) points.push_back({0.0004 * i, true});
  for (int i = 1; i <= n_after; ++i) points.push_back({t.completed * (1.0 + 0.1 * i), false});
  return points;
}

struct Stats {
  int kills = 0;
  int phases[kNumPhases] = {};
  int corrupt = 0;
  int rerun_failures = 0;
  int stale_cleaned = 0;
  int temporaries_left = 0;
  std::map<std::string, int> by_job;
};

struct Job {
  std::string name;
  std::vector<std::string> args_without_out;
  std::string out_name;  // basename of the output (same for reference and kills)
};

void KillJob(const std::string& binary, const Job& job, const std::string& work, int n_plan,
             int n_write, int n_final, int n_after, Stats* stats) {
  const std::string ref_dir = work + "/ref-" + job.name;
  const std::string kill_dir = work + "/kill-" + job.name;
  fs::create_directories(ref_dir);
  fs::create_directories(kill_dir);
  const std::string ref = ref_dir + "/" + job.out_name;
  const std::string out = kill_dir + "/" + job.out_name;
  const std::string err = work + "/stderr.txt";
  auto args_for = [&](const std::string& path) {
    std::vector<std::string> args = job.args_without_out;
    args.insert(args.begin() + 2, path);  // `<verb> <input> <out> ...`
    return args;
  };
  const Timeline t = RunReference(binary, args_for(ref), ref, err);
  std::printf(
      "%s reference: temporary output at %.3f s, finalizing at %.3f s, complete at %.3f s\n",
      job.name.c_str(), t.writing, t.finalizing, t.completed);

  for (const KillPoint& point : KillPoints(t, n_plan, n_write, n_final, n_after)) {
    const double delay = point.delay;
    Clock::time_point start = Clock::now();
    const pid_t pid = Spawn(binary, args_for(out), err);
    int status = 0;
    if (point.on_finalizing) {
      while (Probe(out) < kFinalizing && ::waitpid(pid, &status, WNOHANG) == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      start = Clock::now();
    }
    std::this_thread::sleep_until(start + std::chrono::duration<double>(delay));
    Phase phase = kCompleted;
    if (::waitpid(pid, &status, WNOHANG) == 0) {
      phase = Probe(out);
      ::kill(pid, SIGKILL);
      Wait(pid);
    } else {
      INFO(job.name << " finished before its kill at " << delay << " s: " << ReadAll(err));
      CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    ++stats->kills;
    ++stats->phases[phase];
    ++stats->by_job[job.name];
    INFO(job.name << ": killed at " << delay << " s, in " << kPhaseNames[phase]);

    // The output is absent or complete, never partial.
    const bool existed = fs::exists(out);
    if (existed && !SameOutput(out, ref)) ++stats->corrupt;
    CHECK((!existed || SameOutput(out, ref)));

    // A rerun without --overwrite: the output exists, or it is written whole
    // and the dead run's temporaries are gone.
    const int stale = static_cast<int>(Temporaries(out).size());
    const int code = Wait(Spawn(binary, args_for(out), err));
    const std::string rerun_err = ReadAll(err);
    std::printf(
        "  %s: kill at %s%.4f s landed in %s; output %s; %d stale temporaries; rerun exit "
        "%d\n",
        job.name.c_str(), point.on_finalizing ? "finalizing + " : "", delay, kPhaseNames[phase],
        existed ? "complete" : "absent", stale, code);
    INFO("rerun: exit " << code << ": " << rerun_err);
    bool rerun_ok = false;
    if (existed) {
      rerun_ok = code == 2 && rerun_err.find("exists") != std::string::npos;
    } else {
      rerun_ok = code == 0 && SameOutput(out, ref);
      if (rerun_ok) stats->stale_cleaned += stale;
    }
    CHECK(rerun_ok);
    if (!rerun_ok) ++stats->rerun_failures;
    const std::vector<std::string> left = Temporaries(out);
    CHECK(left.empty());
    stats->temporaries_left += static_cast<int>(left.size());
    fs::remove_all(out);
  }
}

TEST_CASE("kill test: SIGKILL at any point leaves no partial output", "[reliability][kill]") {
  TempDir tmp;
  const std::string work = tmp.path();
  const std::string binary = ALLOY_BINARY;
  const Clock::time_point start = Clock::now();
  // ~46 MB bf16 models: one merge of two fine-tunes takes about 0.5-1 s on
  // 2 cores, so the kill points have room in every phase.
  const std::string gen = std::string(ALLOY_MAKE_TINY_MODELS) + " " + work +
                          "/models --layers 8 --hidden 512 --intermediate 1024 --vocab 4096 "
                          "--finetunes 2 >/dev/null";
  REQUIRE(std::system(gen.c_str()) == 0);
  const std::string models = work + "/models";
  {
    std::ofstream recipe(work + "/r.yaml");
    recipe << "merge_method: task_arithmetic\n"
              "base_model: "
           << models
           << "/llama-base\n"
              "models:\n"
              "  - model: "
           << models
           << "/llama-ft1\n"
              "    parameters: {weight: 0.6}\n"
              "  - model: "
           << models
           << "/llama-ft2\n"
              "    parameters: {weight: 0.4}\n"
              "dtype: bfloat16\n";
  }
  const std::vector<Job> jobs = {
      {"merge", {"merge", work + "/r.yaml", "--out-shard-size", "8MB", "-q"}, "out"},
      {"convert",
       {"convert", models + "/llama-base", "--dtype", "f32", "--out-shard-size", "24MB", "-q"},
       "out"},
      {"gguf", {"convert", models + "/llama-base", "--dtype", "f16", "-q"}, "out.gguf"},
  };
  Stats stats;
  KillJob(binary, jobs[0], work, 5, 12, 4, 3, &stats);
  KillJob(binary, jobs[1], work, 1, 3, 2, 1, &stats);
  KillJob(binary, jobs[2], work, 1, 3, 0, 1, &stats);

  std::printf(
      "kill test: %d kills (merge %d, convert %d, gguf %d); landed in planning %d, "
      "writing %d, finalizing %d, after completion %d; corrupt outputs %d; failed reruns "
      "%d; stale temporaries cleaned by reruns %d; temporaries left %d; %.1f s\n",
      stats.kills, stats.by_job["merge"], stats.by_job["convert"], stats.by_job["gguf"],
      stats.phases[kPlanning], stats.phases[kWriting], stats.phases[kFinalizing],
      stats.phases[kCompleted], stats.corrupt, stats.rerun_failures, stats.stale_cleaned,
      stats.temporaries_left, Since(start));
  std::fflush(stdout);
  CHECK(stats.kills >= 20);
  CHECK(stats.corrupt == 0);
  CHECK(stats.rerun_failures == 0);
  CHECK(stats.temporaries_left == 0);
}

}  // namespace
