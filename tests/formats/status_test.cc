#include "formats/status.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>

namespace alloy::formats {
namespace {

Status FailIf(bool fail) { return fail ? Status::Corrupt("bad bytes") : Status::OK(); }

Result<int> Half(int v) {
  if (v % 2 != 0) return Status::InvalidArgument("odd: " + std::to_string(v));
  return v / 2;
}

Status Chain(bool fail, int* out) {
  ALLOY_RETURN_IF_ERROR(FailIf(fail));
  *out = 1;
  return Status::OK();
}

Result<int> Quarter(int v) {
  ALLOY_ASSIGN_OR_RETURN(int half, Half(v));
  ALLOY_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

TEST_CASE("Status OK is empty and cheap", "[formats][status]") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.code() == ErrorCode::kOk);
  CHECK(ok.message().empty());
  CHECK(ok.ToString() == "OK");
  CHECK(Status::OK().ok());
  CHECK(ok.WithContext("file").ok());
}

TEST_CASE("Status factories set code and message", "[formats][status]") {
  struct Row {
    Status status;
    ErrorCode code;
    std::string name;
  };
  Row rows[] = {
      {Status::IoError("m"), ErrorCode::kIoError, "I/O error"},
      {Status::NotFound("m"), ErrorCode::kNotFound, "not found"},
      {Status::Corrupt("m"), ErrorCode::kCorrupt, "corrupt"},
      {Status::Unsupported("m"), ErrorCode::kUnsupported, "unsupported"},
      {Status::InvalidArgument("m"), ErrorCode::kInvalidArgument, "invalid argument"},
  };
  for (const Row& row : rows) {
    CHECK_FALSE(row.status.ok());
    CHECK(row.status.code() == row.code);
    CHECK(row.status.message() == "m");
    CHECK(row.status.ToString() == row.name + ": m");
    CHECK(ErrorCodeName(row.code) == row.name);
  }
  CHECK(ErrorCodeName(ErrorCode::kOk) == "OK");
  // A kOk code with a message is still OK.
  CHECK(Status(ErrorCode::kOk, "ignored").ok());
}

TEST_CASE("Status copies deeply and moves", "[formats][status]") {
  Status a = Status::Corrupt("x");
  Status b = a;
  CHECK(b.code() == ErrorCode::kCorrupt);
  CHECK(b.message() == "x");
  Status c;
  c = a;
  CHECK(c.message() == "x");
  c = Status::OK();
  CHECK(c.ok());
  CHECK(a.message() == "x");
  Status d = std::move(a);
  CHECK(d.message() == "x");
  Status& self = d;
  d = self;
  CHECK(d.message() == "x");
}

TEST_CASE("Status WithContext prefixes the message", "[formats][status]") {
  Status s = Status::NotFound("tensor 'w'").WithContext("m.safetensors");
  CHECK(s.code() == ErrorCode::kNotFound);
  CHECK(s.message() == "m.safetensors: tensor 'w'");
}

TEST_CASE("Result holds a value or a status", "[formats][status]") {
  Result<int> good = Half(8);
  REQUIRE(good.ok());
  CHECK(*good == 4);
  CHECK(good.value() == 4);
  CHECK(good.status().ok());

  Result<int> bad = Half(3);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
  CHECK(bad.status().message() == "odd: 3");

  // Built from an OK status: not a value, reported as an internal error.
  Result<int> weird = Status::OK();
  CHECK_FALSE(weird.ok());
  CHECK(weird.status().code() == ErrorCode::kInvalidArgument);

  Result<std::unique_ptr<std::string>> owned = std::make_unique<std::string>("abc");
  REQUIRE(owned.ok());
  CHECK((*owned)->size() == 3);
  std::unique_ptr<std::string> moved = std::move(owned).value();
  CHECK(*moved == "abc");

  Result<std::string> text = std::string("hi");
  CHECK(text->size() == 2);
}

TEST_CASE("ALLOY_RETURN_IF_ERROR and ALLOY_ASSIGN_OR_RETURN propagate", "[formats][status]") {
  int out = 0;
  CHECK(Chain(false, &out).ok());
  CHECK(out == 1);
  out = 0;
  Status s = Chain(true, &out);
  CHECK(s.code() == ErrorCode::kCorrupt);
  CHECK(out == 0);

  Result<int> q = Quarter(12);
  REQUIRE(q.ok());
  CHECK(*q == 3);
  Result<int> odd_first = Quarter(5);
  CHECK(odd_first.status().message() == "odd: 5");
  Result<int> odd_second = Quarter(6);
  CHECK(odd_second.status().message() == "odd: 3");
}

}  // namespace
}  // namespace alloy::formats
