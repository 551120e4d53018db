// Decoders and post-processors of the tokenizer pipeline.
#include "formats/tokenizer_parts.h"
#include "formats/unicode_text.h"

namespace alloy::formats::tok {
namespace {

using nlohmann::json;
namespace uni = unicode;

// Parses "<0xAB>" into its byte; false otherwise.
bool ParseByteToken(std::string_view t, uint8_t* byte) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return false;
  int v = 0;
  for (size_t k = 3; k < 5; ++k) {
    const char c = t[k];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    v = v * 16 + d;
  }
  *byte = static_cast<uint8_t>(v);
  return true;
}

// Invalid UTF-8 → one U+FFFD per bad byte run (String::from_utf8_lossy).
std::string Lossy(std::string_view bytes) {
  return uni::IsValidUtf8(bytes) ? std::string(bytes) : uni::RepairUtf8(bytes);
}

class ByteLevelDec : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& t : *tokens) {
      std::string mapped;
      bool ok = true;
      size_t i = 0;
      while (i < t.size()) {
        const int b = ByteOfChar(uni::NextCodePoint(t, &i));
        if (b < 0) {
          ok = false;
          break;
        }
        mapped.push_back(static_cast<char>(b));
      }
      bytes += ok ? mapped : t;
    }
    tokens->assign(1, Lossy(bytes));
  }
};

class MetaspaceDec : public Decoder {
 public:
  MetaspaceDec(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (size_t k = 0; k < tokens->size(); ++k) {
      std::string out;
      const std::string& t = (*tokens)[k];
      size_t pos = 0;
      for (;;) {
        const size_t hit = t.find(replacement_, pos);
        if (hit == std::string::npos) break;
        out.append(t, pos, hit - pos);
        out.push_back(' ');
        pos = hit + replacement_.size();
      }
      out.append(t, pos, std::string::npos);
      if (k == 0 && strip_first_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
      (*tokens)[k] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDec : public Decoder {
 public:
  ReplaceDec(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    if (pattern_.empty()) return;
    for (std::string& t : *tokens) {
      std::string out;
      size_t pos = 0;
      for (;;) {
        const size_t hit = t.find(pattern_, pos);
        if (hit == std::string::npos) break;
        out.append(t, pos, hit - pos);
        out += content_;
        pos = hit + pattern_.size();
      }
      out.append(t, pos, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::string pattern_, content_;
};

class ByteFallbackDec : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (uni::IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (const std::string& t : *tokens) {
      uint8_t b;
      if (ParseByteToken(t, &b)) {
        pending.push_back(static_cast<char>(b));
      } else {
        flush();
        out.push_back(t);
      }
    }
    flush();
    tokens->swap(out);
  }
};

class FuseDec : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    tokens->assign(1, all);
  }
};

class StripDec : public Decoder {
 public:
  StripDec(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start_ && e - b >= content_.size() && t.compare(b, content_.size(), content_) == 0; ++k) {
        b += content_.size();
      }
      for (size_t k = 0; k < stop_ && e - b >= content_.size() &&
                         t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++k) {
        e -= content_.size();
      }
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

std::string CleanupSpaces(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
      {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    const std::string f = from, t = to;
    size_t pos = 0;
    while ((pos = s.find(f, pos)) != std::string::npos) {
      s.replace(pos, f.size(), t);
      pos += t.size();
    }
  }
  return s;
}

class WordPieceDec : public Decoder {
 public:
  WordPieceDec(std::string prefix, bool cleanup) : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (size_t k = 0; k < tokens->size(); ++k) {
      std::string& t = (*tokens)[k];
      if (k > 0) {
        if (t.rfind(prefix_, 0) == 0) {
          t.erase(0, prefix_.size());
        } else {
          t.insert(0, " ");
        }
      }
      if (cleanup_) t = CleanupSpaces(t);
    }
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class BpeDec : public Decoder {
 public:
  explicit BpeDec(std::string suffix) : suffix_(std::move(suffix)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (size_t k = 0; k < tokens->size(); ++k) {
      std::string& t = (*tokens)[k];
      const std::string with = k + 1 == tokens->size() ? "" : " ";
      size_t pos = 0;
      while (!suffix_.empty() && (pos = t.find(suffix_, pos)) != std::string::npos) {
        t.replace(pos, suffix_.size(), with);
        pos += with.size();
      }
    }
  }

 private:
  std::string suffix_;
};

class SequenceDec : public Decoder {
 public:
  explicit SequenceDec(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (const auto& p : parts_) p->Decode(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// ---------------------------------------------------------- post-processors

class TemplateProc : public PostProcessor {
 public:
  // Each item: a fixed list of ids, or (empty, is_sequence=true) for $A.
  struct Item {
    bool is_sequence;
    std::vector<int32_t> ids;
  };
  explicit TemplateProc(std::vector<Item> items) : items_(std::move(items)) {}
  void Process(std::vector<int32_t>* ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids->size() + 4);
    for (const Item& item : items_) {
      if (item.is_sequence) {
        out.insert(out.end(), ids->begin(), ids->end());
      } else {
        out.insert(out.end(), item.ids.begin(), item.ids.end());
      }
    }
    ids->swap(out);
  }

 private:
  std::vector<Item> items_;
};

class NoopProc : public PostProcessor {
 public:
  void Process(std::vector<int32_t>*) const override {}
};

class SequenceProc : public PostProcessor {
 public:
  explicit SequenceProc(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void Process(std::vector<int32_t>* ids) const override {
    for (const auto& p : parts_) p->Process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

Result<int32_t> CheckedTemplateId(const json& v, const std::string& where, size_t vocab_size) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
      static_cast<uint64_t>(v.get<int64_t>()) >= vocab_size) {
    return Fail(where, "id " + v.dump() + " is not in the vocabulary (size " + std::to_string(vocab_size) + ")");
  }
  return static_cast<int32_t>(v.get<int64_t>());
}

// BertProcessing / RobertaProcessing: "sep": ["[SEP]", 102].
Result<int32_t> TokenPair(const json& j, std::string_view key, const std::string& where, size_t vocab_size) {
  const std::string w = where + "/" + std::string(key);
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][0].is_string()) {
    return Fail(w, "expected [\"token\", id]");
  }
  return CheckedTemplateId(j[key][1], w, vocab_size);
}

Result<std::unique_ptr<PostProcessor>> MakeTemplate(const json& j, const std::string& where,
                                                    size_t vocab_size) {
  if (!j.contains("single")) return Fail(where, "TemplateProcessing needs 'single'");
  const json& single = j["single"];
  if (!single.is_array()) {
    return Status::Unsupported(where + "/single: only the list form of a template is supported");
  }
  const json empty = json::object();
  const json& specials = j.contains("special_tokens") ? j["special_tokens"] : empty;
  if (!specials.is_object()) return Fail(where, "'special_tokens' must be an object");
  std::vector<TemplateProc::Item> items;
  for (size_t k = 0; k < single.size(); ++k) {
    const std::string w = where + "/single/" + std::to_string(k);
    const json& item = single[k];
    if (item.is_object() && item.contains("Sequence")) {
      const json& seq = item["Sequence"];
      if (!seq.is_object() || !seq.contains("id") || seq["id"] != "A") {
        return Fail(w, "a single-sequence template may only use sequence A");
      }
      items.push_back({true, {}});
    } else if (item.is_object() && item.contains("SpecialToken")) {
      const json& st = item["SpecialToken"];
      ALLOY_ASSIGN_OR_RETURN(const std::string name, GetString(st, "id", w + "/SpecialToken"));
      if (!specials.contains(name)) {
        return Fail(w, "special token " + QuotedText(name) + " is not listed in special_tokens");
      }
      const json& entry = specials[name];
      const std::string ew = where + "/special_tokens/" + PrintableText(name, 60);
      if (!entry.is_object() || !entry.contains("ids") || !entry["ids"].is_array()) {
        return Fail(ew, "expected an object with an 'ids' array");
      }
      TemplateProc::Item fixed{false, {}};
      for (const json& id : entry["ids"]) {
        ALLOY_ASSIGN_OR_RETURN(const int32_t checked, CheckedTemplateId(id, ew + "/ids", vocab_size));
        fixed.ids.push_back(checked);
      }
      items.push_back(std::move(fixed));
    } else {
      return Fail(w, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  return std::unique_ptr<PostProcessor>(new TemplateProc(std::move(items)));
}

}  // namespace

Result<std::unique_ptr<Decoder>> MakeDecoder(const json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  ALLOY_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDec());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDec());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDec());
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (j.contains("replacement")) {
      ALLOY_ASSIGN_OR_RETURN(replacement, GetString(j, "replacement", where));
    }
    bool strip_first = true;
    if (j.contains("prepend_scheme")) {
      ALLOY_ASSIGN_OR_RETURN(const std::string scheme, GetString(j, "prepend_scheme", where));
      if (scheme != "always" && scheme != "first" && scheme != "never") {
        return Status::Unsupported(where + "/prepend_scheme: unknown scheme " + QuotedText(scheme));
      }
      strip_first = scheme != "never";
    } else {
      ALLOY_ASSIGN_OR_RETURN(strip_first, GetBool(j, "add_prefix_space", where, true));
    }
    return std::unique_ptr<Decoder>(new MetaspaceDec(replacement, strip_first));
  }
  if (type == "Replace") {
    if (!j.contains("pattern") || !j["pattern"].is_object()) return Fail(where, "missing 'pattern'");
    const json& p = j["pattern"];
    if (!p.contains("String") || !p["String"].is_string()) {
      return Status::Unsupported(where + "/pattern: only {\"String\": ...} patterns are supported");
    }
    ALLOY_ASSIGN_OR_RETURN(std::string content, GetString(j, "content", where));
    return std::unique_ptr<Decoder>(new ReplaceDec(p["String"].get<std::string>(), std::move(content)));
  }
  if (type == "Strip") {
    ALLOY_ASSIGN_OR_RETURN(std::string content, GetString(j, "content", where));
    auto count = [&](const char* key) -> Result<size_t> {
      if (!j.contains(key) || !j[key].is_number_unsigned()) {
        return Fail(where, std::string("'") + key + "' must be a non-negative integer");
      }
      return j[key].get<size_t>();
    };
    ALLOY_ASSIGN_OR_RETURN(const size_t start, count("start"));
    ALLOY_ASSIGN_OR_RETURN(const size_t stop, count("stop"));
    if (content.empty()) return Fail(where, "'content' must not be empty");
    return std::unique_ptr<Decoder>(new StripDec(std::move(content), start, stop));
  }
  if (type == "WordPiece") {
    std::string prefix = "##";
    if (j.contains("prefix")) {
      ALLOY_ASSIGN_OR_RETURN(prefix, GetString(j, "prefix", where));
    }
    ALLOY_ASSIGN_OR_RETURN(const bool cleanup, GetBool(j, "cleanup", where, true));
    return std::unique_ptr<Decoder>(new WordPieceDec(std::move(prefix), cleanup));
  }
  if (type == "BPEDecoder") {
    std::string suffix = "</w>";
    if (j.contains("suffix")) {
      ALLOY_ASSIGN_OR_RETURN(suffix, GetString(j, "suffix", where));
    }
    return std::unique_ptr<Decoder>(new BpeDec(std::move(suffix)));
  }
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      return Fail(where, "Sequence needs a 'decoders' array");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t k = 0; k < j["decoders"].size(); ++k) {
      ALLOY_ASSIGN_OR_RETURN(auto part, MakeDecoder(j["decoders"][k], where + "/decoders/" + std::to_string(k)));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Decoder>(new SequenceDec(std::move(parts)));
  }
  return Status::Unsupported(where + ": unknown decoder type " + QuotedText(type));
}

Result<std::unique_ptr<PostProcessor>> MakePostProcessor(const json& j, const std::string& where,
                                                         const TokenLookup& lookup, size_t vocab_size) {
  (void)lookup;
  if (j.is_null()) return std::unique_ptr<PostProcessor>();
  ALLOY_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "TemplateProcessing") return MakeTemplate(j, where, vocab_size);
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>(new NoopProc());
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    ALLOY_ASSIGN_OR_RETURN(const int32_t cls, TokenPair(j, "cls", where, vocab_size));
    ALLOY_ASSIGN_OR_RETURN(const int32_t sep, TokenPair(j, "sep", where, vocab_size));
    std::vector<TemplateProc::Item> items = {{false, {cls}}, {true, {}}, {false, {sep}}};
    return std::unique_ptr<PostProcessor>(new TemplateProc(std::move(items)));
  }
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) {
      return Fail(where, "Sequence needs a 'processors' array");
    }
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (size_t k = 0; k < j["processors"].size(); ++k) {
      ALLOY_ASSIGN_OR_RETURN(auto part, MakePostProcessor(j["processors"][k],
                                                          where + "/processors/" + std::to_string(k),
                                                          lookup, vocab_size));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<PostProcessor>(new SequenceProc(std::move(parts)));
  }
  return Status::Unsupported(where + ": unknown post-processor type " + QuotedText(type));
}

}  // namespace alloy::formats::tok
