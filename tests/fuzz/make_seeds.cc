// Writes the generated seed corpora for the fuzz targets into <out>/<target>/:
// the fixture model's index and shards (sharded_index_fuzz, safetensors_fuzz)
// and the fixture adapter's config and weights (lora_config_fuzz,
// safetensors_fuzz), small GGUF files written by GgufWriter (gguf_fuzz), and
// small torch.save archives (torch_fuzz) with their data.pkl streams plus a
// few hand-written pickles (pickle_fuzz).
// Recipe seeds are copied from ../shared/recipes by the Makefile.
// Usage: make_seeds <out>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/testing/tokenizer_fixtures.h"
#include "tests/testing/torch_builder.h"

namespace fs = std::filesystem;

namespace {

// One GGUF seed: `kvs`, then `tensors` of `type` with the given ne (GGUF
// order), filled with a byte pattern (valid f16/bf16/Q8_0 scales aside, any
// bytes are valid data).
alloy::formats::Status WriteGgufSeed(const fs::path& path,
                                     const std::vector<alloy::formats::GgufKv>& kvs,
                                     const std::vector<alloy::formats::GgufTensor>& tensors,
                                     uint32_t alignment = alloy::formats::kGgufDefaultAlignment) {
  alloy::formats::GgufWriter w(path.string(), false);
  ALLOY_RETURN_IF_ERROR(w.Begin(kvs, tensors, alignment));
  for (size_t i = 0; i < w.tensors().size(); ++i) {
    std::vector<uint8_t> bytes(static_cast<size_t>(w.tensors()[i].nbytes));
    for (size_t j = 0; j < bytes.size(); ++j) bytes[j] = static_cast<uint8_t>(j * 7 + i);
    ALLOY_RETURN_IF_ERROR(w.WriteAt(i, 0, bytes));
  }
  return w.Finish();
}

alloy::formats::Status WriteGgufSeeds(const fs::path& dir, int* n) {
  using namespace alloy::formats;
  auto tensor = [](std::string name, std::vector<int64_t> ne, GgmlType type) {
    GgufTensor t;
    t.name = std::move(name);
    t.ne = std::move(ne);
    t.type = static_cast<uint32_t>(type);
    return t;
  };
  auto scalar = [](GgufValueType type, std::string raw) {
    GgufValue v;
    v.type = type;
    v.raw = std::move(raw);
    return v;
  };
  const GgufKv arch{"general.architecture", GgufValue::String("llama")};
  // The spec's minimal example (checkpoint-formats.md §4.1).
  ALLOY_RETURN_IF_ERROR(WriteGgufSeed(dir / "gen-minimal.gguf", {arch},
                                      {tensor("t", {2}, GgmlType::kF32)}));
  // Every metadata type and the tokenizer arrays.
  const std::vector<float> scores = {0.0f, -1.0f, -2.0f};
  const std::vector<int32_t> types = {3, 1, 1};
  const std::vector<GgufKv> kvs = {
      arch,
      {"general.name", GgufValue::String("seed")},
      {"llama.block_count", GgufValue::Uint32(1)},
      {"llama.rope.freq_base", GgufValue::Float32(10000.0f)},
      {"t.u8", scalar(GgufValueType::kU8, "\x07")},
      {"t.i8", scalar(GgufValueType::kI8, "\xf9")},
      {"t.u16", scalar(GgufValueType::kU16, std::string("\x01\x02", 2))},
      {"t.i16", scalar(GgufValueType::kI16, std::string("\xff\xff", 2))},
      {"t.i32", GgufValue::Int32(-3)},
      {"t.bool", GgufValue::Bool(true)},
      {"t.u64", scalar(GgufValueType::kU64, std::string(8, '\x01'))},
      {"t.i64", scalar(GgufValueType::kI64, std::string(8, '\xff'))},
      {"t.f64", scalar(GgufValueType::kF64, std::string("\0\0\0\0\0\0\xf0\x3f", 8))},
      {"tokenizer.ggml.model", GgufValue::String("llama")},
      {"tokenizer.ggml.tokens", GgufValue::StringArray({"<s>", "</s>", "\xE2\x96\x81" "a"})},
      {"tokenizer.ggml.scores", GgufValue::Float32Array(scores)},
      {"tokenizer.ggml.token_type", GgufValue::Int32Array(types)},
  };
  ALLOY_RETURN_IF_ERROR(WriteGgufSeed(
      dir / "gen-every-type.gguf", kvs,
      {tensor("token_embd.weight", {4, 3}, GgmlType::kF32),
       tensor("blk.0.attn_q.weight", {4, 4}, GgmlType::kF16),
       tensor("blk.0.attn_k.weight", {4, 2}, GgmlType::kBF16),
       tensor("blk.0.ffn_down.weight", {32, 2}, GgmlType::kQ8_0),
       tensor("blk.0.ffn_up.weight", {32, 1}, GgmlType::kQ4_0),
       tensor("blk.0.ids", {3}, GgmlType::kI32), tensor("blk.0.scalar", {}, GgmlType::kF64),
       tensor("blk.0.empty", {0, 2}, GgmlType::kI8)}));
  // A 64-byte alignment (recorded as general.alignment) and K-quant blocks.
  ALLOY_RETURN_IF_ERROR(WriteGgufSeed(dir / "gen-align64.gguf", {arch},
                                      {tensor("a", {3}, GgmlType::kI16),
                                       tensor("b", {256}, GgmlType::kQ4_K)},
                                      64));
  *n += 3;
  return Status::OK();
}

void PutLe(std::string* out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::string F32Bytes(size_t n, float first) {
  std::string out(n * 4, '\0');
  for (size_t i = 0; i < n; ++i) {
    const float v = first + 0.5f * static_cast<float>(i);
    std::memcpy(out.data() + 4 * i, &v, 4);
  }
  return out;
}

// A protocol-4 pickle with the opcodes torch.save does not use (FRAME,
// MEMOIZE, STACK_GLOBAL, NEWOBJ, bytes, floats, big LONG1, lists) and a dict
// that holds itself (a cycle through the memo).
std::string Protocol4Pickle() {
  alloy::testing::PickleWriter body;
  body.EmptyDict().Op(0x94).Mark();  // memo 0: the dict
  body.ShortUnicode("list").EmptyList().Op(0x94).Mark().Int(1).Int(300).Int(-7).Op('e');
  body.ShortUnicode("bytes").Op('C').Raw(std::string("\x03" "abc", 4));
  body.ShortUnicode("bytes4").Op('B').Raw(std::string("\x02\0\0\0" "hi", 6));
  body.ShortUnicode("latin1").Global("_codecs", "encode").ShortUnicode("\xc3\xa9t\xc3\xa9");
  body.ShortUnicode("latin1").TupleN(2).Reduce();
  body.ShortUnicode("float").Op('G').Raw(std::string("\x3f\xf8\0\0\0\0\0\0", 8));
  body.ShortUnicode("long").Op(0x8A).Raw(std::string("\x09\1\2\3\4\5\6\7\x08\x09", 10));
  body.ShortUnicode("flags").None().Bool(true).Bool(false).TupleN(3);
  body.ShortUnicode("od").StackGlobal("collections", "OrderedDict").EmptyTuple().Op(0x81);
  body.ShortUnicode("dtype").StackGlobal("torch", "bfloat16");
  body.ShortUnicode("self").Get(0);
  body.SetItems().Stop();
  std::string frame_len;
  PutLe(&frame_len, body.bytes().size(), 8);
  alloy::testing::PickleWriter w;
  return w.Proto(4).Op(0x95).Raw(frame_len).Raw(body.bytes()).bytes();
}

// torch.save-like archives (torch_fuzz) and their data.pkl streams plus a
// few hand-written pickles (pickle_fuzz).
void WriteTorchSeeds(const fs::path& torch_dir, const fs::path& pickle_dir, int* n) {
  using alloy::testing::TorchBuilder;
  using alloy::testing::TorchTensor;
  struct Seed {
    const char* name;
    TorchBuilder builder;
    bool zip64_end = false;
  };
  std::vector<Seed> seeds;
  {
    TorchBuilder b;
    b.Storage("0", F32Bytes(6, 1.0f)).Storage("1", F32Bytes(3, -1.0f));
    b.Add({.name = "layer.weight", .storage_key = "0", .size = {2, 3}});
    b.Add({.name = "layer.bias", .storage_key = "1", .size = {3}});
    seeds.push_back({"gen-f32.bin", b});
    seeds.push_back({"gen-f32-zip64.bin", b, true});
  }
  {
    TorchBuilder b;
    b.Storage("0", alloy::testing::U16Bytes({0x3f80, 0x4000, 0x4040, 0x4080, 0xbf80, 0, 0x7f80,
                                             0x3f00}));
    b.Storage("1", alloy::testing::U16Bytes({0x3c00, 0x4000, 0xc000, 0x3800}));
    b.Storage("2", alloy::testing::U16Bytes({0x3f80, 0x4000}));
    b.Add({.name = "embed.weight", .storage_key = "0", .storage_class = "BFloat16Storage",
           .size = {2, 4}});
    b.Add({.name = "norm.weight", .storage_key = "1", .storage_class = "HalfStorage",
           .size = {4}, .parameter = true});
    b.Add({.name = "v3.weight", .storage_key = "2", .storage_class = "UntypedStorage",
           .size = {2}, .v3_dtype = "bfloat16"});
    seeds.push_back({"gen-bf16.bin", b});
  }
  {
    // Tied weights: two slices of one storage, and a memo alias of the first.
    TorchBuilder b;
    b.Storage("0", F32Bytes(12, 0.25f));
    b.Add({.name = "a.weight", .storage_key = "0", .size = {2, 3}});
    b.Add({.name = "b.weight", .storage_key = "0", .offset = 6, .size = {2, 3}});
    b.Add({.name = "tied.weight", .alias_of = "a.weight"});
    seeds.push_back({"gen-shared.bin", b});
  }
  {
    // A saved `.T`: strides (1, 3) over the storage of a [2, 3] tensor.
    TorchBuilder b;
    b.Storage("0", F32Bytes(6, 2.0f));
    b.Add({.name = "w", .storage_key = "0", .size = {2, 3}});
    b.Add({.name = "w.T", .storage_key = "0", .size = {3, 2}, .stride = {1, 3}});
    seeds.push_back({"gen-transposed.bin", b});
    b.ByteOrder("big");
    seeds.push_back({"gen-bigendian.bin", b});
  }
  {
    TorchBuilder b;
    b.Storage("0", F32Bytes(4, 3.0f)).Storage("1", alloy::testing::I64Bytes({0, 1, 2}));
    b.Add({.name = "model.w", .storage_key = "0", .size = {2, 2}});
    b.Add({.name = "model.ids", .storage_key = "1", .storage_class = "LongStorage", .size = {3}});
    b.Wrap("state_dict");
    seeds.push_back({"gen-state-dict.bin", b});
  }
  for (const Seed& seed : seeds) {
    alloy::testing::ZipOptions zip;
    zip.zip64_end = seed.zip64_end;
    zip.record_crc = false;
    alloy::fuzz::WriteFile((torch_dir / seed.name).string(), seed.builder.Build(zip));
    if (!seed.zip64_end) {
      alloy::fuzz::WriteFile((pickle_dir / (std::string(seed.name) + ".pkl")).string(),
                      seed.builder.PickleBytes());
    }
    ++*n;
  }
  alloy::fuzz::WriteFile((pickle_dir / "gen-protocol4.pkl").string(), Protocol4Pickle());
  alloy::fuzz::WriteFile((pickle_dir / "gen-malicious.pkl").string(),
                  alloy::testing::MaliciousPickle("os", "system", true));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  const std::string work = alloy::fuzz::ProcessDir();
  const std::string model = work + "/model", adapter = work + "/adapter";
  alloy::formats::Status s = alloy::examples::WriteTinyModel(alloy::fuzz::FixtureModelSpec(), model);
  if (s.ok()) {
    s = alloy::examples::WriteTinyLoraAdapter(alloy::fuzz::FixtureModelSpec(),
                                              alloy::fuzz::FixtureLoraSpec(), adapter);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "make_seeds: %s\n", s.ToString().c_str());
    return 1;
  }
  for (const char* t :
       {"safetensors_fuzz", "sharded_index_fuzz", "lora_config_fuzz", "gguf_fuzz", "torch_fuzz",
        "pickle_fuzz", "tokenizer_fuzz"}) {
    fs::create_directories(out / t);
  }
  const auto copy = [](const fs::path& from, const fs::path& to) {
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  };
  int n = 0;
  for (const auto& e : fs::directory_iterator(model)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".safetensors")) copy(e.path(), out / "safetensors_fuzz" / ("gen-" + name)), ++n;
  }
  copy(model + "/model.safetensors.index.json", out / "sharded_index_fuzz" / "gen-index.json");
  copy(adapter + "/adapter_model.safetensors", out / "safetensors_fuzz" / "gen-adapter.safetensors");
  copy(adapter + "/adapter_config.json", out / "lora_config_fuzz" / "gen-adapter_config.json");
  int n_gguf = 0;
  s = WriteGgufSeeds(out / "gguf_fuzz", &n_gguf);
  if (!s.ok()) {
    std::fprintf(stderr, "make_seeds: %s\n", s.ToString().c_str());
    return 1;
  }
  int n_torch = 0;
  WriteTorchSeeds(out / "torch_fuzz", out / "pickle_fuzz", &n_torch);
  // tokenizer.json: the fixture model's (WordLevel) and the test styles.
  copy(model + "/tokenizer.json", out / "tokenizer_fuzz" / "gen-wordlevel.json");
  namespace t = alloy::testing;
  const std::pair<const char*, nlohmann::json> tokenizers[] = {
      {"gen-gpt2.json", t::Gpt2Style()},           {"gen-llama3.json", t::Llama3Style()},
      {"gen-llama2-legacy.json", t::Llama2Style(true)},
      {"gen-llama2.json", t::Llama2Style(false)},  {"gen-unigram.json", t::UnigramStyle(true)},
      {"gen-wordpiece.json", t::WordPieceStyle()}};
  for (const auto& [name, json] : tokenizers) {
    alloy::fuzz::WriteFile((out / "tokenizer_fuzz" / name).string(), json.dump());
  }
  std::printf("make_seeds: %d shard seeds + index + adapter + %d gguf + %d torch into %s\n", n,
              n_gguf, n_torch, out.c_str());
  return 0;
}
