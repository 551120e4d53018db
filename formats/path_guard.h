// Where a file found inside an input directory may lead. A model or adapter
// directory is untrusted: its `model.safetensors`, shards, `config.json` or
// `tokenizer.json` may be symbolic links, and a link to `/etc/passwd` or to
// another user's files must not be read or copied into an output just
// because a directory named it. So a file reached through a model directory
// must resolve (every link followed) to a place inside that directory, unless
// the user allowed any target (`--follow-symlinks`).
//
// "Inside" is the directory itself, except for a Hugging Face hub-cache
// snapshot (`<cache>/models--org--name/snapshots/<sha>`, checkpoint-formats.md
// §2.5), whose files are links into `../../blobs/`: there it is the repo
// folder `models--org--name`.
//
// A path the user names directly (a `.safetensors` file argument) is not
// checked: only what a directory names is.
//
// Thread safety: pure functions (they read the file system).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/status.h"

namespace alloy::formats {

enum class SymlinkPolicy : uint8_t {
  kStayInside,  // links must resolve inside the model's directory (the default)
  kFollow,      // follow links anywhere (--follow-symlinks)
};

// The canonical folder the files of directory `dir` must resolve into: the
// repo folder for a path inside a hub-cache snapshot, else `dir` itself.
// `dir` unchanged when it cannot be resolved.
std::string ContainmentRoot(const std::string& dir);

// OK when `policy` is kFollow, when `path` does not exist or is a dangling
// link (the caller reports the missing file), or when `path` resolves inside
// ContainmentRoot(dir). Else kInvalidArgument "<path>: symlink leads outside
// the model directory <root> (to <target>); pass --follow-symlinks to read it
// anyway".
Status CheckInsideDirectory(const std::string& dir, const std::string& path, SymlinkPolicy policy);

// CheckInsideDirectory for `dir + "/" + name` of each name; the first refusal.
Status CheckFilesInsideDirectory(const std::string& dir, const std::vector<std::string>& names,
                                 SymlinkPolicy policy);

}  // namespace alloy::formats
