// RunMergeFile: `alloy merge RECIPE OUT` as a library call. Parses a
// (possibly multi-document) recipe, runs its documents in dependency order
// (mergekit-multi §5.2: named documents are intermediates written under
// `intermediate_dir/<name>`, skipped when already complete), plans each one
// before any math, streams it through the executor into a ModelDirWriter
// (temporary directory renamed into place when complete) and adds the
// companion files: config.json (plan.output_config), the donor's tokenizer
// and generation files, `mergekit_config.yml` (the recipe text verbatim) and
// a README.md model card.
//
// Thread safety: one job at a time per process (the executor sets the kernel
// thread count).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/path_guard.h"
#include "formats/status.h"
#include "merge/executor.h"
#include "merge/plan.h"
#include "merge/recipe.h"

namespace alloy::merge {

struct MergeJobOptions {
  ExecuteOptions execute;  // seed, threads, progress, cancel
  std::vector<std::pair<std::string, std::string>> path_map;  // --path-map FROM=TO
  std::string intermediate_dir;  // "" = "<output>.intermediates"
  uint64_t max_shard_bytes = 0;  // 0 = the writer's default (5e9)
  bool overwrite = false;
  bool fsync = false;
  bool dry_run = false;          // plan and describe; write nothing
  bool allow_crimes = false;     // models of different architectures
  bool lazy = true;              // skip intermediates whose output is complete
  double lora_scale = 1.0;       // multiplies every `model+lora` adapter's scale
                                 // (`alloy lora apply --scale`)
  // Whether files of the input directories (weights, config.json, adapter and
  // tokenizer files) may be symlinks leading outside them (--follow-symlinks).
  formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside;
  // Called before a document starts (after planning), from the calling thread.
  std::function<void(const std::string& name, const MergePlan& plan)> on_document;
  // When set and the run fails, receives the warnings gathered before the
  // failure (an unknown key is often the cause of the error that follows).
  std::vector<std::string>* warnings_on_error = nullptr;
};

struct DocumentReport {
  std::string name;    // `name:`, or "" for the final document
  std::string output;  // directory written (or that would be written)
  std::string method;
  bool skipped = false;         // intermediate already complete
  bool planned = false;         // dry run: planned (false when it waits for an intermediate)
  std::string plan_summary;     // DescribePlan() (dry run and run)
  size_t planned_tensors = 0;   // output tensors in the plan (dry run and run)
  uint64_t planned_bytes = 0;   // their bytes
  size_t n_models = 0;
  MergeReport merge;
  std::vector<std::string> files;  // files written into `output`, sorted
};

struct MergeJobReport {
  std::vector<DocumentReport> documents;  // run order
  std::vector<std::string> warnings;      // recipe warnings ("file:line:col: warning: ...") and others
};

// Runs (or, with dry_run, plans) every document of the recipe at
// `recipe_path`; the final document writes `output`. Errors are the
// parser's, planner's, executor's or writer's, with their codes
// (kInvalidArgument for recipe problems, kNotFound/kCorrupt for inputs,
// kIoError for I/O and "interrupted"). A failed document leaves no output
// directory behind (the writer removes its temporary directory).
formats::Result<MergeJobReport> RunMergeFile(const std::string& recipe_path,
                                             const std::string& output,
                                             const MergeJobOptions& options);

// RunMergeFile for a recipe held in memory (generated recipes, e.g. `alloy
// upscale`); `display_name` stands for the file in messages. Relative model
// paths are resolved against the working directory, as for a file.
formats::Result<MergeJobReport> RunMergeText(std::string_view recipe_text,
                                             std::string_view display_name,
                                             const std::string& output,
                                             const MergeJobOptions& options);

// The README.md model card for a merge (front matter: base_model list of hub
// ids, library_name, tags [merge, alloy]; method, models, the recipe).
std::string ModelCard(const MergePlan& plan, const Recipe& recipe, const std::string& title,
                      uint64_t seed);

// Tokenizer and generation files copied from a donor model's directory.
const std::vector<std::string>& TokenizerFileNames();

// True when `dir` already holds a complete model (config.json plus
// model.safetensors or model.safetensors.index.json), as mergekit-multi's
// lazy check.
bool LooksComplete(const std::string& dir);

}  // namespace alloy::merge
