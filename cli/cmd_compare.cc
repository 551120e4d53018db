#include "cli/cmd_compare.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>

#include "cli/exit_codes.h"
#include "cli/input_flags.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "formats/file_util.h"
#include "merge/compare.h"

namespace alloy::cli {
namespace {

using formats::Status;
using merge::CompareReport;
using merge::MetricDef;
using merge::TensorSums;

// "%.5g" ("%.4g" for table cells, which stay within 9 columns), or "–" for
// an undefined figure.
std::string Fmt(double v, int digits = 5) {
  if (std::isnan(v)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
  return buf;
}

// Pads to `width` display columns (the dash is one column, three bytes).
std::string Pad(const std::string& s, size_t width, bool left = false) {
  size_t cols = 0;
  for (unsigned char c : s) cols += (c & 0xC0) != 0x80;
  const std::string fill(cols < width ? width - cols : 0, ' ');
  return left ? s + fill : fill + s;
}

// Writes `contents` to path.tmp, then renames it over `path`: a reader never
// sees a half-written report.
Status WriteReportFile(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".alloy-tmp";
  Status st = formats::WriteWholeFile(tmp, contents, /*fsync=*/false);
  if (!st.ok()) return st;
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    return formats::ErrnoStatus("rename into place", path, e);
  }
  return Status::OK();
}

struct Colors {
  bool on = false;
  // t in [0, 1], 1 = the best end of the shown values.
  std::string Wrap(const std::string& text, double t) const {
    if (!on || std::isnan(t)) return text;
    const char* code = t < 0.2 ? "31" : t < 0.5 ? "33" : "32";
    return std::string("\033[") + code + "m" + text + "\033[0m";
  }
};

// A colour position for v among [lo, hi] in the metric's "better" direction.
double Goodness(const MetricDef& m, double v, double lo, double hi) {
  if (m.better == 0 || std::isnan(v) || !(hi > lo)) return std::nan("");
  const double t = (v - lo) / (hi - lo);
  return m.better > 0 ? t : 1 - t;
}

void PrintWholeModel(const CompareReport& r, const TensorSums& all, std::ostream& out) {
  size_t width = 0;
  for (const MetricDef& m : r.metrics) width = std::max(width, m.label.size());
  out << "whole model:\n";
  for (const MetricDef& m : r.metrics) {
    out << "  " << Pad(m.label, width + 2, true);
    for (size_t s = 0; s < r.SeriesCount(m.series); ++s) {
      out << "  " << r.SeriesLabel(m.series, s) << " " << Pad(Fmt(m.value(all, s)), 10, true);
    }
    out << "\n";
  }
}

void PrintLayerTable(const CompareReport& r, const MetricDef& m, size_t series, const Colors& colors,
                     std::ostream& out) {
  const std::vector<merge::CompareCell> cells = merge::AggregateCells(r);
  std::vector<bool> kind_used(merge::kNumModuleKinds, false);
  std::map<int64_t, std::map<int, double>> grid;
  double lo = INFINITY, hi = -INFINITY;
  for (const merge::CompareCell& c : cells) {
    const double v = m.value(c.sums, series);
    kind_used[static_cast<size_t>(c.kind)] = true;
    grid[c.layer][static_cast<int>(c.kind)] = v;
    if (!std::isnan(v)) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  const char* direction = m.better > 0 ? "higher = more alike" : m.better < 0 ? "lower = more alike" : "";
  out << "\n" << m.label << " " << r.SeriesLabel(m.series, series) << " by layer and module"
      << (*direction ? std::string(" (") + direction + ")" : "") << ":\n";
  constexpr size_t kCell = 9;
  out << Pad("layer", 6, true);
  for (int k = 0; k < merge::kNumModuleKinds; ++k) {
    if (kind_used[static_cast<size_t>(k)]) {
      out << " " << Pad(std::string(merge::ModuleKindName(static_cast<merge::ModuleKind>(k))), kCell);
    }
  }
  out << "\n";
  for (const auto& [layer, row] : grid) {
    out << Pad(layer < 0 ? "other" : std::to_string(layer), 6, true);
    for (int k = 0; k < merge::kNumModuleKinds; ++k) {
      if (!kind_used[static_cast<size_t>(k)]) continue;
      auto it = row.find(k);
      if (it == row.end()) {
        out << " " << Pad("", kCell);
        continue;
      }
      out << " " << colors.Wrap(Pad(Fmt(it->second, 4), kCell), Goodness(m, it->second, lo, hi));
    }
    out << "\n";
  }
}

void PrintExtremes(const CompareReport& r, const MetricDef& m, size_t series, int top,
                   std::ostream& out) {
  std::vector<std::pair<double, size_t>> order;
  for (size_t i = 0; i < r.tensors.size(); ++i) {
    const double v = m.value(r.tensors[i].sums, series);
    if (!std::isnan(v)) order.emplace_back(v, i);
  }
  if (order.empty() || top <= 0) return;
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  const size_t n = std::min(order.size(), static_cast<size_t>(top));
  const std::string what = m.label + " " + r.SeriesLabel(m.series, series);
  auto print = [&](const char* title, bool from_top) {
    out << "\n" << title << " " << what << ":\n";
    for (size_t k = 0; k < n; ++k) {
      const auto& [v, i] = from_top ? order[order.size() - 1 - k] : order[k];
      out << "  " << Pad(Fmt(v), 10) << "  " << r.tensors[i].name << "\n";
    }
  };
  if (m.better > 0) {
    print("least alike (lowest)", false);
    print("most alike (highest)", true);
  } else if (m.better < 0) {
    print("least alike (highest)", true);
    print("most alike (lowest)", false);
  } else {
    print("highest", true);
    print("lowest", false);
  }
}

}  // namespace

std::string ShellJoin(int argc, const char* const* argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i == 0) a = "alloy";
    const bool plain = !a.empty() && a.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@+,%") == std::string::npos;
    if (!out.empty()) out += ' ';
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

CLI::App* SetupCompare(CLI::App& app, CompareCmdOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "compare", "Compare checkpoints tensor by tensor: similarity, task-vector interference, "
                 "rank; terminal table, JSON, CSV, HTML report");
  cmd->add_option("MODELS", options.models,
                  "Two or more models (directories, .safetensors files or hub ids); one is "
                  "enough with --base. They are labelled A, B, C, ... in the output")
      ->required();
  cmd->add_option("--base", options.base,
                  "Base model: adds task-vector figures (τ = model − base): norms, task-vector "
                  "cosine, sign conflicts, top-20% mass");
  cmd->add_option("--tensors", options.tensors,
                  "Only tensors whose name matches this regular expression (ECMAScript, searched)");
  cmd->add_option("--json", options.json_path, "Write the whole report as JSON to this file");
  cmd->add_option("--csv", options.csv_path, "Write one row per tensor, every figure, to this file");
  cmd->add_option("--html", options.html_path,
                  "Write a self-contained HTML report (heatmaps, charts, sortable table)");
  cmd->add_option("--top", options.top, "How many most and least alike tensors to list")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_option("--rank", options.rank,
                  "Also estimate the top-K singular values of every 2-D task vector (needs "
                  "--base; a randomized SVD that reads those tensors 4 more times): effective "
                  "rank and energy in the top K")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--metric", options.metric,
                  "Figure shown in the terminal table: cosine (default), rel_l2, max_abs_diff, "
                  "sign_agreement; with --base also tau_norm, tau_rel_norm, top20_mass, "
                  "tau_cosine, sign_conflict, sign_conflict_all; with --rank effective_rank, "
                  "energy_top_k");
  cmd->add_option("--series", options.series,
                  "Which pair or model the table shows: A~B (default: the first), B, ...");
  cmd->add_option("--color", options.color, "Colour the table: auto (on a terminal), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  cmd->add_option("--threads", options.threads, "Worker threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", options.quiet, "No progress bar and no terminal report (files only)");
  AddFollowSymlinksFlag(cmd, options.follow_symlinks);
  cmd->footer(
      "Examples:\n"
      "  alloy compare ./merged ./ft-a ./ft-b                 # did the merge keep each parent?\n"
      "  alloy compare ./ft-a ./ft-b --base ./base --html report.html   # where do they conflict?\n"
      "  alloy compare ./ft --base ./base --rank 16 --tensors 'self_attn' --json ft.json\n"
      "Tensors missing from a model, or with other shapes, are listed, not fatal. Figures are\n"
      "explained in docs/compare.md. Exit codes: 0 ok, 2 bad input, 3 I/O failure, 130\n"
      "interrupted.");
  return cmd;
}

int RunCompare(const CompareCmdOptions& options, std::ostream& out, std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  merge::CompareOptions job;
  job.models = options.models;
  if (!options.base.empty()) job.base = options.base;
  job.tensor_regex = options.tensors;
  job.rank = options.rank;
  job.threads = options.threads;
  job.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  job.cancel = InstallInterruptHandler();
  // Check the table's metric before reading anything.
  const std::vector<MetricDef> metrics =
      merge::CompareMetrics(options.models.size(), job.base.has_value(), options.rank > 0);
  // The default: the first figure (cosine; a task-vector norm for one model and a base).
  const std::string metric_key =
      options.metric.empty() && !metrics.empty() ? metrics.front().key : options.metric;
  auto metric = std::find_if(metrics.begin(), metrics.end(),
                             [&](const MetricDef& m) { return m.key == metric_key; });
  // (No figures at all: too few models, which CompareModels reports.)
  if (metric == metrics.end() && !metrics.empty()) {
    std::string keys;
    for (const MetricDef& m : metrics) keys += (keys.empty() ? "" : ", ") + m.key;
    return ReportError(Status::InvalidArgument("--metric '" + metric_key + "' is not available " +
                                               "here; choose one of: " + keys),
                       err);
  }

  // The table's series, checked before anything is read: labels follow from
  // the model count alone.
  size_t series = 0;
  if (!options.series.empty() && metric != metrics.end()) {
    CompareReport shape;
    shape.SetModels(options.models.size());
    std::string labels;
    bool found = false;
    for (size_t s = 0; s < shape.SeriesCount(metric->series); ++s) {
      labels += (labels.empty() ? "" : ", ") + shape.SeriesLabel(metric->series, s);
      if (shape.SeriesLabel(metric->series, s) == options.series) {
        series = s;
        found = true;
      }
    }
    if (!found) {
      return ReportError(Status::InvalidArgument("--series '" + options.series + "' is not a " +
                                                 "series of " + metric->key + "; choose one of: " +
                                                 labels),
                         err);
    }
  }

  // Output paths are checked before the (possibly long) comparison runs.
  for (const std::string* path : {&options.json_path, &options.csv_path, &options.html_path}) {
    if (path->empty()) continue;
    const std::string parent = formats::ParentDirectory(*path);
    if (!formats::IsDirectory(parent.empty() ? "." : parent)) {
      return ReportError(Status::InvalidArgument("cannot write " + *path + ": directory '" +
                                                 parent + "' does not exist"),
                         err);
    }
  }

  ProgressBar bar("compare", !options.quiet);
  job.progress = [&bar](uint64_t done, uint64_t total, std::string_view tensor) {
    bar.Update(done, total, tensor);
  };
  formats::Result<CompareReport> report = merge::CompareModels(job);
  bar.Finish();
  if (!report.ok() && job.cancel->load()) {
    err << "alloy: interrupted\n";
    return ToInt(ExitCode::kInterrupted);
  }
  if (!report.ok()) return ReportError(report.status(), err);
  const CompareReport& r = *report;
  ALLOY_CHECK(metric != metrics.end());
  ReportWarnings(r.warnings, err);

  const std::string command = options.command.empty() ? "alloy compare" : options.command;
  nlohmann::json json;
  if (!options.json_path.empty() || !options.html_path.empty()) {
    json = merge::CompareReportJson(r, command);
  }
  std::vector<std::pair<std::string, std::string>> files;
  if (!options.json_path.empty()) files.emplace_back(options.json_path, json.dump(1) + "\n");
  if (!options.csv_path.empty()) files.emplace_back(options.csv_path, merge::CompareReportCsv(r));
  if (!options.html_path.empty()) files.emplace_back(options.html_path, merge::RenderCompareHtml(json));
  for (const auto& [path, contents] : files) {
    Status st = WriteReportFile(path, contents);
    if (!st.ok()) return ReportError(st, err);
  }
  if (options.quiet) return ToInt(ExitCode::kOk);

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < r.models.size(); ++i) {
    out << (i ? ", " : "compare: ") << r.labels[i] << " = " << r.models[i];
  }
  if (r.base) out << ", base = " << *r.base;
  const TensorSums all = merge::AggregateAll(r);
  char timing[64];
  std::snprintf(timing, sizeof(timing), "%.2f s", secs);
  out << "\ncompared " << r.tensors.size() << " tensors (" << GroupedInt(all.numel)
      << " elements, " << HumanBytes(static_cast<double>(r.bytes_read)) << " read) in " << timing;
  if (!r.mismatches.empty()) out << "; " << r.mismatches.size() << " not compared (listed below)";
  out << "\n";
  PrintWholeModel(r, all, out);
  Colors colors;
  colors.on = options.color == "always" ||
              (options.color == "auto" && isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr &&
               &out == &std::cout);
  PrintLayerTable(r, *metric, series, colors, out);
  PrintExtremes(r, *metric, series, options.top, out);
  if (!r.mismatches.empty()) {
    out << "\nnot compared:\n";
    const size_t shown = std::min<size_t>(r.mismatches.size(), 20);
    for (size_t i = 0; i < shown; ++i) {
      out << "  " << r.mismatches[i].name << ": " << r.mismatches[i].reason << "\n";
    }
    if (shown < r.mismatches.size()) {
      out << "  ... and " << r.mismatches.size() - shown << " more (see --json or --html)\n";
    }
  }
  for (const auto& [path, contents] : files) out << "wrote " << path << "\n";
  return ToInt(ExitCode::kOk);
}

}  // namespace alloy::cli
