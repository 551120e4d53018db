#include "cli/cmd_inspect.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "cli/input_flags.h"
#include "cli/progress.h"
#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/model_dir.h"
#include "formats/model_ref.h"
#include "merge/gguf_model.h"
#include "merge/model_info.h"

namespace alloy::cli {
namespace {

using formats::Result;
using formats::Status;

std::string Opt(const std::optional<int64_t>& v) { return v ? std::to_string(*v) : "?"; }

nlohmann::json OptJson(const std::optional<int64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// config.json of the model directory, if present; a malformed one (or a link
// leading outside the directory, unless `symlinks` allows it) is an error.
Result<std::optional<nlohmann::json>> LoadConfig(const std::string& dir,
                                                 formats::SymlinkPolicy symlinks) {
  const std::string path = dir + "/config.json";
  if (!formats::IsRegularFile(path)) return std::optional<nlohmann::json>();
  ALLOY_RETURN_IF_ERROR(formats::CheckInsideDirectory(dir, path, symlinks));
  ALLOY_ASSIGN_OR_RETURN(std::string text, formats::ReadSmallFile(path));
  ALLOY_ASSIGN_OR_RETURN(nlohmann::json config, formats::ParseStrictJson(text, path));
  return std::optional<nlohmann::json>(std::move(config));
}

struct TypeTotals {
  uint64_t n_tensors = 0;
  uint64_t n_bytes = 0;
};

// Stored GGUF types: tensors and bytes per ggml type name.
std::map<std::string, TypeTotals> GgufTypeTotals(const formats::GgufHeader& h) {
  std::map<std::string, TypeTotals> totals;
  for (const formats::GgufTensor& t : h.tensors) {
    TypeTotals& tt = totals[formats::GgmlTypeName(t.type)];
    ++tt.n_tensors;
    tt.n_bytes += t.nbytes;
  }
  return totals;
}

// "Q8_0" for a GGUF tensor, else the dtype name.
std::string StoredTypeName(const formats::TensorSource& src, const formats::TensorInfo& t) {
  if (const formats::GgufHeader* h = merge::GgufHeaderOf(src)) {
    for (const formats::GgufTensor& g : h->tensors) {
      if (g.name == t.name) return formats::GgmlTypeName(g.type);
    }
  }
  return std::string(formats::DTypeName(t.dtype));
}

void PrintHuman(const merge::ModelSummary& s, const formats::TensorSource& src,
                const InspectOptions& options, std::ostream& out) {
  out << "model:        " << s.path << "\n";
  out << "architecture: " << (s.architecture.empty() ? "unknown (no config.json)" : s.architecture);
  if (!s.model_type.empty()) out << " (model_type " << s.model_type << ")";
  out << "\n";
  out << "layers:       " << s.detected_layers << " in tensor names";
  if (s.config_layers) out << ", " << *s.config_layers << " in config.json";
  out << "\n";
  if (s.hidden_size || s.vocab_size) {
    out << "shape:        hidden " << Opt(s.hidden_size) << ", intermediate "
        << Opt(s.intermediate_size) << ", heads " << Opt(s.num_heads) << " (kv "
        << Opt(s.num_kv_heads) << "), vocab " << Opt(s.vocab_size)
        << (s.tied_embeddings ? ", tied embeddings" : "") << "\n";
  }
  out << "parameters:   " << GroupedInt(s.n_params) << " in " << s.n_tensors << " tensors\n";
  out << "size:         " << HumanBytes(static_cast<double>(s.n_bytes)) << " ("
      << GroupedInt(s.n_bytes) << " bytes of tensor data)\n";
  for (const auto& [dtype, t] : s.by_dtype) {
    out << "  " << formats::DTypeName(dtype) << ": " << GroupedInt(t.n_params) << " parameters in "
        << t.n_tensors << " tensors, " << HumanBytes(static_cast<double>(t.n_bytes)) << "\n";
  }
  if (const formats::GgufHeader* h = merge::GgufHeaderOf(src)) {
    out << "gguf:         version " << h->version << ", " << h->kvs.size()
        << " metadata keys, alignment " << h->alignment
        << " (quantized tensors are counted above as the F32 values they decode to)\n";
    for (const auto& [type, t] : GgufTypeTotals(*h)) {
      out << "  stored " << type << ": " << t.n_tensors << " tensors, "
          << HumanBytes(static_cast<double>(t.n_bytes)) << "\n";
    }
  }
  out << "files:        ";
  for (size_t i = 0; i < s.files.size(); ++i) out << (i ? ", " : "") << s.files[i];
  out << "\ncompanions:   ";
  if (s.companions.empty()) out << "none";
  for (size_t i = 0; i < s.companions.size(); ++i) out << (i ? ", " : "") << s.companions[i];
  out << "\n";
  if (options.tensors) {
    out << "\ntensors:\n";
    for (const formats::TensorInfo& t : src.tensors()) {
      out << "  " << t.name << "  " << StoredTypeName(src, t) << "  "
          << formats::ShapeString(t.shape) << "\n";
    }
  }
  if (options.memory) {
    out << "\nmemory estimates (weights and training state only; activations, KV cache and "
           "framework overhead not included; formulas in docs/inspect.md):\n";
    for (const merge::MemoryRow& row : merge::EstimateMemory(s)) {
      char line[160];
      std::snprintf(line, sizeof(line), "  %-30s %-16s %10s", row.scenario.c_str(),
                    row.setting.c_str(), HumanBytes(row.bytes).c_str());
      out << line << "   " << row.formula << "\n";
    }
  }
}

nlohmann::json ToJson(const merge::ModelSummary& s, const formats::TensorSource& src,
                      const InspectOptions& options) {
  nlohmann::json j;
  j["path"] = s.path;
  j["architecture"] = s.architecture;
  j["model_type"] = s.model_type;
  j["layers"] = {{"detected", s.detected_layers}, {"config", OptJson(s.config_layers)}};
  j["hidden_size"] = OptJson(s.hidden_size);
  j["intermediate_size"] = OptJson(s.intermediate_size);
  j["num_attention_heads"] = OptJson(s.num_heads);
  j["num_key_value_heads"] = OptJson(s.num_kv_heads);
  j["vocab_size"] = OptJson(s.vocab_size);
  j["tied_embeddings"] = s.tied_embeddings;
  j["tensor_count"] = s.n_tensors;
  j["parameters"] = s.n_params;
  j["bytes"] = s.n_bytes;
  nlohmann::json dtypes = nlohmann::json::object();
  for (const auto& [dtype, t] : s.by_dtype) {
    dtypes[std::string(formats::DTypeName(dtype))] = {
        {"tensors", t.n_tensors}, {"parameters", t.n_params}, {"bytes", t.n_bytes}};
  }
  j["dtypes"] = dtypes;
  j["files"] = s.files;
  j["companion_files"] = s.companions;
  if (const formats::GgufHeader* h = merge::GgufHeaderOf(src)) {
    nlohmann::json meta = nlohmann::json::object();
    for (const formats::GgufKv& kv : h->kvs) meta[kv.key] = kv.value.Describe();
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [type, t] : GgufTypeTotals(*h)) {
      types[type] = {{"tensors", t.n_tensors}, {"bytes", t.n_bytes}};
    }
    j["gguf"] = {{"version", h->version}, {"alignment", h->alignment}, {"metadata", meta},
                 {"stored_types", types}};
  }
  if (options.tensors) {
    nlohmann::json list = nlohmann::json::array();
    for (const formats::TensorInfo& t : src.tensors()) {
      list.push_back({{"name", t.name},
                      {"dtype", std::string(formats::DTypeName(t.dtype))},
                      {"stored_type", StoredTypeName(src, t)},
                      {"shape", t.shape},
                      {"bytes", t.nbytes}});
    }
    j["tensors"] = list;
  }
  if (options.memory) {
    nlohmann::json rows = nlohmann::json::array();
    for (const merge::MemoryRow& row : merge::EstimateMemory(s)) {
      rows.push_back({{"scenario", row.scenario},
                      {"setting", row.setting},
                      {"bytes", row.bytes},
                      {"formula", row.formula}});
    }
    j["memory"] = rows;
  }
  return j;
}

}  // namespace

CLI::App* SetupInspect(CLI::App& app, InspectOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Show a checkpoint's architecture, layers, parameters, dtypes and files");
  cmd->add_option("MODEL", options.model,
                  "Model directory, .safetensors / .bin / .gguf file, or hub id "
                  "org/name[@revision] (resolved offline from the Hugging Face cache)")
      ->required();
  cmd->add_flag("--tensors", options.tensors, "List every tensor with dtype and shape");
  cmd->add_flag("--memory", options.memory,
                "Estimate memory for inference, full fine-tuning, LoRA and QLoRA");
  cmd->add_flag("--json", options.json, "Print one JSON object instead of text");
  AddFollowSymlinksFlag(cmd, options.follow_symlinks);
  cmd->footer(
      "Examples:\n"
      "  alloy inspect ./Llama-3.2-1B\n"
      "  alloy inspect meta-llama/Llama-3.2-1B --memory\n"
      "  alloy inspect model.safetensors --tensors --json | jq '.tensors[].name'\n"
      "Exit codes: 0 ok, 2 bad or unreadable input, 3 I/O failure.");
  return cmd;
}

int RunInspect(const InspectOptions& options, std::ostream& out, std::ostream& err) {
  Result<std::string> path = formats::ResolveModelReference(options.model);
  if (!path.ok()) return ReportError(path.status(), err);
  std::vector<std::string> warnings;
  const formats::SymlinkPolicy symlinks = SymlinkPolicyOf(options.follow_symlinks);
  auto src = merge::OpenCheckpoint(*path, formats::FileAccess::kPread, &warnings, symlinks);
  if (!src.ok()) return ReportError(src.status(), err);
  for (const std::string& w : warnings) err << "alloy: warning: " << w << "\n";
  const std::string dir = formats::ModelDirectoryOf(*path);
  Result<std::optional<nlohmann::json>> config = std::optional<nlohmann::json>();
  if (const formats::GgufHeader* h = merge::GgufHeaderOf(**src)) {
    config = std::optional<nlohmann::json>(merge::ConfigFromGguf(*h, **src));
  } else {
    config = LoadConfig(dir, symlinks);
  }
  if (!config.ok()) return ReportError(config.status(), err);
  merge::ModelSummary summary =
      merge::SummarizeModel(**src, config->has_value() ? &**config : nullptr, *path);
  summary.companions = formats::ListCompanionFiles(dir);
  if (options.json) {
    out << ToJson(summary, **src, options).dump(2) << "\n";
  } else {
    PrintHuman(summary, **src, options, out);
  }
  return ToInt(ExitCode::kOk);
}

}  // namespace alloy::cli
