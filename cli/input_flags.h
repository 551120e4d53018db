// `--follow-symlinks`, shared by every command that reads models or adapters:
// by default a file of an input directory that is a symlink leading outside
// the directory is refused (formats/path_guard.h); the flag follows it.
#pragma once

#include <CLI/CLI.hpp>

#include "formats/path_guard.h"

namespace alloy::cli {

// Adds the flag to `cmd`, bound to `follow`.
inline CLI::Option* AddFollowSymlinksFlag(CLI::App* cmd, bool& follow) {
  return cmd->add_flag("--follow-symlinks", follow,
                       "Read files of input directories (weights, config.json, tokenizer and "
                       "adapter files) even when they are symlinks leading outside the "
                       "directory; by default such a link is refused (a hub-cache snapshot's "
                       "links into its blobs/ are always read)");
}

inline formats::SymlinkPolicy SymlinkPolicyOf(bool follow) {
  return follow ? formats::SymlinkPolicy::kFollow : formats::SymlinkPolicy::kStayInside;
}

}  // namespace alloy::cli
