#include "cli/cmd_tokenize.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "cli/input_flags.h"
#include "formats/file_util.h"
#include "formats/model_ref.h"
#include "formats/tokenizer.h"

namespace alloy::cli {
namespace {

using formats::Result;
using formats::Status;

// "1,2, 3" or "1 2 3" or "[1, 2, 3]" → ids.
Result<std::vector<int32_t>> ParseIds(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '[' || c == ']') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || j - i > 10) {
      return Status::InvalidArgument("--decode: expected token ids separated by commas or spaces, got " +
                                     formats::QuotedText(s.substr(i, 20)));
    }
    const long long v = std::stoll(s.substr(i, j - i));
    if (v > INT32_MAX) return Status::InvalidArgument("--decode: id " + s.substr(i, j - i) + " is too large");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

std::string JsonDump(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string PrintablePiece(std::string_view piece) {
  std::string out;
  for (char ch : piece) {
    const auto b = static_cast<uint8_t>(ch);
    if (ch == '\\') {
      out += "\\\\";
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (b < 0x20 || b == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", b);
      out += buf;
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

CLI::App* SetupTokenize(CLI::App& app, TokenizeOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Encode text with a model's tokenizer (tokenizer.json) and print ids and pieces");
  cmd->add_option("MODEL", options.model,
                  "Model directory holding tokenizer.json (tokenizer_config.json and "
                  "special_tokens_map.json are read too), or hub id org/name[@revision]")
      ->required();
  cmd->add_option("TEXT", options.text, "Text to encode (or use --file)");
  cmd->add_option("--file", options.file, "Read the text to encode from this file");
  cmd->add_flag("--no-special", options.no_special,
                "Do not add the special tokens of the post-processor (e.g. <s>, [CLS]/[SEP])");
  cmd->add_flag("--json", options.json, "Print one JSON object instead of text");
  cmd->add_option("--decode", options.decode,
                  "Decode these ids instead of encoding (\"1,2,3\" or \"1 2 3\")");
  cmd->add_flag("--skip-special", options.skip_special,
                "With --decode: leave special tokens out of the text");
  AddFollowSymlinksFlag(cmd, options.follow_symlinks);
  cmd->footer(
      "Pieces are printed as stored in the vocabulary: byte-level BPE shows a space as Ġ and a\n"
      "newline as Ċ, SentencePiece shows a space as ▁ and raw bytes as <0xNN>; control\n"
      "characters are escaped (\\n, \\t, \\xNN). Input that is not valid UTF-8 is repaired\n"
      "(each invalid sequence becomes U+FFFD) before encoding.\n"
      "Examples:\n"
      "  alloy tokenize ./Llama-3.2-1B \"Hello world\"\n"
      "    3 tokens (BPE, vocabulary 128256): 128000 9906 1917\n"
      "  alloy tokenize ./Llama-3.2-1B --file prompt.txt --no-special --json\n"
      "  alloy tokenize ./Llama-3.2-1B --decode 128000,9906,1917 --skip-special\n"
      "Exit codes: 0 ok, 2 bad input (no or unsupported tokenizer, bad arguments), 3 I/O failure.\n"
      "Guide: docs/tokenize.md");
  return cmd;
}

int RunTokenize(const TokenizeOptions& options, std::ostream& out, std::ostream& err) {
  const bool decoding = !options.decode.empty();
  if (decoding && (!options.text.empty() || !options.file.empty())) {
    return ReportError(Status::InvalidArgument("--decode takes ids; do not pass TEXT or --file with it"), err);
  }
  if (!decoding && !options.text.empty() && !options.file.empty()) {
    return ReportError(Status::InvalidArgument("give the text either as TEXT or with --file, not both"), err);
  }
  Result<std::string> dir = formats::ResolveModelReference(options.model);
  if (!dir.ok()) return ReportError(dir.status(), err);
  formats::TokenizerLoadOptions load;
  load.symlinks = SymlinkPolicyOf(options.follow_symlinks);
  Result<formats::Tokenizer> tok = formats::LoadTokenizer(*dir, load);
  if (!tok.ok()) return ReportError(tok.status(), err);

  if (decoding) {
    Result<std::vector<int32_t>> ids = ParseIds(options.decode);
    if (!ids.ok()) return ReportError(ids.status(), err);
    for (int32_t id : *ids) {
      if (!tok->TokenOf(id)) {
        return ReportError(Status::InvalidArgument("--decode: id " + std::to_string(id) +
                                                   " is not in the vocabulary (size " +
                                                   std::to_string(tok->vocab_size()) + ")"),
                           err);
      }
    }
    const std::string text = tok->Decode(*ids, options.skip_special);
    if (options.json) {
      nlohmann::json j;
      j["ids"] = *ids;
      j["pieces"] = tok->Pieces(*ids);
      j["text"] = text;
      out << JsonDump(j) << "\n";
    } else {
      out << text << "\n";
    }
    return ToInt(ExitCode::kOk);
  }

  std::string text = options.text;
  if (!options.file.empty()) {
    Result<std::string> contents = formats::ReadSmallFile(options.file);
    if (!contents.ok()) return ReportError(contents.status(), err);
    text = std::move(*contents);
  }
  const bool add_special = !options.no_special;
  Result<std::vector<int32_t>> ids = tok->Encode(text, add_special);
  if (!ids.ok()) return ReportError(ids.status(), err);
  const std::vector<std::string> pieces = tok->Pieces(*ids);
  if (options.json) {
    nlohmann::json j;
    j["tokenizer"] = tok->source();
    j["model_type"] = std::string(tok->model_type());
    j["vocab_size"] = tok->vocab_size();
    j["add_special_tokens"] = add_special;
    j["count"] = ids->size();
    j["ids"] = *ids;
    j["pieces"] = pieces;
    nlohmann::json special = nlohmann::json::array();
    for (int32_t id : *ids) special.push_back(tok->IsSpecial(id));
    j["special"] = special;
    out << JsonDump(j) << "\n";
    return ToInt(ExitCode::kOk);
  }
  out << ids->size() << " tokens (" << tok->model_type() << ", vocabulary " << tok->vocab_size() << "):";
  for (int32_t id : *ids) out << " " << id;
  out << "\n";
  for (size_t k = 0; k < ids->size(); ++k) {
    char idx[32];
    std::snprintf(idx, sizeof(idx), "%6zu %8d  ", k, (*ids)[k]);
    out << idx << PrintablePiece(pieces[k]) << (tok->IsSpecial((*ids)[k]) ? "  (special)" : "") << "\n";
  }
  return ToInt(ExitCode::kOk);
}

}  // namespace alloy::cli
