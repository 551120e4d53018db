// The malformed-input corpus (docs/RELIABILITY.md, "Hostile inputs"): every
// case of checkpoint-formats.md §7 that alloy refuses, plus hostile
// directories, JSON files and recipes, run through the built `alloy` binary
// (`inspect` for weights, `convert` for conversions, `lora inspect` for
// adapters, `merge --dry-run` and `moe` for recipes). Each case must exit 2
// and print its expected message. Cases are DYNAMIC_SECTIONs named
// "<group>/<id>", and each prints one line, so every name shows in the
// output; the count is printed too.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "examples/tiny_models.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/gguf_builder.h"
#include "tests/testing/safetensors_builder.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/torch_builder.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;
using testing::F32Bytes;
using testing::PickleWriter;
using testing::SafetensorsBuilder;
using testing::TempDir;
using testing::TorchBuilder;
using testing::TorchTensor;
using testing::WriteFileBytes;
using testing::ZipEntrySpec;
using testing_support::Q;
using testing_support::Run;

// What to run: environment assignments and the arguments after `alloy`.
struct Invocation {
  std::string env;
  std::string args;
};

struct CorpusCase {
  std::string id;  // "<group>/<name>"
  // Writes the inputs under `dir` (a fresh directory) and returns the command.
  std::function<Invocation(const std::string& dir)> setup;
  std::string expected;  // a stable piece of the message
};

constexpr const char* kSha = "0123456789abcdef0123456789abcdef01234567";

// `alloy <args>` with a 30 s timeout (a hang fails with 124, not forever).
Run RunAlloy(const Invocation& inv, const std::string& dir) {
  const std::string cmd = inv.env + " timeout 30 " + std::string(ALLOY_BINARY) + " " + inv.args +
                          " >" + dir + "/stdout.txt 2>" + dir + "/stderr.txt";
  const int status = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = testing::ReadFileBytes(dir + "/stdout.txt");
  r.err = testing::ReadFileBytes(dir + "/stderr.txt");
  return r;
}

Invocation Inspect(const std::string& path) { return {"", "inspect " + Q(path)}; }

void Link(const std::string& target, const std::string& link) {
  fs::create_directories(fs::path(link).parent_path());
  fs::create_symlink(target, link);
}

// A tiny llama (2 layers, bf16) at dir/name.
std::string TinyLlama(const std::string& dir, const std::string& name, int index = 0) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  spec.model_index = index;
  const std::string path = dir + "/" + name;
  REQUIRE(examples::WriteTinyModel(spec, path).ok());
  return path;
}

// The same tiny llama with one of its files replaced by `contents`.
std::string TinyLlamaWith(const std::string& dir, const std::string& file,
                          const std::string& contents) {
  const std::string m = TinyLlama(dir, "m");
  fs::remove(m + "/" + file);
  WriteFileBytes(m + "/" + file, contents);
  return m;
}

// JSON arrays nested `depth` deep inside an object.
std::string DeepJson(int depth) {
  return "{\"x\": " + std::string(static_cast<size_t>(depth), '[') +
         std::string(static_cast<size_t>(depth), ']') + "}";
}

// A one-tensor safetensors file (F32 `name` = [1, 2]).
std::string OneTensorFile(const std::string& name = "w") {
  SafetensorsBuilder b;
  b.Add(name, "F32", {2}, F32Bytes({1.0f, 2.0f}));
  return b.Build();
}

// ---- weights files: safetensors (§7 1-28), GGUF (49-65), PyTorch (37-48) ----

void AddFileCase(std::vector<CorpusCase>* cases, std::string id, std::string file_name,
                 std::string bytes, std::string expected) {
  cases->push_back({std::move(id),
                    [file_name, bytes](const std::string& dir) {
                      WriteFileBytes(dir + "/" + file_name, bytes);
                      return Inspect(dir + "/" + file_name);
                    },
                    std::move(expected)});
}

void AddWeightsFileCases(std::vector<CorpusCase>* cases) {
  for (const testing::MalformedCase& c : testing::MalformedSafetensorsCases()) {
    AddFileCase(cases, "safetensors/" + c.id, "x.safetensors", c.bytes, c.expected_substring);
  }
  {
    SafetensorsBuilder b;
    b.Add("w", "F32", std::vector<int64_t>(65, 1), F32Bytes({1.0f}));
    AddFileCase(cases, "safetensors/cap_65_dimensions", "x.safetensors", b.Build(),
                "invalid shape for tensor 'w': 65 dimensions, more than the limit of 64");
  }
  for (const testing::GgufMalformedCase& c : testing::MalformedGgufCases()) {
    // The reader is chosen by content, never by extension: without the GGUF
    // magic (case 49) the bytes go to the safetensors reader, whose message
    // says which check failed.
    const bool no_magic = c.id.rfind("49_", 0) == 0;
    AddFileCase(cases, "gguf/" + c.id, "x.gguf", c.bytes,
                no_magic ? "x.gguf: header too" : c.expected_substring);
  }
}

TorchBuilder OneTorchTensor() {
  TorchBuilder b;
  std::string floats;
  for (int i = 0; i < 6; ++i) floats += F32Bytes({static_cast<float>(i)});
  b.Storage("0", floats);
  b.Add({.name = "w", .size = {2, 3}});
  return b;
}

std::string TorchWithPickle(const std::string& pickle) {
  TorchBuilder b = OneTorchTensor();
  b.Pickle(pickle);
  return b.Build();
}

// Six floats in storage "0" and the one tensor `t`.
std::string TorchWithTensor(const TorchTensor& t) {
  TorchBuilder b;
  std::string floats;
  for (int i = 0; i < 6; ++i) floats += F32Bytes({static_cast<float>(i)});
  b.Storage("0", floats);
  b.Add(t);
  return b.Build();
}

void AddTorchCases(std::vector<CorpusCase>* cases) {
  auto add = [&](const std::string& id, const std::string& bytes, const std::string& expected) {
    AddFileCase(cases, "torch/" + id, "x.bin", bytes, expected);
  };
  {
    std::vector<ZipEntrySpec> entries = OneTorchTensor().Entries();
    entries.push_back({"other/x", "x"});
    add("37_entry_outside_prefix", testing::BuildZip(entries),
        "is not under the top-level directory");
  }
  {
    std::vector<ZipEntrySpec> entries = OneTorchTensor().Entries();
    entries.erase(entries.begin());
    add("37_no_data_pkl", testing::BuildZip(entries), "invalid archive: no 'archive/data.pkl'");
  }
  {
    std::vector<ZipEntrySpec> entries = OneTorchTensor().Entries();
    entries.push_back({"archive/sub/data.pkl", entries[0].payload});
    add("37_two_data_pkl", testing::BuildZip(entries), "invalid archive: 2 data.pkl entries");
  }
  for (const auto& [module, name] : std::vector<std::pair<std::string, std::string>>{
           {"builtins", "eval"}, {"posix", "system"}, {"os", "system"}, {"subprocess", "Popen"}}) {
    add("38_global_" + module + "_" + name,
        TorchWithPickle(testing::MaliciousPickle(module, name, false)),
        "disallowed global " + module + "." + name + " (possible malicious pickle)");
  }
  add("38_stack_global_os_system", TorchWithPickle(testing::MaliciousPickle("os", "system", true)),
      "disallowed global os.system");
  for (const auto& [id, pickle, expected] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"39_opcode_inst", "\x80\x02(i__main__\nX\n.", "INST (0x69)"},
           {"39_opcode_obj", "\x80\x02(o.", "OBJ (0x6F)"},
           {"39_opcode_ext1", "\x80\x02\x82\x01.", "EXT1 (0x82)"},
           {"39_opcode_newobj_ex", "\x80\x04)}\x92.", "NEWOBJ_EX (0x92)"},
           {"39_opcode_persid", "\x80\x02P0\n.", "PERSID (0x50)"},
           {"46_binget_undefined_memo", "\x80\x02h\x05.", "BINGET of undefined memo index 5"},
           {"46_reduce_stack_underflow", "\x80\x02R.", "stack underflow in REDUCE"},
           {"46_setitems_without_mark", "\x80\x02u.", "SETITEMS without a MARK"},
           {"46_mark_never_closed", "\x80\x02((}.", "MARK(s) never closed"},
           {"46_missing_stop", "\x80\x02}", "missing STOP"},
           {"46_binunicode_past_end", "\x80\x02X\xff\x00\x00\x00"s + "ab.",
            "runs past the end of the stream"},
           {"46_invalid_utf8", "\x80\x02X\x02\x00\x00\x00\xff\xfe."s, "invalid UTF-8"},
       }) {
    add(id, TorchWithPickle(pickle), expected);
  }
  add("40_pid_not_a_tuple",
      TorchWithTensor(
          {.name = "w", .size = {2, 3}, .raw_pid = PickleWriter().Unicode("0").bytes()}),
      "invalid persistent id for tensor 'w': expected a tuple");
  add("40_pid0_not_storage",
      TorchWithTensor({.name = "w",
                       .size = {2, 3},
                       .raw_pid = PickleWriter()
                                      .Mark()
                                      .Unicode("storagex")
                                      .Global("torch", "FloatStorage")
                                      .Unicode("0")
                                      .Unicode("cpu")
                                      .Int(6)
                                      .Tuple()
                                      .bytes()}),
      "invalid persistent id for tensor 'w': pid[0]");
  add("41_missing_storage",
      TorchWithTensor({.name = "w", .storage_key = "7", .storage_numel = 6, .size = {6}}),
      "missing storage '7' for tensor 'w'");
  add("42_storage_size_mismatch", TorchWithTensor({.name = "w", .storage_numel = 7, .size = {6}}),
      "storage size mismatch for storage '0'");
  {
    TorchBuilder b = OneTorchTensor();
    b.Add({.name = "b", .storage_class = "IntStorage", .size = {6}});
    add("43_conflicting_storage_dtype", b.Build(), "conflicting storage dtype for storage '0'");
  }
  add("44_view_past_storage", TorchWithTensor({.name = "w", .size = {7}}),
      "out-of-bounds view: tensor 'w'");
  add("44_negative_size", TorchWithTensor({.name = "w", .size = {-1}, .stride = {1}}),
      "out-of-bounds view: tensor 'w' has negative size -1");
  {
    TorchBuilder b = OneTorchTensor();
    b.CompressStorage("0", uint64_t{40} << 30);  // a 40 GB zip bomb
    add("45_compressed_storage_bomb", b.Build(), "compressed storage 'archive/data/0'");
  }
  {
    TorchBuilder b = OneTorchTensor();
    b.ByteOrder("middle");
    add("47_byteorder_middle", b.Build(), "unknown byte order 'middle'");
  }
  add("48_legacy_pickle",
      std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.",
                  21),
      "legacy PyTorch format");
  add("48_pytorch1", "PYTORCH1" + std::string(40, '\0'), "PYTORCH1");
  {
    std::vector<ZipEntrySpec> entries = OneTorchTensor().Entries();
    entries.push_back({"archive/constants.pkl", "x"});
    add("48_torchscript_archive", testing::BuildZip(entries), "TorchScript archive");
  }
}

// ---- model directories: sharded indexes (§7 30-35), hub cache (36),
// config/tokenizer JSON, symlinks ----

void AddIndexCase(std::vector<CorpusCase>* cases, const std::string& id, const std::string& index,
                  const std::map<std::string, std::string>& shards, const std::string& expected) {
  cases->push_back({"index/" + id,
                    [index, shards](const std::string& dir) {
                      WriteFileBytes(dir + "/m/model.safetensors.index.json", index);
                      for (const auto& [name, bytes] : shards)
                        WriteFileBytes(dir + "/m/" + name, bytes);
                      return Inspect(dir + "/m");
                    },
                    expected});
}

std::string Index(const std::string& weight_map) {
  return R"({"metadata": {"total_size": 8}, "weight_map": )" + weight_map + "}";
}

void AddDirectoryCases(std::vector<CorpusCase>* cases) {
  for (const auto& [id, shard] : std::vector<std::pair<std::string, std::string>>{
           {"30_shard_parent_dir", "../x.safetensors"},
           {"30_shard_absolute", "/etc/x.safetensors"},
           {"30_shard_drive_letter", "C:x.safetensors"},
           {"30_shard_unc", "\\\\\\\\server\\\\share\\\\x.safetensors"}}) {
    AddIndexCase(cases, id, Index(R"({"w": ")" + shard + R"("})"), {}, "invalid shard path");
  }
  AddIndexCase(cases, "31_bin_shard_in_safetensors_index", Index(R"({"w": "a.bin"})"),
               {{"a.bin", "x"}}, "extension mismatch");
  AddIndexCase(cases, "32_missing_shard", Index(R"({"w": "a.safetensors"})"), {},
               "missing shard 'a.safetensors'");
  AddIndexCase(cases, "33_tensor_not_in_shard", Index(R"({"v": "a.safetensors"})"),
               {{"a.safetensors", OneTensorFile("w")}}, "tensor 'v' not found in shard");
  AddIndexCase(cases, "34_tensor_in_two_shards",
               Index(R"({"w": "a.safetensors", "x": "b.safetensors"})"),
               {{"a.safetensors", OneTensorFile("w")}, {"b.safetensors", OneTensorFile("w")}},
               "defined in multiple shards");
  AddIndexCase(cases, "35_weight_map_absent", R"({"metadata": {}})", {}, "missing \"weight_map\"");
  AddIndexCase(cases, "35_weight_map_not_object", Index("[]"), {},
               "\"weight_map\" must be an object");
  AddIndexCase(cases, "35_weight_map_non_string", Index(R"({"w": 1})"), {}, "must be a string");
  AddIndexCase(cases, "35_weight_map_duplicate_key",
               Index(R"({"w": "a.safetensors", "w": "b.safetensors"})"), {}, "duplicate key");
  AddIndexCase(cases, "35_index_nesting_129", DeepJson(129), {}, "nesting depth exceeds 128");
  cases->push_back({"index/shard_symlink_outside",
                    [](const std::string& dir) {
                      WriteFileBytes(dir + "/elsewhere/a.safetensors", OneTensorFile());
                      WriteFileBytes(dir + "/m/model.safetensors.index.json",
                                     Index(R"({"w": "a.safetensors"})"));
                      Link(dir + "/elsewhere/a.safetensors", dir + "/m/a.safetensors");
                      return Inspect(dir + "/m");
                    },
                    "symlink leads outside the model directory"});

  // Hub cache (36): `org/name` resolved through HF_HUB_CACHE.
  auto hub = [&](const std::string& id, std::function<void(const std::string& repo)> build,
                 const std::string& expected) {
    cases->push_back({"hub/" + id,
                      [build](const std::string& dir) {
                        build(dir + "/hub/models--org--name");
                        return Invocation{"HF_HUB_CACHE=" + Q(dir + "/hub"), "inspect org/name"};
                      },
                      expected});
  };
  hub(
      "36_refs_main_not_hex",
      [](const std::string& repo) { WriteFileBytes(repo + "/refs/main", "not-a-sha\n"); },
      "expected a 40-character lowercase hex commit sha");
  hub(
      "36_snapshot_missing",
      [](const std::string& repo) { WriteFileBytes(repo + "/refs/main", kSha); },
      "snapshot missing");
  hub(
      "36_dangling_blob_link",
      [](const std::string& repo) {
        WriteFileBytes(repo + "/refs/main", kSha);
        Link("../../blobs/absent", repo + "/snapshots/" + kSha + "/model.safetensors");
      },
      "dangling symlink");
  hub(
      "36_link_escapes_repo",
      [](const std::string& repo) {
        WriteFileBytes(repo + "/refs/main", kSha);
        WriteFileBytes(repo + "/../outside.safetensors", OneTensorFile());
        Link("../../../outside.safetensors", repo + "/snapshots/" + kSha + "/model.safetensors");
      },
      "symlink escapes the repo folder");

  // Model directories with hostile companions.
  auto model_dir = [&](const std::string& id, std::function<Invocation(const std::string&)> setup,
                       const std::string& expected) {
    cases->push_back({"model_dir/" + id, std::move(setup), expected});
  };
  model_dir(
      "config_nesting_129",
      [](const std::string& dir) {
        return Inspect(TinyLlamaWith(dir, "config.json", DeepJson(129)));
      },
      "nesting depth exceeds 128");
  model_dir(
      "config_duplicate_key",
      [](const std::string& dir) {
        return Inspect(
            TinyLlamaWith(dir, "config.json", R"({"model_type": "llama", "model_type": "gpt2"})"));
      },
      "duplicate key \"model_type\"");
  model_dir(
      "config_symlink_to_etc_passwd",
      [](const std::string& dir) {
        const std::string m = TinyLlama(dir, "m");
        fs::remove(m + "/config.json");
        Link("/etc/passwd", m + "/config.json");
        return Inspect(m);
      },
      "symlink leads outside the model directory");
  model_dir(
      "weights_symlink_outside",
      [](const std::string& dir) {
        const std::string m = TinyLlama(dir, "real");
        WriteFileBytes(dir + "/m/config.json", testing::ReadFileBytes(m + "/config.json"));
        Link(m + "/model.safetensors", dir + "/m/model.safetensors");
        return Inspect(dir + "/m");
      },
      "symlink leads outside the model directory");
  model_dir(
      "tokenizer_symlink_to_etc_passwd_convert",
      [](const std::string& dir) {
        const std::string m = TinyLlama(dir, "m");
        fs::remove(m + "/tokenizer.json");
        Link("/etc/passwd", m + "/tokenizer.json");
        return Invocation{"", "convert " + Q(m) + " " + Q(dir + "/out") + " --dtype f32"};
      },
      "symlink leads outside the model directory");
  model_dir(
      "tokenizer_nesting_129_convert_to_gguf",
      [](const std::string& dir) {
        const std::string m = TinyLlamaWith(dir, "tokenizer.json", DeepJson(129));
        return Invocation{"", "convert " + Q(m) + " " + Q(dir + "/out.gguf") + " --dtype f32"};
      },
      "nesting depth exceeds 128");
}

// ---- conversion (§7 66) and adapters (68-70) ----

std::string AdapterDir(const std::string& dir, const std::string& config,
                       const std::vector<testing::FixtureTensor>& tensors) {
  WriteFileBytes(dir + "/a/adapter_config.json", config);  // creates dir/a
  testing::WriteSafetensorsFixture(dir + "/a/adapter_model.safetensors", tensors);
  return dir + "/a";
}

std::vector<testing::FixtureTensor> LoraModule(const std::string& module, int64_t rank_a,
                                               int64_t rank_b, int64_t in, int64_t out) {
  const std::string key = "base_model.model." + module;
  return {testing::PatternTensor(key + ".lora_A.weight", formats::DType::kF32, {rank_a, in}, 1),
          testing::PatternTensor(key + ".lora_B.weight", formats::DType::kF32, {out, rank_b}, 2)};
}

// An FP8-quantized model directory (config.json quant_method "fp8", blocks
// of 2 × 2) whose 4 × 4 F8_E4M3 weight has `scale` (name, dtype, shape) as its
// scale tensor, or none when `scale` is empty (§7 67).
std::string Fp8Model(const std::string& dir, const std::string& scale_name,
                     const std::string& scale_dtype, std::vector<int64_t> scale_shape) {
  const std::string m = dir + "/m";
  WriteFileBytes(m + "/config.json",
                 R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                     "quantization_config": {"quant_method": "fp8",
                                             "weight_block_size": [2, 2]}})");
  SafetensorsBuilder b;
  b.Add("model.layers.0.mlp.down_proj.weight", "F8_E4M3", {4, 4}, std::string(16, '\x38'));
  if (!scale_name.empty()) {
    int64_t n = 1;
    for (int64_t d : scale_shape) n *= d;
    b.Add(scale_name, scale_dtype, scale_shape,
          std::string(static_cast<size_t>(n) * (scale_dtype == "F32" ? 4 : 2), '\0'));
  }
  WriteFileBytes(m + "/model.safetensors", b.Build());
  return m;
}

void AddFp8Cases(std::vector<CorpusCase>* cases) {
  const std::string w = "model.layers.0.mlp.down_proj.weight";
  const std::string missing = "FP8 tensor '" + w + "' has no '" + w +
                              "_scale_inv' scale tensor: refusing to dequantize";
  cases->push_back({"fp8/67_scale_missing_inspect",
                    [](const std::string& dir) { return Inspect(Fp8Model(dir, "", "", {})); },
                    missing});
  cases->push_back({"convert/67_fp8_scale_missing",
                    [](const std::string& dir) {
                      return Invocation{"", "convert " + Q(Fp8Model(dir, "", "", {})) + " " +
                                                Q(dir + "/out") + " --dtype bf16"};
                    },
                    missing});
  cases->push_back({"fp8/67_scale_wrong_shape",
                    [w](const std::string& dir) {
                      return Inspect(Fp8Model(dir, w + "_scale_inv", "F32", {1, 2}));
                    },
                    "has shape [1, 2] but '" + w + "' of shape [4, 4] with block size [2, 2] "
                    "needs [2, 2]"});
  cases->push_back({"fp8/67_scale_wrong_dtype",
                    [w](const std::string& dir) {
                      return Inspect(Fp8Model(dir, w + "_scale_inv", "I16", {2, 2}));
                    },
                    "a block scale must be F32, BF16 or F16"});
}

void AddConversionAndAdapterCases(std::vector<CorpusCase>* cases) {
  cases->push_back({"convert/66_bf16_1e5_to_f16",
                    [](const std::string& dir) {
                      SafetensorsBuilder b;
                      b.Add("w", "BF16", {2}, "\xC3\x47\xC3\x47");  // 99840 twice
                      WriteFileBytes(dir + "/x.safetensors", b.Build());
                      return Invocation{"", "convert " + Q(dir + "/x.safetensors") + " " +
                                                Q(dir + "/out") + " --dtype f16"};
                    },
                    "f16 cannot hold values beyond"});
  const std::string q = "model.layers.0.self_attn.q_proj";
  const std::string ok = R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8})";
  auto adapter = [&](const std::string& id, const std::string& config,
                     std::vector<testing::FixtureTensor> tensors, bool with_base,
                     const std::string& expected) {
    cases->push_back({"adapter/" + id,
                      [config, tensors, with_base](const std::string& dir) {
                        const std::string a = AdapterDir(dir, config, tensors);
                        std::string args = "lora inspect " + Q(a);
                        if (with_base) args += " --base " + Q(TinyLlama(dir, "base"));
                        return Invocation{"", args};
                      },
                      expected});
  };
  adapter("68_peft_type_missing", R"({"r": 4})", LoraModule(q, 4, 4, 64, 64), false,
          "`peft_type` is missing");
  adapter("68_peft_type_ia3", R"({"peft_type": "IA3"})", LoraModule(q, 4, 4, 64, 64), false,
          "peft_type 'IA3' is not LoRA");
  adapter("69_lora_a_without_lora_b", ok, {LoraModule(q, 4, 4, 64, 64)[0]}, false,
          "lora_A without lora_B");
  adapter("69_factor_ranks_differ", ok, LoraModule(q, 4, 2, 64, 64), false,
          "are not [r, in] and [out, r] of one rank r");
  adapter("69_rank_differs_from_config", ok, LoraModule(q, 2, 2, 64, 64), false,
          "lora_A has rank 2 but adapter_config.json says r = 4");
  adapter("69_dims_do_not_match_base", ok, LoraModule(q, 4, 4, 6, 5), true,
          "has shape [5, 6] but '" + q + ".weight' in");
  adapter("70_module_not_in_base", ok, LoraModule("model.layers.9.self_attn.q_proj", 4, 4, 64, 64),
          true, "does not have");
  adapter("config_nesting_129", DeepJson(129), LoraModule(q, 4, 4, 64, 64), false,
          "nesting depth exceeds 128");
  adapter("config_duplicate_key", R"({"peft_type": "LORA", "r": 4, "r": 8})",
          LoraModule(q, 4, 4, 64, 64), false, "duplicate key \"r\"");
  cases->push_back({"adapter/weights_symlink_outside",
                    [q, ok](const std::string& dir) {
                      fs::create_directories(dir + "/elsewhere");
                      testing::WriteSafetensorsFixture(dir + "/elsewhere/w.safetensors",
                                                       LoraModule(q, 4, 4, 64, 64));
                      WriteFileBytes(dir + "/a/adapter_config.json", ok);
                      Link(dir + "/elsewhere/w.safetensors", dir + "/a/adapter_model.safetensors");
                      return Invocation{"", "lora inspect " + Q(dir + "/a")};
                    },
                    "symlink leads outside the model directory"});
}

// ---- recipes: `merge --dry-run` and `moe` ----

// Anchors nested `levels` deep, each level aliasing the previous one 10 times.
std::string Laughs(int levels) {
  std::string out = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int level = 1; level < levels; ++level) {
    const std::string prev = "*l" + std::to_string(level - 1);
    out += "l" + std::to_string(level) + ": &l" + std::to_string(level) + " [" + prev;
    for (int i = 1; i < 10; ++i) out += ", " + prev;
    out += "]\n";
  }
  return out;
}

std::string AliasChain(int levels) {
  std::string out = "a0: &a0 [x]\n";
  for (int i = 1; i < levels; ++i) {
    out += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) +
           "]\n";
  }
  return out;
}

std::string WideList(int n) {
  std::string out = "x: [";
  for (int i = 0; i < n; ++i) out += "1,";
  return out + "1]\n";
}

constexpr const char* kLinear =
    "merge_method: linear\n"
    "models:\n"
    "  - model: a\n"
    "    parameters: {weight: 0.5}\n"
    "  - model: b\n"
    "    parameters: {weight: 0.5}\n";

void AddRecipeCase(std::vector<CorpusCase>* cases, const std::string& id,
                   std::function<std::string(const std::string& dir)> recipe,
                   const std::string& expected) {
  cases->push_back(
      {"recipe/" + id,
       [recipe](const std::string& dir) {
         WriteFileBytes(dir + "/r.yaml", recipe(dir));
         return Invocation{"", "merge --dry-run " + Q(dir + "/r.yaml") + " " + Q(dir + "/out")};
       },
       expected});
}

void AddRecipeCase(std::vector<CorpusCase>* cases, const std::string& id, const std::string& text,
                   const std::string& expected) {
  AddRecipeCase(
      cases, id, [text](const std::string&) { return text; }, expected);
}

void AddMoeCase(std::vector<CorpusCase>* cases, const std::string& id, const std::string& text,
                const std::string& expected) {
  cases->push_back({"moe_recipe/" + id,
                    [text](const std::string& dir) {
                      WriteFileBytes(dir + "/r.yaml", text);
                      return Invocation{"", "moe " + Q(dir + "/r.yaml") + " " + Q(dir + "/out")};
                    },
                    expected});
}

void AddRecipeCases(std::vector<CorpusCase>* cases) {
  const std::string linear = kLinear;
  AddRecipeCase(cases, "yaml_unclosed_flow_list", "merge_method: linear\nmodels: [\n",
                "YAML syntax error");
  AddRecipeCase(cases, "yaml_tab_indentation", "merge_method: linear\nmodels:\n\t- model: a\n",
                "YAML syntax error");
  AddRecipeCase(cases, "yaml_comma_loops_yaml_cpp", ",\n",
                "the YAML reader does not get past this text");
  AddRecipeCase(cases, "not_a_mapping", "- a\n- b\n", "a recipe must be a mapping");
  AddRecipeCase(cases, "empty", "# nothing here\n", "the recipe is empty");
  AddRecipeCase(cases, "duplicate_key", linear + "merge_method: ties\n",
                "duplicate key `merge_method`");
  AddRecipeCase(cases, "unknown_method",
                "merge_method: frobnicate\nmodels:\n  - model: a\n  - model: b\n",
                "unknown merge_method `frobnicate`");
  AddRecipeCase(cases, "missing_weight",
                "merge_method: linear\nmodels:\n  - model: a\n  - model: b\n",
                "model `a` has no `weight`");
  AddRecipeCase(cases, "parameters_as_list",
                "merge_method: linear\nparameters:\n  - weight: 1\nmodels:\n  - model: a\n",
                "`parameters` must be a mapping, got a list");
  AddRecipeCase(cases, "layer_range_empty",
                "merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n"
                "        layer_range: [4, 2]\n",
                "is empty");
  AddRecipeCase(
      cases, "layer_range_out_of_bounds",
      [](const std::string& dir) {
        return "merge_method: passthrough\nslices:\n  - sources:\n      - model: " +
               TinyLlama(dir, "m") + "\n        layer_range: [0, 10]\n";
      },
      "is out of bounds: it has 2 layers");
  AddRecipeCase(
      cases, "missing_model",
      [](const std::string& dir) {
        return "merge_method: linear\nmodels:\n  - model: " + dir +
               "/no-such-model\n    parameters: {weight: 1}\n";
      },
      "no such file or directory");
  AddRecipeCase(cases, "documents_in_a_cycle",
                "name: a\n" + linear + "base_model: b\n---\nname: b\n" + linear +
                    "base_model: a\n---\n" + linear,
                "refer to each other in a cycle");
  AddRecipeCase(cases, "unnamed_document_before_another", linear + "---\n" + linear,
                "has no `name:`");
  AddRecipeCase(cases, "document_name_parent_dir",
                "name: ../../escape\n" + linear + "---\n" + linear, "is a path, not a name");
  AddRecipeCase(cases, "document_name_absolute", "name: /tmp/escape\n" + linear + "---\n" + linear,
                "is a path, not a name");
  AddRecipeCase(cases, "moe_recipe_given_to_merge",
                "base_model: a\ngate_mode: random\nexperts:\n  - source_model: b\n",
                "this is a mergekit-moe recipe");
  AddRecipeCase(cases, "tokenizer_twice",
                linear + "tokenizer_source: base\ntokenizer:\n  source: union\n", "not both");
  AddRecipeCase(cases, "billion_laughs", linear + Laughs(10),
                "expands to more than 1000000 YAML nodes");
  AddRecipeCase(cases, "anchor_containing_itself", linear + "loop: &loop [x, *loop]\n",
                "YAML nesting deeper than 64 levels");
  AddRecipeCase(cases, "aliases_nested_70_deep", linear + AliasChain(70),
                "YAML nesting deeper than 64 levels");
  AddRecipeCase(cases, "text_nested_65_deep",
                linear + "x: " + std::string(64, '[') + std::string(64, ']') + "\n",
                "YAML nesting deeper than 64 levels");
  AddRecipeCase(cases, "text_nested_100000_deep",
                linear + "x: " + std::string(100000, '[') + std::string(100000, ']') + "\n",
                "YAML nesting deeper than 64 levels");
  AddRecipeCase(cases, "over_100000_nodes", linear + WideList(100001),
                "holds more than 100000 YAML nodes");
  AddRecipeCase(cases, "over_1_mib", linear + "# " + std::string(size_t{1} << 20, 'x') + "\n",
                "more than the limit of 1048576");
  AddRecipeCase(
      cases, "donor_tokenizer_symlink_to_etc_passwd",
      [](const std::string& dir) {
        const std::string m = TinyLlama(dir, "m");
        fs::remove(m + "/tokenizer.json");
        Link("/etc/passwd", m + "/tokenizer.json");
        return "merge_method: linear\nmodels:\n  - model: " + m + "\n    parameters: {weight: 1}\n";
      },
      "symlink leads outside the model directory");

  const std::string moe =
      "base_model: a\ngate_mode: random\nexperts:\n  - source_model: a\n"
      "  - source_model: b\n";
  AddMoeCase(cases, "billion_laughs", moe + Laughs(10), "expands to more than 1000000 YAML nodes");
  AddMoeCase(cases, "text_nested_65_deep",
             moe + "x: " + std::string(64, '[') + std::string(64, ']') + "\n",
             "YAML nesting deeper than 64 levels");
  AddMoeCase(cases, "unknown_gate_mode",
             "base_model: a\ngate_mode: psychic\nexperts:\n"
             "  - source_model: a\n  - source_model: b\n",
             "unknown `gate_mode` 'psychic'");
  AddMoeCase(cases, "no_base_model",
             "gate_mode: random\nexperts:\n  - source_model: a\n"
             "  - source_model: b\n",
             "needs `base_model:`");
  AddMoeCase(cases, "fewer_experts_than_per_token",
             "base_model: a\ngate_mode: random\nexperts_per_token: 3\nexperts:\n"
             "  - source_model: a\n  - source_model: b\n",
             "experts but `experts_per_token` is 3");
  AddMoeCase(cases, "hidden_gate_without_prompts",
             "base_model: a\ngate_mode: hidden\nexperts:\n  - source_model: a\n"
             "  - source_model: b\n",
             "has no `positive_prompts`");
}

std::vector<CorpusCase> Corpus() {
  std::vector<CorpusCase> cases;
  AddWeightsFileCases(&cases);
  AddTorchCases(&cases);
  AddDirectoryCases(&cases);
  AddConversionAndAdapterCases(&cases);
  AddFp8Cases(&cases);
  AddRecipeCases(&cases);
  return cases;
}

TEST_CASE("the malformed-input corpus has at least 70 distinct named cases",
          "[cli][malformed][corpus]") {
  const std::vector<CorpusCase> cases = Corpus();
  std::set<std::string> ids;
  std::map<std::string, size_t> per_group;
  for (const CorpusCase& c : cases) {
    CHECK(ids.insert(c.id).second);
    CHECK_FALSE(c.expected.empty());
    ++per_group[c.id.substr(0, c.id.find('/'))];
  }
  std::cout << "malformed corpus: " << cases.size() << " cases (";
  bool first = true;
  for (const auto& [group, n] : per_group) {
    std::cout << (first ? "" : ", ") << group << " " << n;
    first = false;
  }
  std::cout << ")\n";
  CHECK(cases.size() >= 70);
}

TEST_CASE("the malformed-input corpus exits 2 with the expected message of every case",
          "[cli][malformed][corpus]") {
  const std::vector<CorpusCase> cases = Corpus();
  for (const CorpusCase& c : cases) {
    DYNAMIC_SECTION(c.id) {
      TempDir dir;
      const Invocation inv = c.setup(dir.path());
      const Run r = RunAlloy(inv, dir.path());
      INFO("alloy " << inv.args << "\nstderr: " << r.err);
      CHECK(r.code == 2);
      CHECK_THAT(r.err, Catch::Contains(c.expected));
      // No crash report and no success output for a refused input.
      CHECK_THAT(r.err, Catch::StartsWith("alloy: error: ") || Catch::Contains("\nalloy: error: "));
      std::cout << "corpus " << c.id << ": exit " << r.code
                << (r.err.find(c.expected) != std::string::npos ? ", message ok"
                                                                : ", MESSAGE MISSING")
                << "\n";
    }
  }
}

}  // namespace
}  // namespace alloy::cli
