// Process exit codes, and the one place that maps alloy's ErrorCode to them.
//   0 ok · 1 internal error · 2 bad input (file, recipe, arguments) · 3 I/O failure
//   130 interrupted (Ctrl-C; partial output removed)
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "formats/status.h"

namespace alloy::cli {

enum class ExitCode : int {
  kOk = 0,
  kInternal = 1,
  kBadInput = 2,
  kIoFailure = 3,
  kInterrupted = 130,
};

int ToInt(ExitCode code);

// kIoError → 3; kOk → 0; everything else (corrupt, not found, unsupported,
// invalid argument) → 2.
ExitCode ExitCodeFor(const formats::Status& status);

// Prints "alloy: error: <message>" to `err` and returns the exit code.
int ReportError(const formats::Status& status, std::ostream& err);

// Prints each warning on its own line: as it is when it already says
// "<file>:<line>:<col>: warning: ...", else after "alloy: warning: ".
void ReportWarnings(const std::vector<std::string>& warnings, std::ostream& err);

// The end of a failed merge job: its warnings, then "interrupted" (exit 130)
// when `interrupted`, else the error.
int ReportFailure(const formats::Status& status, const std::vector<std::string>& warnings,
                  bool interrupted, std::ostream& err);

}  // namespace alloy::cli
