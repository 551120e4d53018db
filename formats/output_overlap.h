// CheckOutputOutsideInputs: refuses an output path that overlaps an input.
//
// Inputs are read through mmap (or pread) while the output is written; an
// output that is an input, lies inside one, or contains one would truncate,
// replace or (with --overwrite) delete files still being read. Every job that
// writes a model calls this once, before anything is written.
//
// Paths are compared component by component after std::filesystem's
// weakly_canonical: symlinks in the existing part of a path are resolved, and
// `.`, `..` and repeated or trailing `/` are removed, so `out -> model` (a
// symlink), `model/../model/sub` and `model/` are all caught. `a/model2` is
// not inside `a/model`.
//
// Thread safety: a pure function of the file system.
#pragma once

#include <string>
#include <vector>

#include "formats/status.h"

namespace alloy::formats {

// OK when `output` neither is, nor contains, nor lies inside any of `inputs`
// (files or directories; empty entries are ignored). Fails with
// kInvalidArgument naming both paths otherwise, and with kIoError when a path
// cannot be resolved (e.g. a permission error on a parent directory).
Status CheckOutputOutsideInputs(const std::string& output, const std::vector<std::string>& inputs);

}  // namespace alloy::formats
