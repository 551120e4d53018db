// Hostile inputs through the commands (docs/RELIABILITY.md, "Hostile
// inputs"): files of input directories that are symlinks leading outside
// them are refused unless --follow-symlinks, hub-cache snapshots keep
// working, and a billion-laughs recipe is refused fast with bounded memory.
#include <catch2/catch.hpp>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "examples/tiny_models.h"
#include "formats/file_util.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::cli {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::WriteFileBytes;
using testing_support::Binary;
using testing_support::Q;
using testing_support::TinyLlama;
using testing_support::Run;

struct ShellRun {
  int status = -1;
  double seconds = 0;
  long peak_rss_kib = 0;  // of the process the shell execs
};

// Runs `cmd` with /bin/sh and reports its peak RSS (wait4), which is alloy's
// when the command ends in `exec alloy ...`.
ShellRun RunMeasured(const std::string& cmd) {
  ShellRun run;
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct rusage usage {};
  REQUIRE(::wait4(pid, &run.status, 0, &usage) == pid);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.peak_rss_kib = usage.ru_maxrss;
  return run;
}

constexpr const char* kOutside = "symlink leads outside the model directory";


// Replaces `file` of the model directory `dir` by a symlink to `target`.
void LinkOut(const std::string& dir, const std::string& file, const std::string& target) {
  fs::remove(dir + "/" + file);
  fs::create_symlink(target, dir + "/" + file);
}

void ExpectRefused(const Run& r, const std::string& path) {
  INFO(r.err);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains(kOutside) && Catch::Contains(path) &&
                        Catch::Contains("--follow-symlinks"));
  CHECK_THAT(r.err, !Catch::Contains("root:"));  // nothing of /etc/passwd is echoed
}

TEST_CASE("every command that reads models offers --follow-symlinks", "[cli][hostile]") {
  TempDir dir;
  for (const char* command :
       {"inspect", "convert", "merge", "upscale", "compare", "moe", "upcycle", "lora inspect",
        "lora apply", "lora concat", "lora combine", "lora extract"}) {
    INFO(command);
    const Run r = Binary(std::string(command) + " --help", dir);
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains("--follow-symlinks"));
  }
}

TEST_CASE("inspect refuses weights linked from outside the directory unless followed",
          "[cli][hostile][symlinks]") {
  TempDir dir;
  const std::string real = TinyLlama(dir, "real");
  WriteFileBytes(dir.Join("m/config.json"), testing::ReadFileBytes(real + "/config.json"));
  fs::create_symlink(real + "/model.safetensors", dir.Join("m/model.safetensors"));
  ExpectRefused(Binary("inspect " + Q(dir.Join("m")), dir), dir.Join("m/model.safetensors"));
  const Run followed = Binary("inspect " + Q(dir.Join("m")) + " --follow-symlinks", dir);
  INFO(followed.err);
  CHECK(followed.code == 0);
  CHECK_THAT(followed.out, Catch::Contains("LlamaForCausalLM"));
  // Links that stay inside the directory need no flag.
  fs::create_directories(dir.Join("inside/weights"));
  fs::copy_file(real + "/model.safetensors", dir.Join("inside/weights/w.safetensors"));
  fs::copy_file(real + "/config.json", dir.Join("inside/config.json"));
  fs::create_symlink("weights/w.safetensors", dir.Join("inside/model.safetensors"));
  CHECK(Binary("inspect " + Q(dir.Join("inside")), dir).code == 0);
}

TEST_CASE("inspect refuses a config.json linked to /etc/passwd", "[cli][hostile][symlinks]") {
  TempDir dir;
  const std::string m = TinyLlama(dir, "m");
  LinkOut(m, "config.json", "/etc/passwd");
  ExpectRefused(Binary("inspect " + Q(m), dir), m + "/config.json");
}

TEST_CASE("merge refuses a donor tokenizer.json linked to /etc/passwd and writes nothing",
          "[cli][hostile][symlinks]") {
  TempDir dir;
  const std::string m0 = TinyLlama(dir, "m0");
  const std::string m1 = TinyLlama(dir, "m1", 1);
  LinkOut(m0, "tokenizer.json", "/etc/passwd");
  LinkOut(m1, "tokenizer.json", "/etc/passwd");
  WriteFileBytes(dir.Join("r.yaml"), "merge_method: linear\nmodels:\n  - model: " + m0 +
                                         "\n    parameters: {weight: 0.5}\n  - model: " + m1 +
                                         "\n    parameters: {weight: 0.5}\n");
  ExpectRefused(Binary("merge --dry-run " + Q(dir.Join("r.yaml")) + " " + Q(dir.Join("out")), dir),
                "tokenizer.json");
  ExpectRefused(Binary("merge -q " + Q(dir.Join("r.yaml")) + " " + Q(dir.Join("out")), dir),
                "tokenizer.json");
  CHECK_FALSE(fs::exists(dir.Join("out")));
  const Run followed =
      Binary("merge -q --follow-symlinks " + Q(dir.Join("r.yaml")) + " " + Q(dir.Join("out")), dir);
  INFO(followed.err);
  REQUIRE(followed.code == 0);
  CHECK(testing::ReadFileBytes(dir.Join("out/tokenizer.json")) ==
        testing::ReadFileBytes("/etc/passwd"));
}

TEST_CASE("convert refuses a tokenizer.json linked outside the model", "[cli][hostile][symlinks]") {
  TempDir dir;
  const std::string m = TinyLlama(dir, "m");
  WriteFileBytes(dir.Join("elsewhere/tokenizer.json"), "{}");
  LinkOut(m, "tokenizer.json", dir.Join("elsewhere/tokenizer.json"));
  ExpectRefused(Binary("convert -q " + Q(m) + " " + Q(dir.Join("out")) + " --dtype f32", dir),
                "tokenizer.json");
  CHECK_FALSE(fs::exists(dir.Join("out")));
  CHECK(Binary("convert -q --follow-symlinks " + Q(m) + " " + Q(dir.Join("out")) + " --dtype f32",
               dir)
            .code == 0);
  CHECK(testing::ReadFileBytes(dir.Join("out/tokenizer.json")) == "{}");
}

TEST_CASE("moe refuses the base's tokenizer.json linked outside", "[cli][hostile][symlinks]") {
  TempDir dir;
  const std::string m0 = TinyLlama(dir, "m0");
  const std::string m1 = TinyLlama(dir, "m1", 1);
  LinkOut(m0, "tokenizer.json", "/etc/passwd");
  WriteFileBytes(dir.Join("r.yaml"), "base_model: " + m0 +
                                         "\ngate_mode: random\nexperts:\n"
                                         "  - source_model: " +
                                         m0 + "\n  - source_model: " + m1 + "\n");
  ExpectRefused(Binary("moe -q " + Q(dir.Join("r.yaml")) + " " + Q(dir.Join("out")), dir),
                "tokenizer.json");
  CHECK_FALSE(fs::exists(dir.Join("out")));
  CHECK(Binary("moe -q --follow-symlinks " + Q(dir.Join("r.yaml")) + " " + Q(dir.Join("out")), dir)
            .code == 0);
}

TEST_CASE("compare and upscale refuse weights linked outside", "[cli][hostile][symlinks]") {
  TempDir dir;
  const std::string real = TinyLlama(dir, "real");
  const std::string m1 = TinyLlama(dir, "m1", 1);
  WriteFileBytes(dir.Join("m/config.json"), testing::ReadFileBytes(real + "/config.json"));
  fs::create_symlink(real + "/model.safetensors", dir.Join("m/model.safetensors"));
  ExpectRefused(Binary("compare -q " + Q(dir.Join("m")) + " " + Q(m1), dir), "model.safetensors");
  CHECK(Binary("compare -q --follow-symlinks " + Q(dir.Join("m")) + " " + Q(m1), dir).code == 0);
  ExpectRefused(
      Binary("upscale " + Q(dir.Join("m")) + " " + Q(dir.Join("up")) + " --layers 3", dir),
      "model.safetensors");
}

TEST_CASE("lora inspect refuses adapter weights linked outside", "[cli][hostile][symlinks]") {
  TempDir dir;
  const std::string key = "base_model.model.model.layers.0.self_attn.q_proj";
  fs::create_directories(dir.Join("elsewhere"));
  testing::WriteSafetensorsFixture(
      dir.Join("elsewhere/w.safetensors"),
      {testing::PatternTensor(key + ".lora_A.weight", formats::DType::kF32, {2, 64}, 1),
       testing::PatternTensor(key + ".lora_B.weight", formats::DType::kF32, {64, 2}, 2)});
  WriteFileBytes(dir.Join("a/adapter_config.json"), R"({"peft_type": "LORA", "r": 2})");
  fs::create_symlink(dir.Join("elsewhere/w.safetensors"), dir.Join("a/adapter_model.safetensors"));
  ExpectRefused(Binary("lora inspect " + Q(dir.Join("a")), dir), "adapter_model.safetensors");
  CHECK(Binary("lora inspect --follow-symlinks " + Q(dir.Join("a")), dir).code == 0);
}

TEST_CASE("a hub-cache snapshot named by its path is read through its blob links",
          "[cli][hostile][symlinks][hub]") {
  TempDir dir;
  const std::string plain = TinyLlama(dir, "plain");
  const std::string repo = dir.Join("hub/models--acme--tiny");
  const std::string snapshot = repo + "/snapshots/" + "0123456789abcdef0123456789abcdef01234567";
  fs::create_directories(repo + "/blobs");
  fs::create_directories(snapshot);
  WriteFileBytes(repo + "/refs/main", "0123456789abcdef0123456789abcdef01234567");
  int blob = 0;
  for (const auto& entry : fs::directory_iterator(plain)) {
    const std::string name = "b" + std::to_string(blob++);
    fs::copy_file(entry.path(), repo + "/blobs/" + name);
    fs::create_symlink("../../blobs/" + name, snapshot + "/" + entry.path().filename().string());
  }
  Run r = Binary("inspect " + Q(snapshot), dir);
  INFO(r.err);
  CHECK(r.code == 0);
  r = Binary("convert -q " + Q(snapshot) + " " + Q(dir.Join("out")) + " --dtype f32", dir);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(formats::IsRegularFile(dir.Join("out/tokenizer.json")));
  WriteFileBytes(dir.Join("r.yaml"),
                 "merge_method: linear\nmodels:\n  - model: acme/tiny\n"
                 "    parameters: {weight: 1}\n");
  // By hub id: Binary() has no environment knob, so the shell sets it.
  const std::string cmd = "HF_HUB_CACHE=" + Q(dir.Join("hub")) + " " + std::string(ALLOY_BINARY) +
                          " merge -q " + Q(dir.Join("r.yaml")) + " " + Q(dir.Join("merged")) +
                          " 2>" + Q(dir.Join("err.txt"));
  CHECK(std::system(cmd.c_str()) == 0);
  CHECK(formats::IsRegularFile(dir.Join("merged/tokenizer.json")));
}

TEST_CASE("a billion-laughs recipe is refused in under a second with bounded memory",
          "[cli][hostile][yaml]") {
  TempDir dir;
  std::string laughs = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int level = 1; level < 10; ++level) {
    const std::string prev = "*l" + std::to_string(level - 1);
    laughs += "l" + std::to_string(level) + ": &l" + std::to_string(level) + " [" + prev;
    for (int i = 1; i < 10; ++i) laughs += ", " + prev;
    laughs += "]\n";
  }
  WriteFileBytes(dir.Join("merge.yaml"),
                 "merge_method: linear\nmodels:\n  - model: a\n"
                 "  - model: b\n" +
                     laughs);
  WriteFileBytes(dir.Join("moe.yaml"),
                 "base_model: a\ngate_mode: random\nexperts:\n"
                 "  - source_model: a\n  - source_model: b\n" +
                     laughs);
  for (const std::string& args :
       {"merge --dry-run " + Q(dir.Join("merge.yaml")) + " " + Q(dir.Join("out")),
        "moe " + Q(dir.Join("moe.yaml")) + " " + Q(dir.Join("out"))}) {
    INFO(args);
    // 512 MiB of address space: 10^10 expanded nodes would need terabytes.
    const std::string limit = testing_support::kSanitizedBuild ? "" : "ulimit -v 524288; ";
    const ShellRun run = RunMeasured(limit + "exec " + std::string(ALLOY_BINARY) + " " + args +
                                     " 2>" + Q(dir.Join("err.txt")));
    const std::string err = testing::ReadFileBytes(dir.Join("err.txt"));
    INFO(err);
    INFO("peak RSS " << run.peak_rss_kib << " KiB, " << run.seconds << " s");
    CHECK(WIFEXITED(run.status));
    CHECK(WEXITSTATUS(run.status) == 2);
    CHECK_THAT(err, Catch::Contains("expands to more than 1000000 YAML nodes"));
    CHECK(run.peak_rss_kib < (testing_support::kSanitizedBuild ? 512 : 256) * 1024);
    CHECK(run.seconds < (testing_support::kSanitizedBuild ? 5.0 : 1.0));
  }
}

}  // namespace
}  // namespace alloy::cli
