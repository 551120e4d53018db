// ModelRef: a model reference as a recipe writes it (mergekit-semantics.md
// §2.2).
//
// String forms: `path`, `path@revision`, `path+lora`, `path@rev+lora@rev`;
// the dict form `{model: {path, revision}, lora: {path, revision},
// override_architecture}` fills the same fields. `path` is a local path or a
// Hugging Face repo id; resolving it on disk is the planner's job
// (formats/model_ref.h). Plain values; functions are pure and thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/status.h"

namespace alloy::merge {

struct ModelRef {
  std::string text;       // as written (for messages and model cards)
  std::string path;       // local path or hub id
  std::string revision;   // after `@`; empty when none
  std::string lora_path;  // after `+`; empty when none
  std::string lora_revision;
  std::string override_architecture;  // dict form only
  // Set when `path` names another document of the same multi-document file
  // (mergekit-multi, §5.2): that document's `name`. The runner rewrites the
  // path to `<intermediate-dir>/<name>`.
  std::string intermediate;
  int line = 0;  // 1-based position in the recipe; 0 when built in code
  int column = 0;

  bool has_lora() const { return !lora_path.empty(); }
};

// Parses the string form. Fails (kInvalidArgument) on an empty string or path,
// more than one `+` ("Can't parse" in mergekit), or more than one `@` in one
// part. The message has no location; callers prefix it.
formats::Result<ModelRef> ParseModelRef(std::string_view text);

// `--path-map FROM=TO` (repeatable): first turns every `\` in the model and
// LoRA paths into `/` (Decision (h): `E:\a\m` is `E:/a/m`), then replaces the
// longest FROM (also backslash-normalised) that is a prefix of the path and
// ends at a path-component boundary by its TO. `text` is left as written.
void ApplyPathMap(ModelRef& ref, const std::vector<std::pair<std::string, std::string>>& map);

// A string identifying the model for Decision (h) without touching the disk:
// backslashes become `/`, repeated `/` collapse, a trailing `/` and leading
// `./` are dropped; the revision and LoRA are appended. Two references with
// the same key are the same model (the planner may further compare resolved
// directories).
std::string ModelKey(const ModelRef& ref);

}  // namespace alloy::merge
