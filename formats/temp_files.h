// Temporary output names, and the clean-up of those a dead alloy process
// left behind.
//
// Every output alloy writes first exists under a temporary sibling name in
// the output's own directory (`<name>` is the output's last path component):
//
//   <name>.tmp-<pid>-<n>              a single file (PlannedFile: safetensors, GGUF)
//   <name>.alloy-partial-<pid>[-<k>]  a model directory (ModelDirWriter)
//   <name>.alloy-old-<pid>            the previous output, moved aside by --overwrite
//
// A process killed with SIGKILL (or a crash, or a power cut) leaves them
// there. RemoveStaleTemporaries() removes those whose process is gone: the
// pid in the name is not ours and kill(pid, 0) fails with ESRCH. A live
// process's temporaries (including another user's: EPERM) and every name that
// does not match these patterns exactly are never touched. An `.alloy-old-`
// directory is renamed back to `<name>` when `<name>` does not exist (the
// process died between moving the old output aside and installing the new
// one), and removed otherwise.
//
// NOTE: pids are only meaningful inside one pid namespace; two containers
// writing to one shared directory can see each other's live pids as gone.
//
// Thread safety: pure functions of the file system; concurrent clean-ups of
// one directory are safe (a lost race is ignored).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace alloy::formats {

// "<path>.tmp-<pid>-<n>".
std::string TempFileName(const std::string& path, int64_t pid, uint64_t n);
// "<out_dir>.alloy-partial-<pid>" (no trailing slash on `out_dir`).
std::string PartialDirName(const std::string& out_dir, int64_t pid);
// "<out_dir>.alloy-old-<pid>".
std::string OldDirName(const std::string& out_dir, int64_t pid);

// True when no process `pid` exists (kill(pid, 0) fails with ESRCH).
bool ProcessIsGone(int64_t pid);

struct StaleCleanup {
  std::vector<std::string> removed;   // paths removed
  std::vector<std::string> restored;  // `.alloy-old-` directories renamed back to the output
};

// Cleans the stale temporaries of `path` (a file or directory output, which
// need not exist) in its directory, as described above. Best effort: entries
// that cannot be removed are left as they are; never fails.
StaleCleanup RemoveStaleTemporaries(const std::string& path);

}  // namespace alloy::formats
