// Where outputs may go, through the built binary: an output overlapping an
// input is refused (exit 2) before anything is written, for every command
// family; a file size limit, a full filesystem and a read-only directory give
// exit 3, a message naming the file, and leave neither output nor
// temporaries behind.
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing_support::Binary;
using testing_support::Q;
using testing_support::Run;

// Tiny llama models m0 (base) and m1 (fine-tune) with 4 layers, a LoRA
// adapter for them, and a task_arithmetic recipe r.yaml (f32 output, about
// 0.5 MB).
void Setup(const TempDir& dir) {
  for (int i = 0; i < 2; ++i) {
    examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
    spec.num_layers = 4;
    spec.model_index = i;
    REQUIRE(examples::WriteTinyModel(spec, dir.Join("m" + std::to_string(i))).ok());
  }
  examples::TinyModelSpec base = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  base.num_layers = 4;
  REQUIRE(examples::WriteTinyLoraAdapter(base, examples::TinyLoraSpec{}, dir.Join("adapter")).ok());
  testing::WriteFileBytes(dir.Join("r.yaml"),
                          "models:\n"
                          "  - model: " +
                              dir.Join("m1") +
                              "\n"
                              "    parameters:\n"
                              "      weight: 0.5\n"
                              "merge_method: task_arithmetic\n"
                              "base_model: " +
                              dir.Join("m0") +
                              "\n"
                              "dtype: float32\n");
}

// Every file and directory under `dir`, relative, sorted.
std::vector<std::string> Tree(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    names.push_back(fs::relative(it->path(), dir).string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Paths under `dir` named like an alloy temporary.
std::vector<std::string> Temporaries(const std::string& dir) {
  std::vector<std::string> found;
  for (const std::string& name : Tree(dir)) {
    if (name.find(".alloy-partial-") != std::string::npos ||
        name.find(".tmp-") != std::string::npos || name.find(".alloy-old-") != std::string::npos) {
      found.push_back(name);
    }
  }
  return found;
}

// Runs `alloy <args>` and checks it is refused with exit 2 because `output`
// overlaps `input`, leaving the tree under `dir` as it was.
void CheckRefused(const TempDir& dir, const std::string& args, const std::string& output,
                  const std::string& input) {
  const std::vector<std::string> before = Tree(dir.path());
  const Run r = Binary(args, dir);
  INFO("alloy " << args << "\n" << r.err);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("alloy: error: output " + output) && Catch::Contains(input) &&
                        Catch::Contains("outside every input"));
  std::vector<std::string> after = Tree(dir.path());
  after.erase(std::remove_if(after.begin(), after.end(),
                             [](const std::string& n) { return n.ends_with(".txt"); }),
              after.end());
  std::vector<std::string> expected = before;
  expected.erase(std::remove_if(expected.begin(), expected.end(),
                                [](const std::string& n) { return n.ends_with(".txt"); }),
                 expected.end());
  CHECK(after == expected);
}

TEST_CASE("merge and upscale refuse outputs overlapping an input before writing",
          "[cli][reliability]") {
  TempDir dir;
  Setup(dir);
  const std::string recipe = Q(dir.Join("r.yaml"));
  CheckRefused(dir, "merge " + recipe + " " + Q(dir.Join("m0/out")), dir.Join("m0/out"),
               dir.Join("m0"));
  // The output named through a symlink to an input.
  fs::create_directory_symlink(dir.Join("m1"), dir.Join("link"));
  CheckRefused(dir, "merge " + recipe + " " + Q(dir.Join("link/sub")), dir.Join("link/sub"),
               dir.Join("m1"));
  // An output that contains the inputs (--overwrite would delete them).
  CheckRefused(dir, "merge " + recipe + " " + Q(dir.path()) + " --overwrite", dir.path(),
               dir.Join("m0"));
  // An intermediate of a multi-document recipe inside an input, refused
  // before the first document is written.
  testing::WriteFileBytes(dir.Join("multi.yaml"),
                          "name: stage\n"
                          "models:\n"
                          "  - model: " +
                              dir.Join("m0") +
                              "\n"
                              "    parameters: {weight: 1.0}\n"
                              "merge_method: linear\n"
                              "---\n"
                              "models:\n"
                              "  - model: stage\n"
                              "    parameters: {weight: 0.5}\n"
                              "merge_method: task_arithmetic\n"
                              "base_model: " +
                              dir.Join("m1") + "\n");
  CheckRefused(dir,
               "merge " + Q(dir.Join("multi.yaml")) + " " + Q(dir.Join("final")) +
                   " --intermediate-dir " + Q(dir.Join("m1/inter")),
               dir.Join("m1/inter/stage"), dir.Join("m1"));
  CheckRefused(dir, "upscale " + Q(dir.Join("m0")) + " " + Q(dir.Join("m0/up")) + " --layers 6",
               dir.Join("m0/up"), dir.Join("m0"));
  // Beside the inputs is fine.
  CHECK(Binary("merge " + recipe + " " + Q(dir.Join("m0-merged")) + " -q", dir).code == 0);
}

TEST_CASE("convert refuses outputs overlapping its input before writing", "[cli][reliability]") {
  TempDir dir;
  Setup(dir);
  const std::string m0 = dir.Join("m0");
  CheckRefused(dir, "convert " + Q(m0) + " " + Q(m0 + "/f32") + " --dtype f32", m0 + "/f32", m0);
  CheckRefused(dir, "convert " + Q(m0) + " " + Q(m0 + "/m.gguf") + " --dtype f16", m0 + "/m.gguf",
               m0);
  CheckRefused(dir,
               "convert " + Q(m0 + "/model.safetensors") + " " + Q(m0) + " --dtype f32 --overwrite",
               m0, m0 + "/model.safetensors");
  const Run ok = Binary("convert " + Q(m0) + " " + Q(dir.Join("m.gguf")) + " --dtype f16 -q", dir);
  CHECK(ok.code == 0);
  CheckRefused(
      dir,
      "convert " + Q(dir.Join("m.gguf")) + " " + Q(dir.Join("m.gguf")) + " --dtype f32 --overwrite",
      dir.Join("m.gguf"), dir.Join("m.gguf"));
}

TEST_CASE("moe and upcycle refuse outputs overlapping an input before writing",
          "[cli][reliability]") {
  TempDir dir;
  Setup(dir);
  CheckRefused(dir, "upcycle " + Q(dir.Join("m0")) + " " + Q(dir.Join("m0/moe")) + " --experts 2",
               dir.Join("m0/moe"), dir.Join("m0"));
  testing::WriteFileBytes(dir.Join("moe.yaml"), "base_model: " + dir.Join("m0") +
                                                    "\ngate_mode: random\nexperts:\n"
                                                    "  - source_model: " +
                                                    dir.Join("m0") +
                                                    "\n  - source_model: " + dir.Join("m1") + "\n");
  CheckRefused(dir, "moe " + Q(dir.Join("moe.yaml")) + " " + Q(dir.Join("m1/moe")),
               dir.Join("m1/moe"), dir.Join("m1"));
}

TEST_CASE("lora apply extract concat and combine refuse outputs overlapping an input",
          "[cli][reliability]") {
  TempDir dir;
  Setup(dir);
  const std::string a = dir.Join("adapter");
  CheckRefused(dir, "lora apply " + Q(dir.Join("m0")) + " " + Q(a) + " " + Q(a + "/merged"),
               a + "/merged", a);
  CheckRefused(dir,
               "lora extract --base " + Q(dir.Join("m0")) + " --model " + Q(dir.Join("m1")) + " " +
                   Q(dir.Join("m1/x")) + " --rank 2",
               dir.Join("m1/x"), dir.Join("m1"));
  CheckRefused(dir, "lora concat " + Q(a + "/cat") + " " + Q(a) + " " + Q(a), a + "/cat", a);
  CheckRefused(dir, "lora combine " + Q(a) + " " + Q(a) + " --method svd --rank 2 --overwrite", a,
               a);
}

// A tmpfs mounted on `dir` for the lifetime of the object; mounted() is false
// when the system does not allow it (not root, no CAP_SYS_ADMIN, seccomp).
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, unsigned long flags, const std::string& options) : dir_(dir) {
    fs::create_directories(dir);
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", flags, options.c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// Checks a failed write: exit 3, `message` in stderr, no output, and no
// temporaries under `parent`.
void CheckIoFailure(const Run& r, const std::string& output, const std::string& parent,
                    const std::string& message) {
  INFO(r.err);
  CHECK(r.code == 3);
  CHECK_THAT(r.err, Catch::Contains("alloy: error: ") && Catch::Contains(message));
  CHECK_FALSE(fs::exists(output));
  CHECK(Temporaries(parent).empty());
}

TEST_CASE("a file size limit fails the write with exit 3 and leaves nothing",
          "[cli][reliability]") {
  TempDir dir;
  Setup(dir);
  const std::string out_dir = dir.Join("out");
  fs::create_directories(out_dir);
  // ulimit -f counts 1024-byte blocks; the f32 merge's one shard is ~0.5 MB.
  // SIGXFSZ would kill alloy (exit 153 from bash) if alloy did not ignore it.
  const std::string bash = "/bin/bash";
  REQUIRE(fs::exists(bash));
  auto run = [&](const std::string& args) {
    const std::string cmd = bash + " -c " +
                            Q("ulimit -f 64; exec " + std::string(ALLOY_BINARY) + " " + args) +
                            " >" + dir.Join("stdout.txt") + " 2>" + dir.Join("stderr.txt");
    const int status = std::system(cmd.c_str());
    Run r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.err = testing::ReadFileBytes(dir.Join("stderr.txt"));
    return r;
  };
  Run r = run("merge " + dir.Join("r.yaml") + " " + out_dir + "/merged -q");
  CheckIoFailure(r, out_dir + "/merged", out_dir, "model.safetensors");
  CHECK_THAT(r.err, Catch::Contains("File too large") && Catch::Contains("ulimit -f"));
  r = run("convert " + dir.Join("m0") + " " + out_dir + "/m.gguf --dtype f32 -q");
  CheckIoFailure(r, out_dir + "/m.gguf", out_dir, "m.gguf");
  CHECK_THAT(r.err, Catch::Contains("File too large"));
  r = run("convert " + dir.Join("m0") + " " + out_dir + "/f32 --dtype f32 -q");
  CheckIoFailure(r, out_dir + "/f32", out_dir, "model.safetensors");
  CHECK(Tree(out_dir).empty());
}

TEST_CASE("a full filesystem fails the write with exit 3 and leaves nothing",
          "[cli][reliability]") {
  TempDir dir;
  Setup(dir);
  const std::string small = dir.Join("small");
  TmpfsMount mount(small, 0, "size=128k");
  if (!mount.mounted()) {
    WARN("skipped: cannot mount a 128 kB tmpfs here (needs root / CAP_SYS_ADMIN)");
    return;
  }
  Run r = Binary("merge " + Q(dir.Join("r.yaml")) + " " + Q(small + "/merged") + " -q", dir);
  CheckIoFailure(r, small + "/merged", small, "model.safetensors");
  CHECK_THAT(r.err, Catch::Contains("disk space") || Catch::Contains("No space left"));
  r = Binary("convert " + Q(dir.Join("m0")) + " " + Q(small + "/m.gguf") + " --dtype f32 -q", dir);
  CheckIoFailure(r, small + "/m.gguf", small, "m.gguf");
  r = Binary("convert " + Q(dir.Join("m0")) + " " + Q(small + "/f32") + " --dtype f32 -q", dir);
  CheckIoFailure(r, small + "/f32", small, "model.safetensors");
  // The failed runs took no space with them.
  CHECK(Tree(small).empty());
}

TEST_CASE("a read-only output directory fails with exit 3 and leaves nothing",
          "[cli][reliability]") {
  TempDir dir;
  Setup(dir);
  const std::string ro = dir.Join("ro");
  // As root, permission bits do not stop writes: use a read-only tmpfs where
  // possible, else (not root) a directory without write permission.
  TmpfsMount mount(ro, MS_RDONLY, "size=64k");
  if (!mount.mounted()) {
    if (::geteuid() == 0) {
      WARN("skipped: root cannot mount a read-only tmpfs here, and chmod does not stop root");
      return;
    }
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                            fs::perms::group_exec | fs::perms::others_read |
                            fs::perms::others_exec);
  }
  const char* why = mount.mounted() ? "Read-only file system" : "Permission denied";
  Run r = Binary("merge " + Q(dir.Join("r.yaml")) + " " + Q(ro + "/merged") + " -q", dir);
  CheckIoFailure(r, ro + "/merged", ro, why);
  CHECK_THAT(r.err, Catch::Contains(ro + "/merged"));
  r = Binary("convert " + Q(dir.Join("m0")) + " " + Q(ro + "/m.gguf") + " --dtype f16 -q", dir);
  CheckIoFailure(r, ro + "/m.gguf", ro, why);
  CHECK_THAT(r.err, Catch::Contains(ro + "/m.gguf"));
  r = Binary("convert " + Q(dir.Join("m0")) + " " + Q(ro + "/sub/f32") + " --dtype f32 -q", dir);
  CheckIoFailure(r, ro + "/sub/f32", ro, why);
  CHECK(Tree(ro).empty());
  if (!mount.mounted()) fs::permissions(ro, fs::perms::owner_all);
}

}  // namespace
}  // namespace alloy::cli
