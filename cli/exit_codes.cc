#include "cli/exit_codes.h"

namespace alloy::cli {

int ToInt(ExitCode code) { return static_cast<int>(code); }

ExitCode ExitCodeFor(const formats::Status& status) {
  switch (status.code()) {
    case formats::ErrorCode::kOk:
      return ExitCode::kOk;
    case formats::ErrorCode::kIoError:
      return ExitCode::kIoFailure;
    case formats::ErrorCode::kCorrupt:
    case formats::ErrorCode::kNotFound:
    case formats::ErrorCode::kUnsupported:
    case formats::ErrorCode::kInvalidArgument:
      return ExitCode::kBadInput;
  }
  return ExitCode::kInternal;
}

int ReportError(const formats::Status& status, std::ostream& err) {
  err << "alloy: error: " << status.message() << "\n";
  return ToInt(ExitCodeFor(status));
}

void ReportWarnings(const std::vector<std::string>& warnings, std::ostream& err) {
  for (const std::string& w : warnings) {
    if (w.find(": warning: ") != std::string::npos) {
      err << w << "\n";
    } else {
      err << "alloy: warning: " << w << "\n";
    }
  }
}

int ReportFailure(const formats::Status& status, const std::vector<std::string>& warnings,
                  bool interrupted, std::ostream& err) {
  ReportWarnings(warnings, err);
  if (interrupted) {
    err << "alloy: interrupted; the partial output was removed\n";
    return ToInt(ExitCode::kInterrupted);
  }
  return ReportError(status, err);
}

}  // namespace alloy::cli
