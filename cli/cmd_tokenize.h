// `alloy tokenize MODEL "text"`: encode text with a model's Hugging Face
// tokenizer (tokenizer.json) and print ids and pieces, or decode ids.
#pragma once

#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace alloy::cli {

struct TokenizeOptions {
  std::string model;            // directory, or org/name[@revision] in the hub cache
  std::string text;             // text to encode (or --file)
  std::string file;             // read the text from this file
  bool no_special = false;      // do not add the post-processor's special tokens
  bool json = false;            // machine-readable output
  std::string decode;           // ids to decode instead ("1,2,3" or "1 2 3")
  bool skip_special = false;    // --decode: drop special tokens
  bool follow_symlinks = false; // read tokenizer files that link outside the directory
};

// Adds the `tokenize` subcommand to `app`, binding flags to `options`.
CLI::App* SetupTokenize(CLI::App& app, TokenizeOptions& options);

// Runs the command; returns the process exit code (0 ok, 2 bad input, 3 I/O).
int RunTokenize(const TokenizeOptions& options, std::ostream& out, std::ostream& err);

// A piece as printed: control bytes and backslashes escaped (\n, \t, \xNN,
// \\), everything else (Ġ, ▁, <0x0A>) as stored.
std::string PrintablePiece(std::string_view piece);

}  // namespace alloy::cli
