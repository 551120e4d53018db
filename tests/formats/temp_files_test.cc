// Stale temporaries of killed runs: PlannedFile::Create and
// ModelDirWriter::Create remove those whose process is gone and keep those of
// live processes and every name that is not exactly alloy's.
#include "formats/temp_files.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>

#include "formats/model_writer.h"
#include "formats/planned_file.h"
#include "tests/testing/temp_dir.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// The pid of a child that has exited and been reaped: a real pid no process
// holds (until the kernel reuses it, which takes a full pid cycle).
int64_t DeadPid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  REQUIRE(pid > 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return pid;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool Has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST_CASE("temporary names are spelled as the writers spell them", "[formats][temp_files]") {
  CHECK(TempFileName("/a/m.gguf", 42, 3) == "/a/m.gguf.tmp-42-3");
  CHECK(PartialDirName("/a/out", 7) == "/a/out.alloy-partial-7");
  CHECK(OldDirName("out", 7) == "out.alloy-old-7");
  CHECK_FALSE(ProcessIsGone(::getpid()));
  CHECK_FALSE(ProcessIsGone(::getppid()));
  CHECK_FALSE(ProcessIsGone(0));
  CHECK(ProcessIsGone(DeadPid()));
}

TEST_CASE("PlannedFile::Create removes temporaries of dead processes only",
          "[formats][temp_files]") {
  TempDir tmp;
  const std::string path = tmp.Join("m.safetensors");
  const std::string dead = std::to_string(DeadPid());
  const std::string live = std::to_string(::getppid());
  testing::WriteFileBytes(path + ".tmp-" + dead + "-0", "stale");
  testing::WriteFileBytes(path + ".tmp-" + dead + "-17", "stale");
  testing::WriteFileBytes(path + ".tmp-" + live + "-0", "live");
  // Not alloy's exact naming, or another output's: kept.
  const std::vector<std::string> foreign = {
      "m.safetensors.tmp-" + dead,         "m.safetensors.tmp-0" + dead + "-0",
      "m.safetensors.tmp-" + dead + "-0x", "m.safetensors.tmp-" + dead + "-0.bak",
      "n.safetensors.tmp-" + dead + "-0",  "m.safetensors.tmpx-" + dead + "-0",
      "m.safetensors.tmp--" + dead + "-0"};
  for (const std::string& name : foreign) testing::WriteFileBytes(tmp.Join(name), "x");
  // A directory under a file's temporary name is not a file this writer made.
  fs::create_directory(path + ".tmp-" + dead + "-5");

  PlannedFile file(path, false);
  REQUIRE(file.Create("header", 64, {}).ok());
  const std::vector<std::string> names = ListDir(tmp.path());
  CHECK_FALSE(Has(names, "m.safetensors.tmp-" + dead + "-0"));
  CHECK_FALSE(Has(names, "m.safetensors.tmp-" + dead + "-17"));
  CHECK(Has(names, "m.safetensors.tmp-" + live + "-0"));
  CHECK(Has(names, "m.safetensors.tmp-" + dead + "-5"));
  for (const std::string& name : foreign) CHECK(Has(names, name));
  // Our own temporary is there until Finish or Abort.
  CHECK(std::count_if(names.begin(), names.end(), [](const std::string& n) {
          return n.starts_with("m.safetensors.tmp-" + std::to_string(::getpid()) + "-");
        }) == 1);
  file.Abort();
}

TEST_CASE("ModelDirWriter::Create removes partial directories of dead processes only",
          "[formats][temp_files]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  const std::string dead = std::to_string(DeadPid());
  const std::string live = std::to_string(::getppid());
  testing::WriteFileBytes(out + ".alloy-partial-" + dead + "/model.safetensors", "stale");
  testing::WriteFileBytes(
      out + ".alloy-partial-" + dead + "/model-00001-of-00002.safetensors.tmp-" + dead + "-0",
      "stale");
  testing::WriteFileBytes(out + ".alloy-partial-" + dead + "-2/x", "stale");
  testing::WriteFileBytes(out + ".alloy-partial-" + live + "/model.safetensors", "live");
  testing::WriteFileBytes(tmp.Join("elsewhere/keep.txt"), "keep");
  // Not removed: wrong kind (a file, a symlink to a directory), not alloy's
  // exact spelling, another output's.
  testing::WriteFileBytes(tmp.Join("out.alloy-partial-" + dead + "-0"), "x");
  fs::create_directory_symlink(tmp.Join("elsewhere"), tmp.Join("out.alloy-partial-" + dead + "-3"));
  const std::vector<std::string> foreign = {
      "out.alloy-partial-" + dead + "-0", "out.alloy-partial-" + dead + "-3",
      "out.alloy-partial-x" + dead, "out2.alloy-partial-" + dead,
      "out.alloy-partial-" + dead + "x"};
  fs::create_directory(tmp.Join("out.alloy-partial-x" + dead));
  fs::create_directory(tmp.Join("out2.alloy-partial-" + dead));
  fs::create_directory(tmp.Join("out.alloy-partial-" + dead + "x"));

  auto writer = ModelDirWriter::Create(out, {});
  REQUIRE(writer.ok());
  const std::vector<std::string> names = ListDir(tmp.path());
  CHECK_FALSE(Has(names, "out.alloy-partial-" + dead));
  CHECK_FALSE(Has(names, "out.alloy-partial-" + dead + "-2"));
  CHECK(Has(names, "out.alloy-partial-" + live));
  for (const std::string& name : foreign) CHECK(Has(names, name));
  CHECK(testing::ReadFileBytes(tmp.Join("elsewhere/keep.txt")) == "keep");
  (*writer)->Abort();
}

TEST_CASE("an old output a killed --overwrite moved aside is restored or removed",
          "[formats][temp_files]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  const std::string dead = std::to_string(DeadPid());
  testing::WriteFileBytes(out + ".alloy-old-" + dead + "/config.json", "{}");
  SECTION("restored when the output is missing") {
    const StaleCleanup cleanup = RemoveStaleTemporaries(out + "/");
    CHECK(cleanup.restored == std::vector<std::string>{out + ".alloy-old-" + dead});
    CHECK(ListDir(tmp.path()) == std::vector<std::string>{"out"});
    CHECK(testing::ReadFileBytes(out + "/config.json") == "{}");
    // ModelDirWriter then sees a non-empty output.
    auto writer = ModelDirWriter::Create(out, {});
    CHECK(writer.status().code() == ErrorCode::kInvalidArgument);
  }
  SECTION("removed when the new output was installed") {
    testing::WriteFileBytes(out + "/config.json", "new");
    const StaleCleanup cleanup = RemoveStaleTemporaries(out);
    CHECK(cleanup.removed == std::vector<std::string>{out + ".alloy-old-" + dead});
    CHECK(ListDir(tmp.path()) == std::vector<std::string>{"out"});
    CHECK(testing::ReadFileBytes(out + "/config.json") == "new");
  }
  SECTION("kept while its process lives") {
    const std::string live = out + ".alloy-old-" + std::to_string(::getppid());
    testing::WriteFileBytes(live + "/config.json", "{}");
    (void)RemoveStaleTemporaries(out);
    CHECK(fs::is_directory(live));
  }
}

}  // namespace
}  // namespace alloy::formats
