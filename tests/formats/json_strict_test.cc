#include "formats/json_strict.h"

#include <catch2/catch.hpp>
#include <string>

namespace alloy::formats {
namespace {

using nlohmann::json;

// The error message of a failing parse ("" if it parsed).
std::string Error(std::string_view text) {
  Result<json> r = ParseStrictJson(text, "header");
  if (r.ok()) return "";
  CHECK(r.status().code() == ErrorCode::kCorrupt);
  return r.status().message();
}

TEST_CASE("ParseStrictJson builds the same DOM as nlohmann", "[formats][json]") {
  const std::string text =
      R"({"b":[1,-2,3.5,true,false,null,"s",{}],"a":{"x":{"y":[]}},"u":18446744073709551615,)"
      R"("e":"\u00e9\ud83d\ude00\n\u0000"})";
  Result<json> r = ParseStrictJson(text, "header");
  REQUIRE(r.ok());
  CHECK(*r == json::parse(text));
  CHECK((*r)["u"].is_number_unsigned());
  CHECK((*r)["b"][1].is_number_integer());
  CHECK((*r)["b"][2].is_number_float());
  CHECK((*r)["e"].get<std::string>() == std::string("\xC3\xA9\xF0\x9F\x98\x80\n\0", 8));
}

TEST_CASE("ParseStrictJson accepts scalars and JSON whitespace", "[formats][json]") {
  CHECK(Error("{}") == "");
  CHECK(Error(" \t\r\n{} \t\r\n") == "");
  CHECK(Error("[]") == "");
  CHECK(Error("\"x\"") == "");
  CHECK(Error("0") == "");
  CHECK(Error("-0") == "");
  CHECK(Error("null") == "");
  CHECK(Error("{\"\":1}") == "");  // the empty key is a key
}

TEST_CASE("ParseStrictJson refuses duplicate keys after decoding", "[formats][json]") {
  CHECK(Error(R"({"w":1,"w":2})") == "invalid JSON in header: duplicate key \"w\" at byte 7");
  CHECK(Error(R"({"w":1,"\u0077":2})") == "invalid JSON in header: duplicate key \"w\" at byte 7");
  CHECK(Error(R"({"a":{"b":1,"c":{},"b":2}})").find("duplicate key \"b\" at byte 19") !=
        std::string::npos);
  // Keys ending in an escaped backslash still report the key's opening quote.
  CHECK(Error(R"({"a\\":1, "a\\":2})") == "invalid JSON in header: duplicate key \"a\\\\\" at byte 10");
  // The same key in sibling objects is fine.
  CHECK(Error(R"([{"w":1},{"w":2}])") == "");
  CHECK(Error(R"({"w":{"w":{"w":1}}})") == "");
}

TEST_CASE("ParseStrictJson limits nesting to 128", "[formats][json]") {
  std::string ok = std::string(128, '[') + std::string(128, ']');
  CHECK(Error(ok) == "");
  std::string deep = std::string(129, '[') + std::string(129, ']');
  CHECK(Error(deep) == "invalid JSON in header: nesting depth exceeds 128 at byte 128");
  std::string objects;
  for (int i = 0; i < 129; ++i) objects += "{\"k\":";
  objects += "1" + std::string(129, '}');
  CHECK(Error(objects).find("nesting depth exceeds 128") != std::string::npos);
  // Very deep input fails fast instead of recursing.
  std::string huge(1'000'000, '[');
  CHECK(Error(huge).find("nesting depth exceeds 128") != std::string::npos);
}

TEST_CASE("ParseStrictJson refuses non-RFC-8259 input", "[formats][json]") {
  const char* bad[] = {
      "",            "{",           "{\"a\":1,}", "[1,]",          "/* c */{}",   "{} // c",
      "NaN",         "[Infinity]",  "[-Infinity]", "[+1]",         "[01]",        "[1.]",
      "[.5]",        "{'a':1}",     "{a:1}",       "[\"\\ud800\"]", "[\"\\udc00\"]",
      "[\"\\x41\"]", "[\"a\tb\"]",  "{} {}",       "\f{}",         "{}\v",        "[1e400]",
      "tru",         "[\"\\u12\"]",
  };
  for (const char* text : bad) {
    INFO(text);
    std::string err = Error(text);
    CHECK(err.rfind("invalid JSON in header: ", 0) == 0);
    CHECK(err.find(" at byte ") != std::string::npos);
  }
}

TEST_CASE("ParseStrictJson reports byte positions of syntax errors", "[formats][json]") {
  CHECK(Error("[1,]").find("at byte 3") != std::string::npos);
  CHECK(Error("{\"a\":1,}").find("at byte 7") != std::string::npos);
  CHECK(Error("  x").find("at byte 2") != std::string::npos);
  // The nlohmann "[json.exception...] parse error at line, column" prefix is gone.
  CHECK(Error("[1,]").find("json.exception") == std::string::npos);
  CHECK(Error("[1,]").find("line") == std::string::npos);
}

TEST_CASE("ParseStrictJson refuses NUL bytes and byte order marks", "[formats][json]") {
  // nlohmann's lexer would stop at the NUL and accept "{}".
  CHECK(Error(std::string("{}\0junk", 7)) == "invalid JSON in header: unexpected NUL byte at byte 2");
  CHECK(Error(std::string("{}\0", 3)).find("NUL") != std::string::npos);
  CHECK(Error(std::string("\0{}", 3)).find("at byte 0") != std::string::npos);
  CHECK(Error(std::string("[\"a\0\"]", 6)).find("NUL") != std::string::npos);
  CHECK(Error("\xEF\xBB\xBF{}") == "invalid JSON in header: unexpected byte order mark at byte 0");
}

TEST_CASE("ParseStrictJson validates UTF-8 of the whole text", "[formats][json]") {
  CHECK(Error("[\"\xFF\"]") == "invalid UTF-8 in header at byte 2");
  CHECK(Error("\xFF\xFE{}") == "invalid UTF-8 in header at byte 0");
  CHECK(Error("[\"\xC0\xAF\"]") == "invalid UTF-8 in header at byte 2");       // overlong
  CHECK(Error("[\"\xE0\x80\xAF\"]") == "invalid UTF-8 in header at byte 2");   // overlong
  CHECK(Error("[\"\xED\xA0\x80\"]") == "invalid UTF-8 in header at byte 2");   // surrogate
  CHECK(Error("[\"\xF4\x90\x80\x80\"]") == "invalid UTF-8 in header at byte 2");  // > U+10FFFF
  CHECK(Error("[\"\xE2\x82\"]") == "invalid UTF-8 in header at byte 2");       // truncated
  CHECK(Error("[\"x\xE2\x82") == "invalid UTF-8 in header at byte 3");         // at the end
  CHECK(Error("[\"\x80\"]") == "invalid UTF-8 in header at byte 2");           // lone continuation
  // Valid multi-byte characters up to U+10FFFF.
  CHECK(Error("[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"]") == "");
}

TEST_CASE("ParseStrictJson names what it parsed", "[formats][json]") {
  Result<json> r = ParseStrictJson("[", "model.safetensors.index.json");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().rfind("invalid JSON in model.safetensors.index.json: ", 0) == 0);
}

}  // namespace
}  // namespace alloy::formats
