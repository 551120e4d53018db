#include "merge/merge_job.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "formats/file_util.h"
#include "formats/model_dir.h"
#include "formats/model_writer.h"
#include "formats/output_overlap.h"
#include "merge/gguf_model.h"
#include "merge/model_opener.h"

namespace alloy::merge {
namespace {

using formats::Status;

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

const std::vector<std::string>& TokenizerFileNames() {
  static const std::vector<std::string> kNames = {
      "tokenizer.json",          "tokenizer.model",     "tokenizer_config.json",
      "special_tokens_map.json", "added_tokens.json",   "vocab.json",
      "merges.txt",              "generation_config.json", "chat_template.jinja",
      "chat_template.json"};
  return kNames;
}

namespace {

// A model's hub id when its directory is a hub cache snapshot
// (`.../models--org--name/snapshots/<sha>`), else "". Taken from the cache
// folder rather than the reference, so a recipe that names the snapshot
// path itself still lists `org/name`, never a local path.
std::string HubId(const PlannedModel& model) {
  const size_t pos = model.directory.rfind("/models--");
  if (pos == std::string::npos) return "";
  const size_t begin = pos + 9;
  const size_t end = model.directory.find('/', begin);
  if (end == std::string::npos || model.directory.compare(end, 11, "/snapshots/") != 0) return "";
  std::string folder = model.directory.substr(begin, end - begin);
  const size_t sep = folder.find("--");  // `models--gpt2` has no org
  if (sep == std::string::npos) return folder;
  if (sep == 0 || sep + 2 >= folder.size()) return "";
  return folder.replace(sep, 2, "/");
}

// `recipe` with every reference to another document (ModelRef::intermediate)
// pointing at that document's output directory under `inter_dir`.
Recipe PointAtIntermediates(Recipe recipe, const std::string& inter_dir) {
  auto point = [&](ModelRef& ref) {
    if (!ref.intermediate.empty()) ref.path = inter_dir + "/" + ref.intermediate;
  };
  auto point_slices = [&](std::vector<Slice>& slices) {
    for (Slice& slice : slices) {
      for (SliceSource& source : slice.sources) point(source.model);
      if (slice.base_model) point(*slice.base_model);
    }
  };
  if (recipe.base_model) point(*recipe.base_model);
  for (ModelEntry& entry : recipe.models) point(entry.model);
  point_slices(recipe.slices);
  for (Module& module : recipe.modules) {
    for (ModelEntry& entry : module.models) point(entry.model);
    point_slices(module.slices);
  }
  point(recipe.tokenizer.model);
  return recipe;
}

// Every model reference of `recipe` that is not another document's output.
std::vector<ModelRef> InputRefs(const Recipe& recipe) {
  std::vector<ModelRef> refs;
  auto add = [&](const ModelRef& ref) {
    if (ref.intermediate.empty() && !ref.path.empty()) refs.push_back(ref);
  };
  auto add_slices = [&](const std::vector<Slice>& slices) {
    for (const Slice& slice : slices) {
      for (const SliceSource& source : slice.sources) add(source.model);
      if (slice.base_model) add(*slice.base_model);
    }
  };
  if (recipe.base_model) add(*recipe.base_model);
  for (const ModelEntry& entry : recipe.models) add(entry.model);
  add_slices(recipe.slices);
  for (const Module& module : recipe.modules) {
    for (const ModelEntry& entry : module.models) add(entry.model);
    add_slices(module.slices);
  }
  add(recipe.tokenizer.model);
  return refs;
}

// Refuses, before any document is written, an output (the final one or an
// intermediate) that overlaps a model of any document.
Status CheckOutputsOutsideInputs(const RecipeFile& file, const std::vector<std::string>& outputs,
                                 const std::vector<std::pair<std::string, std::string>>& path_map) {
  std::vector<std::string> inputs;
  for (const Recipe& doc : file.documents) {
    for (const ModelRef& ref : InputRefs(doc)) {
      for (std::string& path : LocalInputPaths(ref, path_map)) inputs.push_back(std::move(path));
    }
  }
  for (const std::string& output : outputs) {
    ALLOY_RETURN_IF_ERROR(formats::CheckOutputOutsideInputs(output, inputs));
  }
  return Status::OK();
}

bool IsBuiltinTemplateName(const std::string& s) {
  return s == "auto" || s == "alpaca" || s == "chatml" || s == "llama3" || s == "mistral" ||
         s == "exaone";
}

// Writes a document whose inputs are all GGUF files into the GGUF file
// `output`: the donor's metadata with the layer count of the result, tensors
// stored in the donor's types (K-quants become Q8_0, which alloy can write).
Status WriteGgufDocument(const Recipe& recipe, const MergePlan& plan,
                         const std::vector<formats::TensorSource*>& sources,
                         const std::string& output, const MergeJobOptions& options,
                         DocumentReport* doc, std::vector<std::string>* warnings) {
  if (output.size() < 5 || output.substr(output.size() - 5) != ".gguf") {
    return Status::InvalidArgument("the inputs are GGUF files, so the output is one GGUF file: "
                                   "give an output path ending in .gguf (got " + output + ")");
  }
  std::error_code ec;
  if (std::filesystem::exists(output, ec) && !options.overwrite) {
    return Status::InvalidArgument(output + " already exists (pass --overwrite to replace it)");
  }
  const formats::GgufHeader& donor = *GgufHeaderOf(*sources[plan.config_donor]);
  std::vector<formats::GgufKv> kvs;
  for (const formats::GgufKv& kv : donor.kvs) {
    // Split keys describe the donor's files, and the layout alloy writes
      // (default alignment) replaces the donor's.
      if (kv.key.rfind("split.", 0) != 0 && kv.key != "general.alignment") kvs.push_back(kv);
  }
  const std::string arch = donor.Architecture();
  if (plan.num_layers > 0 && !arch.empty()) {
    SetGgufKv(kvs, arch + ".block_count",
              formats::GgufValue::Uint32(static_cast<uint32_t>(plan.num_layers)));
  }
  SetGgufKv(kvs, "general.source.alloy_recipe", formats::GgufValue::String(recipe.raw_text));
  // The stored type of each output tensor's first input.
  std::map<std::string, uint32_t> donor_type;
  for (const PlannedTensor& t : plan.tensors) {
    if (t.inputs.empty()) continue;
    const formats::TensorSource& src = *sources[t.inputs.front().model_index];
    const formats::GgufHeader* h = GgufHeaderOf(src);
    for (const formats::GgufTensor& g : h->tensors) {
      if (g.name == t.inputs.front().input_name) donor_type[t.output_name] = g.type;
    }
  }
  std::set<std::string> requantized;
  GgufSinkOptions sink_options;
  sink_options.kvs = std::move(kvs);
  sink_options.fsync = options.fsync;
  sink_options.type_for = [&](const formats::TensorInfo& info) {
    auto it = donor_type.find(info.name);
    if (plan.input_cast || it == donor_type.end()) {
      return formats::GgmlTypeOfDType(info.dtype).value_or(formats::GgmlType::kF32);
    }
    const formats::GgmlType type = GgufOutputType(info, it->second);
    if (static_cast<uint32_t>(type) != it->second && !formats::GgmlPlainDType(it->second)) {
      requantized.insert(formats::GgmlTypeName(it->second));
    }
    return type;
  };
  std::unique_ptr<formats::TensorSink> sink = MakeGgufSink(output, std::move(sink_options));
  ALLOY_ASSIGN_OR_RETURN(doc->merge, ExecutePlan(plan, sources, *sink, options.execute));
  ALLOY_RETURN_IF_ERROR(sink->Finish());
  for (const std::string& type : requantized) {
    warnings->push_back(type + " tensors were written as Q8_0 (alloy writes F32, F16, BF16, Q8_0 "
                               "and Q4_0); requantize with llama-quantize if you need " + type);
  }
  doc->files = {BaseName(output)};
  return Status::OK();
}

// Writes one planned document into `output`.
Status WriteDocument(const Recipe& recipe, const MergePlan& plan, DiskModelOpener& opener,
                     const std::string& output, const MergeJobOptions& options,
                     DocumentReport* doc, std::vector<std::string>* warnings) {
  std::vector<formats::TensorSource*> sources;
  for (const PlannedModel& model : plan.models) {
    ALLOY_ASSIGN_OR_RETURN(OpenedModel opened, opener.Open(model.ref));
    sources.push_back(opened.source);
  }
  const size_t n_gguf = static_cast<size_t>(std::count_if(
      sources.begin(), sources.end(),
      [](const formats::TensorSource* s) { return GgufHeaderOf(*s) != nullptr; }));
  if (n_gguf == sources.size() && !sources.empty()) {
    return WriteGgufDocument(recipe, plan, sources, output, options, doc, warnings);
  }
  if (n_gguf > 0) {
    return Status::InvalidArgument(
        "GGUF and non-GGUF models cannot be merged together: convert the GGUF inputs with "
        "`alloy convert MODEL.gguf DIR` (or the others with `alloy convert DIR OUT.gguf`) first");
  }
  formats::ModelWriterOptions writer_options;
  if (options.max_shard_bytes) writer_options.max_shard_bytes = options.max_shard_bytes;
  writer_options.overwrite = options.overwrite;
  writer_options.fsync = options.fsync;
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<formats::ModelDirWriter> sink,
                         formats::ModelDirWriter::Create(output, writer_options));
  ALLOY_ASSIGN_OR_RETURN(doc->merge, ExecutePlan(plan, sources, *sink, options.execute));

  std::set<std::string> files(sink->weight_files().begin(), sink->weight_files().end());
  if (sink->weight_files().size() > 1) files.insert("model.safetensors.index.json");
  auto add = [&](const std::string& name, std::string_view text) -> Status {
    files.insert(name);
    return sink->AddFile(name, text);
  };
  if (!plan.output_config.is_null()) {
    ALLOY_RETURN_IF_ERROR(add("config.json", plan.output_config.dump(2) + "\n"));
  }
  if (!plan.tokenizer_directory.empty()) {
    for (const std::string& name : TokenizerFileNames()) {
      const std::string src = plan.tokenizer_directory + "/" + name;
      if (!formats::IsRegularFile(src)) continue;
      if (name == "chat_template.jinja" && recipe.chat_template &&
          !IsBuiltinTemplateName(*recipe.chat_template)) {
        continue;  // replaced by the recipe's template below
      }
      files.insert(name);
      ALLOY_RETURN_IF_ERROR(sink->CopyFile(src, name));
    }
  }
  if (recipe.chat_template) {
    if (IsBuiltinTemplateName(*recipe.chat_template)) {
      warnings->push_back("chat_template '" + *recipe.chat_template +
                          "': built-in template names and 'auto' are not applied yet; the "
                          "donor's tokenizer files were copied unchanged");
    } else {
      ALLOY_RETURN_IF_ERROR(add("chat_template.jinja", *recipe.chat_template));
    }
  }
  std::string yaml = recipe.raw_text;
  if (!yaml.empty() && yaml.back() != '\n') yaml += '\n';
  ALLOY_RETURN_IF_ERROR(add("mergekit_config.yml", yaml));
  ALLOY_RETURN_IF_ERROR(
      add("README.md", ModelCard(plan, recipe, BaseName(output), options.execute.seed)));
  ALLOY_RETURN_IF_ERROR(sink->Finish());
  doc->files.assign(files.begin(), files.end());
  return Status::OK();
}

}  // namespace

bool LooksComplete(const std::string& dir) {
  return formats::IsRegularFile(dir + "/config.json") &&
         (formats::IsRegularFile(dir + "/model.safetensors") ||
          formats::IsRegularFile(dir + "/model.safetensors.index.json"));
}

std::string ModelCard(const MergePlan& plan, const Recipe& recipe, const std::string& title,
                      uint64_t seed) {
  std::vector<std::string> hub_ids;
  for (const PlannedModel& m : plan.models) {
    const std::string id = HubId(m);
    if (!id.empty() && std::find(hub_ids.begin(), hub_ids.end(), id) == hub_ids.end()) {
      hub_ids.push_back(id);
    }
  }
  std::string card = "---\n";
  if (!hub_ids.empty()) {
    card += "base_model:\n";
    for (const std::string& id : hub_ids) card += "- " + id + "\n";
  }
  card += "library_name: transformers\ntags:\n- merge\n- alloy\n---\n";
  card += "# " + title + "\n\n";
  card += "This is a merge of pre-trained language models created with alloy, a mergekit-"
          "compatible merge tool.\n\n";
  card += "## Merge Details\n### Merge Method\n\nThis model was merged using the `" + plan.method +
          "` merge method";
  if (plan.base_model && plan.method != "slerp") {
    card += " using " + plan.models[*plan.base_model].ref.text + " as a base";
  }
  card += ".\n\n### Models Merged\n\nThe following models were included in the merge:\n";
  for (size_t i = 0; i < plan.models.size(); ++i) {
    if (plan.base_model && *plan.base_model == i) continue;
    card += "* " + plan.models[i].ref.text + "\n";
  }
  card += "\n### Configuration\n\nThe following YAML configuration was used to produce this "
          "model (random seed " + std::to_string(seed) + "):\n\n```yaml\n" + recipe.raw_text;
  if (!recipe.raw_text.empty() && recipe.raw_text.back() != '\n') card += "\n";
  card += "```\n";
  return card;
}

namespace {

// RunMergeFile's and RunMergeText's body; fills `report` as it goes, so
// warnings survive a failure.
Status RunMergeFileInto(formats::Result<RecipeFile> parsed, const std::string& output,
                        const MergeJobOptions& options, MergeJobReport& report) {
  ALLOY_ASSIGN_OR_RETURN(RecipeFile file, std::move(parsed));
  for (const Warning& w : file.warnings) report.warnings.push_back(FormatWarning(file.path, w));
  ALLOY_ASSIGN_OR_RETURN(std::vector<size_t> order, MergeOrder(file));

  std::string out = output;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  const std::string inter_dir =
      options.intermediate_dir.empty() ? out + ".intermediates" : options.intermediate_dir;
  // §5.2: only a reference *equal* to a document name is that document's
  // output, so references are rewritten exactly (PointAtIntermediates), not
  // by a prefix map that would also catch a local path `<name>/...`. The
  // identity entries keep a user's --path-map prefix off those directories.
  auto path_map = options.path_map;
  for (const Recipe& doc : file.documents) {
    if (!doc.name.empty() && &doc != &file.documents.back()) {
      path_map.emplace_back(inter_dir + "/" + doc.name, inter_dir + "/" + doc.name);
    }
  }
  std::vector<std::string> outputs = {out};
  for (const Recipe& doc : file.documents) {
    if (!doc.name.empty() && &doc != &file.documents.back()) {
      outputs.push_back(inter_dir + "/" + doc.name);
    }
  }
  ALLOY_RETURN_IF_ERROR(CheckOutputsOutsideInputs(file, outputs, options.path_map));
  std::set<size_t> pending;  // dry run: documents whose output does not exist yet
  for (size_t idx : order) {
    const Recipe& recipe = file.documents[idx];
    const bool last = idx + 1 == file.documents.size();
    DocumentReport doc;
    doc.name = last ? "" : recipe.name;
    doc.output = last ? out : inter_dir + "/" + recipe.name;
    doc.method = recipe.merge_method;
    if (!last && options.lazy && LooksComplete(doc.output)) {
      doc.skipped = true;
      report.documents.push_back(std::move(doc));
      continue;
    }
    const bool waits = std::any_of(recipe.depends_on.begin(), recipe.depends_on.end(),
                                   [&](size_t d) { return pending.count(d) > 0; });
    if (options.dry_run && waits) {
      pending.insert(idx);
      report.documents.push_back(std::move(doc));
      continue;
    }
    DiskModelOpener opener(path_map, formats::FileAccess::kPread, options.lora_scale,
                           options.symlinks);
    PlanInputs inputs{opener.AsOpener(), file.path, options.allow_crimes};
    ALLOY_ASSIGN_OR_RETURN(MergePlan plan,
                           PlanMerge(PointAtIntermediates(recipe, inter_dir), inputs));
    if (!HasMergeMethod(plan.method)) {
      ALLOY_RETURN_IF_ERROR(MakeMergeMethod(plan.method).status().WithContext(
          file.path + ":" + std::to_string(recipe.first_line)));
    }
    // Parameter errors that need no tensor data, before anything is written
    // (and in --dry-run).
    Status checked = CheckPlan(plan);
    // The donor's tokenizer files are copied into the output: a link out of
    // its directory is refused here, before anything is written.
    if (checked.ok() && !plan.tokenizer_directory.empty()) {
      checked = formats::CheckFilesInsideDirectory(plan.tokenizer_directory, TokenizerFileNames(),
                                                   options.symlinks);
    }
    if (!checked.ok()) {
      return doc.name.empty() ? checked : checked.WithContext("intermediate '" + recipe.name + "'");
    }
    for (const std::string& w : opener.warnings()) report.warnings.push_back(w);
    for (const std::string& w : plan.warnings) report.warnings.push_back(w);
    doc.plan_summary = DescribePlan(plan);
    doc.planned_tensors = plan.tensors.size();
    doc.planned_bytes = plan.total_bytes;
    doc.n_models = plan.models.size();
    doc.planned = true;
    if (options.on_document) options.on_document(doc.name, plan);
    if (options.dry_run) {
      pending.insert(idx);
      report.documents.push_back(std::move(doc));
      continue;
    }
    Status st = WriteDocument(recipe, plan, opener, doc.output, options, &doc, &report.warnings);
    if (!st.ok()) {
      return doc.name.empty() ? st : st.WithContext("intermediate '" + doc.name + "'");
    }
    for (const std::string& w : doc.merge.warnings) report.warnings.push_back(w);
    report.documents.push_back(std::move(doc));
  }
  return Status::OK();
}

formats::Result<MergeJobReport> RunParsed(formats::Result<RecipeFile> parsed,
                                          const std::string& output,
                                          const MergeJobOptions& options) {
  MergeJobReport report;
  Status st = RunMergeFileInto(std::move(parsed), output, options, report);
  if (!st.ok()) {
    if (options.warnings_on_error != nullptr) *options.warnings_on_error = report.warnings;
    return st;
  }
  return report;
}

}  // namespace

formats::Result<MergeJobReport> RunMergeFile(const std::string& recipe_path,
                                             const std::string& output,
                                             const MergeJobOptions& options) {
  return RunParsed(ParseRecipeFile(recipe_path), output, options);
}

formats::Result<MergeJobReport> RunMergeText(std::string_view recipe_text,
                                             std::string_view display_name,
                                             const std::string& output,
                                             const MergeJobOptions& options) {
  return RunParsed(ParseRecipeText(recipe_text, display_name), output, options);
}

}  // namespace alloy::merge
