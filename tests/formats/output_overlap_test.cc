// CheckOutputOutsideInputs: an output that is, contains or lies inside an
// input is refused, also through symlinks and unnormalized spellings.
#include "formats/output_overlap.h"

#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/testing/temp_dir.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

void CheckRefused(const std::string& out, const std::string& in, const std::string& relation) {
  const Status st = CheckOutputOutsideInputs(out, {"", in});
  INFO(out << " vs " << in << ": " << st.ToString());
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains(out) && Catch::Contains(in) &&
                               Catch::Contains(relation) && Catch::Contains("corrupt"));
}

TEST_CASE("outputs overlapping an input are refused", "[formats][output_overlap]") {
  TempDir tmp;
  const std::string model = tmp.Join("model");
  testing::WriteFileBytes(model + "/model.safetensors", "x");
  testing::WriteFileBytes(tmp.Join("m.gguf"), "x");
  fs::create_directory_symlink(model, tmp.Join("link"));

  CheckRefused(model, model, "is the input");
  CheckRefused(model + "/", model, "is the input");
  CheckRefused(model + "/../model", model, "is the input");
  CheckRefused(tmp.Join("link"), model, "is the input");
  CheckRefused(model + "/out", model, "is inside the input");
  CheckRefused(tmp.Join("link/new/out"), model, "is inside the input");
  CheckRefused(model + "/model.safetensors", model, "is inside the input");
  CheckRefused(tmp.path(), model, "contains the input");
  CheckRefused(tmp.Join("m.gguf"), tmp.Join("m.gguf"), "is the input");
  CheckRefused(tmp.path(), model + "/model.safetensors", "contains the input");
  // The input given through the symlink.
  CheckRefused(model + "/sub", tmp.Join("link"), "is inside the input");
}

TEST_CASE("outputs beside the inputs are accepted", "[formats][output_overlap]") {
  TempDir tmp;
  const std::string model = tmp.Join("model");
  testing::WriteFileBytes(model + "/model.safetensors", "x");
  CHECK(CheckOutputOutsideInputs(tmp.Join("model2"), {model}).ok());
  CHECK(CheckOutputOutsideInputs(tmp.Join("mode"), {model}).ok());
  CHECK(CheckOutputOutsideInputs(tmp.Join("out/model"), {model}).ok());
  CHECK(CheckOutputOutsideInputs(tmp.Join("model.gguf"), {model}).ok());
  CHECK(CheckOutputOutsideInputs(tmp.Join("x"), {}).ok());
  CHECK(CheckOutputOutsideInputs(tmp.Join("x"), {"org/not-a-local-path"}).ok());
}

}  // namespace
}  // namespace alloy::formats
