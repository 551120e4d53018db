#include "formats/model_ref.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>

#include "formats/model_dir.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::WriteFileBytes;

constexpr const char* kSha1 = "0123456789abcdef0123456789abcdef01234567";
constexpr const char* kSha2 = "89abcdef0123456789abcdef0123456789abcdef";

// An injected environment; values live as long as the FakeEnv.
class FakeEnv {
 public:
  FakeEnv(std::initializer_list<std::pair<const std::string, std::string>> vars) : vars_(vars) {}
  void Set(const std::string& k, const std::string& v) { vars_[k] = v; }
  GetEnvFn fn() const {
    return [this](const char* name) -> const char* {
      auto it = vars_.find(name);
      return it == vars_.end() ? nullptr : it->second.c_str();
    };
  }

 private:
  std::map<std::string, std::string> vars_;
};

// Builds `<root>/models--org--name/` the way huggingface_hub does: blobs/,
// snapshots/<sha>/<file> -> ../../blobs/<blob>, refs/<branch>.
class FakeRepo {
 public:
  FakeRepo(std::string root, const std::string& repo_id) : root_(std::move(root)) {
    std::string folder = "models--";
    for (char c : repo_id) folder += c == '/' ? std::string("--") : std::string(1, c);
    dir_ = root_ + "/" + folder;
    fs::create_directories(dir_ + "/blobs");
  }
  const std::string& dir() const { return dir_; }
  std::string Snapshot(const std::string& sha) const { return dir_ + "/snapshots/" + sha; }

  // Adds `file` (may contain '/') to snapshot `sha` as a link to a new blob.
  void AddFile(const std::string& sha, const std::string& file, const std::string& contents) {
    const std::string blob = "blob" + std::to_string(n_blobs_++);
    WriteFileBytes(dir_ + "/blobs/" + blob, contents);
    Link(sha, file, BlobTarget(file, blob));
  }
  // Adds a link with an arbitrary target.
  void Link(const std::string& sha, const std::string& file, const std::string& target) {
    const fs::path link = Snapshot(sha) + "/" + file;
    fs::create_directories(link.parent_path());
    fs::create_symlink(target, link);
  }
  void SetRef(const std::string& ref, const std::string& contents) {
    WriteFileBytes(dir_ + "/refs/" + ref, contents);
  }
  // The relative link target huggingface_hub writes for `file`.
  static std::string BlobTarget(const std::string& file, const std::string& blob) {
    std::string up = "../../";
    for (char c : file) {
      if (c == '/') up += "../";
    }
    return up + "blobs/" + blob;
  }

 private:
  std::string root_;
  std::string dir_;
  int n_blobs_ = 0;
};

// A cache with org/name: main -> kSha1 (config.json + weights), dev -> kSha2.
struct HubFixture {
  TempDir tmp;
  std::string root = tmp.Join("hub");
  FakeRepo repo{root, "org/name"};
  FakeEnv env{{"HF_HUB_CACHE", root}};

  HubFixture() {
    repo.AddFile(kSha1, "config.json", "{}");
    testing::WriteSafetensorsFixture(tmp.Join("w.safetensors"),
                                     {testing::PatternTensor("w", DType::kF32, {3}, 1)});
    repo.AddFile(kSha1, "model.safetensors", testing::ReadFileBytes(tmp.Join("w.safetensors")));
    repo.AddFile(kSha1, "sub/dir/tokenizer.json", "{}");
    repo.SetRef("main", kSha1);
    repo.AddFile(kSha2, "config.json", "{\"v\": 2}");
    repo.SetRef("dev", std::string(kSha2) + "\n");
  }
  Result<std::string> Resolve(std::string_view ref) const {
    return ResolveModelReference(ref, env.fn());
  }
};

void CheckFails(const Result<std::string>& r, ErrorCode code, const std::string& substring) {
  REQUIRE_FALSE(r.ok());
  INFO(r.status().ToString());
  CHECK(r.status().code() == code);
  CHECK_THAT(r.status().message(), Catch::Contains(substring));
}

TEST_CASE("hub cache roots follow the environment in order", "[formats][model_ref]") {
  FakeEnv all{{"HF_HUB_CACHE", "/a"},
              {"HUGGINGFACE_HUB_CACHE", "/b"},
              {"HF_HOME", "/c"},
              {"XDG_CACHE_HOME", "/d"},
              {"HOME", "/home/u"}};
  CHECK(HubCacheRoots(all.fn()) == std::vector<std::string>{"/a", "/b", "/c/hub",
                                                            "/d/huggingface/hub",
                                                            "/home/u/.cache/huggingface/hub"});
  CHECK(HubCacheRoots(FakeEnv{{"HUGGINGFACE_HUB_CACHE", "/b"}}.fn()) ==
        std::vector<std::string>{"/b"});
  CHECK(HubCacheRoots(FakeEnv{{"HF_HOME", "/c/"}}.fn()) == std::vector<std::string>{"/c/hub"});
  CHECK(HubCacheRoots(FakeEnv{{"XDG_CACHE_HOME", "/d"}}.fn()) ==
        std::vector<std::string>{"/d/huggingface/hub"});
  CHECK(HubCacheRoots(FakeEnv{{"HOME", "/home/u"}}.fn()) ==
        std::vector<std::string>{"/home/u/.cache/huggingface/hub"});
  CHECK(HubCacheRoots(FakeEnv{}.fn()).empty());
  // Empty values count as unset; duplicates are searched once.
  CHECK(HubCacheRoots(FakeEnv{
            {"HF_HUB_CACHE", ""},
            {"HF_HOME", "/x"},
            {"XDG_CACHE_HOME", "/x/.."},
            {"HUGGINGFACE_HUB_CACHE",
             "/x/hub/"}}.fn()) == std::vector<std::string>{"/x/hub", "/x/../huggingface/hub"});
}

TEST_CASE("tilde and $VAR are expanded in cache variables", "[formats][model_ref]") {
  FakeEnv env{{"HOME", "/home/u"},
              {"BASE", "/data"},
              {"HF_HUB_CACHE", "~/hf"},
              {"HUGGINGFACE_HUB_CACHE", "$BASE/cache"},
              {"HF_HOME", "${BASE}/home-$UNSET-~"},
              {"XDG_CACHE_HOME", "~other/x"}};
  CHECK(HubCacheRoots(env.fn()) ==
        std::vector<std::string>{"/home/u/hf", "/data/cache", "/data/home-$UNSET-~/hub",
                                 "~other/x/huggingface/hub", "/home/u/.cache/huggingface/hub"});
}

TEST_CASE("org/name resolves to the snapshot of main", "[formats][model_ref]") {
  HubFixture hub;
  auto r = hub.Resolve("org/name");
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  CHECK(*r == hub.repo.Snapshot(kSha1));
  auto src = OpenModel(*r);  // through the blob symlinks
  REQUIRE(src.ok());
  CHECK((*src)->Find("w") != nullptr);
  CHECK(ListCompanionFiles(*r) == std::vector<std::string>{"config.json"});
}

TEST_CASE("revisions: branch, commit, PR ref", "[formats][model_ref]") {
  HubFixture hub;
  CHECK(hub.Resolve("org/name@main").value() == hub.repo.Snapshot(kSha1));
  CHECK(hub.Resolve("org/name@dev").value() == hub.repo.Snapshot(kSha2));  // newline trimmed
  CHECK(hub.Resolve(std::string("org/name@") + kSha2).value() == hub.repo.Snapshot(kSha2));
  hub.repo.SetRef("refs/pr/7", kSha2);
  CHECK(hub.Resolve("org/name@refs/pr/7").value() == hub.repo.Snapshot(kSha2));
  CheckFails(hub.Resolve("org/name@nope"), ErrorCode::kNotFound, hub.repo.dir() + "/refs/nope");
  // A commit that is not in the cache.
  CheckFails(hub.Resolve("org/name@ffffffffffffffffffffffffffffffffffffffff"), ErrorCode::kNotFound,
             "snapshots/ffffffffffffffffffffffffffffffffffffffff");
}

TEST_CASE("a repo id without namespace", "[formats][model_ref]") {
  TempDir tmp;
  FakeRepo repo(tmp.path(), "gpt2");
  repo.AddFile(kSha1, "config.json", "{}");
  repo.SetRef("main", kSha1);
  CHECK(repo.dir() == tmp.Join("models--gpt2"));
  FakeEnv env{{"HF_HUB_CACHE", tmp.path()}};
  CHECK(ResolveModelReference("gpt2", env.fn()).value() == repo.Snapshot(kSha1));
}

TEST_CASE("an existing local path wins and is returned as is", "[formats][model_ref]") {
  HubFixture hub;
  WriteFileBytes(hub.tmp.Join("org/name/config.json"), "{}");
  const std::string local = hub.tmp.Join("org/name");
  CHECK(hub.Resolve(local).value() == local);
  CHECK(hub.Resolve(hub.tmp.Join("w.safetensors")).value() == hub.tmp.Join("w.safetensors"));
  CheckFails(hub.Resolve(hub.tmp.Join("missing")), ErrorCode::kNotFound, hub.tmp.Join("missing"));
  CheckFails(hub.Resolve("./missing"), ErrorCode::kNotFound, "no such file or directory");
}

TEST_CASE("each cache variable is searched, in order", "[formats][model_ref]") {
  TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"HF_HUB_CACHE", ""},
      {"HUGGINGFACE_HUB_CACHE", ""},
      {"HF_HOME", "/hub"},
      {"XDG_CACHE_HOME", "/huggingface/hub"},
      {"HOME", "/.cache/huggingface/hub"}};
  FakeEnv env{};
  std::vector<std::string> roots;
  for (size_t i = 0; i < vars.size(); ++i) {
    std::string name = "v";
    name += std::to_string(i);
    const std::string value = tmp.Join(name);
    env.Set(vars[i].first, value);
    roots.push_back(value + vars[i].second);
  }
  // A repo present only in root i is found there.
  for (size_t i = 0; i < roots.size(); ++i) {
    INFO(vars[i].first);
    std::string id = "org/only";
    id += std::to_string(i);
    FakeRepo repo(roots[i], id);
    repo.AddFile(kSha1, "config.json", "{}");
    repo.SetRef("main", kSha1);
    CHECK(ResolveModelReference(id, env.fn()).value() == repo.Snapshot(kSha1));
  }
  // A repo in every root resolves from the first one.
  std::vector<std::string> snapshots;
  for (size_t i = roots.size(); i-- > 0;) {
    FakeRepo repo(roots[i], "org/everywhere");
    repo.AddFile(kSha1, "config.json", "{}");
    repo.SetRef("main", kSha1);
    snapshots.insert(snapshots.begin(), repo.Snapshot(kSha1));
  }
  CHECK(ResolveModelReference("org/everywhere", env.fn()).value() == snapshots[0]);

  SECTION("not found lists every root") {
    auto r = ResolveModelReference("org/absent", env.fn());
    CheckFails(r, ErrorCode::kNotFound, "org/absent");
    for (const std::string& root : roots) {
      CHECK_THAT(r.status().message(), Catch::Contains(root + "/models--org--absent"));
    }
  }
}

TEST_CASE("no cache configured at all", "[formats][model_ref]") {
  CheckFails(ResolveModelReference("org/name", FakeEnv{}.fn()), ErrorCode::kNotFound,
             "no Hugging Face cache is configured");
}

TEST_CASE("case 36: corrupt or incomplete cache entries", "[formats][model_ref]") {
  HubFixture hub;
  const std::string refs_main = hub.repo.dir() + "/refs/main";
  SECTION("refs/main is not 40-hex") {
    const std::string bad = GENERATE(
        as<std::string>{}, "not-a-sha", "", "0123456789ABCDEF0123456789abcdef01234567",
        "0123456789abcdef0123456789abcdef0123456", "0123456789abcdef0123456789abcdef012345678");
    hub.repo.SetRef("main", bad);
    auto r = hub.Resolve("org/name");
    CheckFails(r, ErrorCode::kCorrupt, refs_main);
    CHECK_THAT(r.status().message(), Catch::Contains("cache entry corrupt"));
  }
  SECTION("missing snapshot") {
    fs::remove_all(hub.repo.Snapshot(kSha1));
    auto r = hub.Resolve("org/name");
    CheckFails(r, ErrorCode::kCorrupt, hub.repo.Snapshot(kSha1));
    CHECK_THAT(r.status().message(), Catch::Contains("cache entry incomplete"));
  }
  SECTION("dangling blob link") {
    hub.repo.Link(kSha1, "tokenizer.model", FakeRepo::BlobTarget("tokenizer.model", "gone"));
    auto r = hub.Resolve("org/name");
    CheckFails(r, ErrorCode::kCorrupt, hub.repo.Snapshot(kSha1) + "/tokenizer.model");
    CHECK_THAT(r.status().message(), Catch::Contains("dangling symlink"));
  }
  SECTION("dangling link in a subdirectory") {
    hub.repo.Link(kSha1, "a/b.json", "../../../blobs/gone");
    CheckFails(hub.Resolve("org/name"), ErrorCode::kCorrupt,
               hub.repo.Snapshot(kSha1) + "/a/b.json");
  }
  SECTION("relative link escaping the repo folder") {
    WriteFileBytes(hub.root + "/secret", "s");
    hub.repo.Link(kSha1, "evil.json", "../../../secret");
    auto r = hub.Resolve("org/name");
    CheckFails(r, ErrorCode::kCorrupt, hub.repo.Snapshot(kSha1) + "/evil.json");
    CHECK_THAT(r.status().message(), Catch::Contains("escapes the repo folder"));
  }
  SECTION("absolute link escaping the repo folder") {
    hub.repo.Link(kSha1, "evil.json", hub.tmp.Join("w.safetensors"));
    CheckFails(hub.Resolve("org/name"), ErrorCode::kCorrupt, "escapes the repo folder");
  }
  SECTION("a sibling repo with a common prefix is outside too") {
    FakeRepo sibling(hub.root, "org/name2");
    WriteFileBytes(sibling.dir() + "/blobs/x", "x");
    hub.repo.Link(kSha1, "x.json", "../../../models--org--name2/blobs/x");
    CheckFails(hub.Resolve("org/name"), ErrorCode::kCorrupt, "escapes the repo folder");
  }
}

TEST_CASE("invalid repo ids", "[formats][model_ref]") {
  HubFixture hub;
  const std::string id =
      GENERATE(as<std::string>{}, "org/na--me", "org/-name", "org/name-", "org/.name", "org/name.",
               "a/b/c", "org/name.git", "org/na me", "org/na..me", "org/", "@main", "org/n!me",
               "org/na:me", "org/" + std::string(97, 'x'));
  CheckFails(hub.Resolve(id), ErrorCode::kInvalidArgument, "repo id");
}

TEST_CASE("invalid revisions", "[formats][model_ref]") {
  HubFixture hub;
  const std::string ref = GENERATE(as<std::string>{}, "org/name@", "org/name@../../etc",
                                   "org/name@refs//x", "org/name@a\\b", "org/name@/abs");
  CheckFails(hub.Resolve(ref), ErrorCode::kInvalidArgument, "invalid revision");
}

TEST_CASE("valid but uncached repo ids are not found", "[formats][model_ref]") {
  HubFixture hub;
  CHECK(hub.Resolve("Org_1/Name.v2-x").status().code() == ErrorCode::kNotFound);
  CHECK(hub.Resolve("org/" + std::string(96, 'x')).status().code() == ErrorCode::kNotFound);
}

}  // namespace
}  // namespace alloy::formats
