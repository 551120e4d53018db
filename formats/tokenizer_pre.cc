// Normalizers, pre-tokenizers and the regex scanners of the tokenizer
// pipeline (formats/tokenizer_parts.h).
#include <algorithm>
#include <cstring>

#include "formats/tokenizer_parts.h"
#include "formats/unicode_text.h"

namespace alloy::formats::tok {
namespace {

using nlohmann::json;
namespace uni = unicode;
using Ranges = std::vector<std::pair<size_t, size_t>>;

// ---------------------------------------------------------------- helpers

// Code points of `s` with their byte offsets (offsets[n] = s.size()).
struct Decoded {
  std::vector<uint32_t> cps;
  std::vector<size_t> offsets;
  std::vector<uint8_t> cls;  // kLetter, kNumber, kSpace, kOther
};
enum : uint8_t { kLetter, kNumber, kSpace, kOther };

void DecodeInto(std::string_view s, Decoded* d) {
  d->cps.clear();
  d->offsets.clear();
  d->cls.clear();
  d->cps.reserve(s.size());
  d->offsets.reserve(s.size() + 1);
  d->cls.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    d->offsets.push_back(i);
    const uint32_t cp = uni::NextCodePoint(s, &i);
    d->cps.push_back(cp);
    uint8_t c;
    if (cp < 128) {
      c = ((cp | 32) >= 'a' && (cp | 32) <= 'z') ? kLetter
          : (cp >= '0' && cp <= '9')             ? kNumber
          : uni::IsWhitespace(cp)                ? kSpace
                                                 : kOther;
    } else {
      c = uni::IsLetter(cp) ? kLetter : uni::IsNumber(cp) ? kNumber : uni::IsWhitespace(cp) ? kSpace : kOther;
    }
    d->cls.push_back(c);
  }
  d->offsets.push_back(s.size());
}

// Length (in code points) of a contraction 's 't 're 've 'm 'll 'd at `i`, or 0.
size_t Contraction(const Decoded& d, size_t i, bool ignore_case) {
  const size_t n = d.cps.size();
  if (d.cps[i] != '\'' || i + 1 >= n) return 0;
  auto low = [&](size_t k) -> uint32_t {
    uint32_t c = d.cps[k];
    if (!ignore_case) return c;
    if (c == 0x17F) return 's';  // long s case-folds to s
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  };
  const uint32_t a = low(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < n) {
    const uint32_t b = low(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

size_t RunOf(const Decoded& d, size_t i, uint8_t cls) {
  while (i < d.cps.size() && d.cls[i] == cls) ++i;
  return i;
}

// \s+(?!\S)|\s+ at a whitespace code point `i`: the end of the match.
size_t TrailingSpace(const Decoded& d, size_t i) {
  const size_t k = RunOf(d, i, kSpace);
  if (k < d.cps.size() && k - 1 > i) return k - 1;
  return k;
}

thread_local Decoded tls_decoded;

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void ScanGpt2Impl(std::string_view text, Ranges* out) {
  Decoded& d = tls_decoded;
  DecodeInto(text, &d);
  const size_t n = d.cps.size();
  size_t i = 0;
  while (i < n) {
    size_t end;
    const bool space_prefix = d.cps[i] == ' ' && i + 1 < n;
    if (size_t c = Contraction(d, i, false)) {
      end = i + c;
    } else if (d.cls[i] == kLetter || (space_prefix && d.cls[i + 1] == kLetter)) {
      end = RunOf(d, d.cls[i] == kLetter ? i : i + 1, kLetter);
    } else if (d.cls[i] == kNumber || (space_prefix && d.cls[i + 1] == kNumber)) {
      end = RunOf(d, d.cls[i] == kNumber ? i : i + 1, kNumber);
    } else if (d.cls[i] == kOther || (space_prefix && d.cls[i + 1] == kOther)) {
      end = RunOf(d, d.cls[i] == kOther ? i : i + 1, kOther);
    } else {
      end = TrailingSpace(d, i);
    }
    out->emplace_back(d.offsets[i], d.offsets[end]);
    i = end;
  }
}

// Llama-3 (max_digits 3) and Qwen2 (1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void ScanLlama3Like(std::string_view text, Ranges* out, size_t max_digits) {
  Decoded& d = tls_decoded;
  DecodeInto(text, &d);
  const size_t n = d.cps.size();
  auto is_nl = [&](size_t k) { return d.cps[k] == '\r' || d.cps[k] == '\n'; };
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    const uint8_t c = d.cls[i];
    if (size_t k = Contraction(d, i, true)) {
      end = i + k;
    } else if (c == kLetter) {
      end = RunOf(d, i, kLetter);
    } else if (c != kNumber && !is_nl(i) && i + 1 < n && d.cls[i + 1] == kLetter) {
      end = RunOf(d, i + 1, kLetter);
    } else if (c == kNumber) {
      end = std::min(RunOf(d, i, kNumber), i + max_digits);
    } else if (c == kOther || (d.cps[i] == ' ' && i + 1 < n && d.cls[i + 1] == kOther)) {
      end = RunOf(d, c == kOther ? i : i + 1, kOther);
      while (end < n && is_nl(end)) ++end;
    } else {
      // c == kSpace: \s*[\r\n]+ up to the last newline of the run, else \s+(?!\S)|\s+.
      const size_t run = RunOf(d, i, kSpace);
      size_t last_nl = n;
      for (size_t k = run; k > i; --k) {
        if (is_nl(k - 1)) {
          last_nl = k - 1;
          break;
        }
      }
      end = last_nl != n ? last_nl + 1 : TrailingSpace(d, i);
    }
    out->emplace_back(d.offsets[i], d.offsets[end]);
    i = end;
  }
}

void ScanLlama3(std::string_view text, Ranges* out) { ScanLlama3Like(text, out, 3); }
void ScanQwen2(std::string_view text, Ranges* out) { ScanLlama3Like(text, out, 1); }

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------- split behaviour

enum class Behavior : uint8_t { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Result<Behavior> ParseBehavior(const json& j, const std::string& where, Behavior fallback) {
  if (!j.contains("behavior")) return fallback;
  ALLOY_ASSIGN_OR_RETURN(const std::string b, GetString(j, "behavior", where));
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  return Status::Unsupported(where + "/behavior: unknown split behavior '" + b + "'");
}

struct Segment {
  size_t begin, end;
  bool is_match;
};

// Splits `piece` at `matches` (sorted, non-overlapping byte ranges) the way
// tokenizers' NormalizedString::split does, appending to `out`.
void ApplySplit(const Piece& piece, const Ranges& matches, Behavior behavior, bool invert,
                std::vector<Piece>* out) {
  // Reused per thread: a long text has one segment per word.
  thread_local std::vector<Segment> segs;
  thread_local std::vector<std::pair<size_t, size_t>> kept;
  segs.clear();
  kept.clear();
  size_t pos = 0;
  for (const auto& [b, e] : matches) {
    if (b > pos) segs.push_back({pos, b, invert});
    if (e > b) segs.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < piece.text.size()) segs.push_back({pos, piece.text.size(), invert});
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kRemoved:
      for (const Segment& s : segs) if (!s.is_match) kept.emplace_back(s.begin, s.end);
      break;
    case Behavior::kIsolated:
      for (const Segment& s : segs) kept.emplace_back(s.begin, s.end);
      break;
    case Behavior::kMergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && !kept.empty()) {
          kept.back().second = s.end;
        } else {
          kept.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().first = it->begin;
        } else {
          kept.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::kContiguous:
      for (const Segment& s : segs) {
        if (s.is_match == previous_match && !kept.empty()) {
          kept.back().second = s.end;
        } else {
          kept.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
  }
  out->reserve(out->size() + kept.size());
  for (const auto& [b, e] : kept) {
    if (e <= b) continue;
    out->push_back({piece.text.substr(b, e - b), piece.at_start && b == 0});
  }
}

// Each code point for which `pred` holds is one match.
template <typename Pred>
Ranges CharMatches(std::string_view s, Pred pred) {
  Ranges m;
  size_t i = 0;
  while (i < s.size()) {
    const size_t b = i;
    const uint32_t cp = uni::NextCodePoint(s, &i);
    if (pred(cp)) m.emplace_back(b, i);
  }
  return m;
}

template <typename Fn>
void ForEachPiece(std::vector<Piece>* pieces, Fn split_one) {
  std::vector<Piece> out;
  out.reserve(pieces->size());
  for (const Piece& p : *pieces) split_one(p, &out);
  pieces->swap(out);
}

bool IsBertPunctuation(uint32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126)) {
    return true;
  }
  return cp >= 128 && uni::IsPunctuation(cp);
}

// ---------------------------------------------------------- pre-tokenizers

// ByteToChar() as fixed-size entries, for the hot loop.
struct ByteChar {
  char bytes[2];
  size_t len;
};
const std::vector<ByteChar> kByteChars = [] {
  std::vector<ByteChar> t(256);
  for (size_t b = 0; b < 256; ++b) {
    const std::string& s = ByteToChar()[b];
    t[b].len = s.size();
    for (size_t k = 0; k < s.size(); ++k) t[b].bytes[k] = s[k];
  }
  return t;
}();

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void Split(std::vector<Piece>* pieces) const override {
    thread_local Ranges matches;
    ForEachPiece(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      std::string prefixed;
      std::string_view text = p.text;
      if (add_prefix_space_ && (text.empty() || text[0] != ' ')) {
        prefixed = " " + p.text;
        text = prefixed;
      }
      if (text.empty()) return;
      matches.clear();
      if (use_regex_) {
        // The GPT-2 scanner covers the whole text, so Isolated keeps every range.
        ScanGpt2Impl(text, &matches);
      } else {
        matches.emplace_back(0, text.size());
      }
      out->reserve(out->size() + matches.size());
      for (const auto& [b, e] : matches) {
        Piece q{std::string(), p.at_start && b == 0};
        q.text.reserve((e - b) * 2);
        for (size_t k = b; k < e; ++k) {
          const ByteChar& c = kByteChars[static_cast<uint8_t>(text[k])];
          q.text.append(c.bytes, c.len);
        }
        out->push_back(std::move(q));
      }
    });
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class SplitPre : public PreTokenizer {
 public:
  SplitPre(RegexScanner scanner, std::string literal, Behavior behavior, bool invert)
      : scanner_(scanner), literal_(std::move(literal)), behavior_(behavior), invert_(invert) {}
  void Split(std::vector<Piece>* pieces) const override {
    Ranges matches;
    ForEachPiece(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      matches.clear();
      if (scanner_ != nullptr) {
        scanner_(p.text, &matches);
      } else if (!literal_.empty()) {
        size_t pos = 0;
        while ((pos = p.text.find(literal_, pos)) != std::string::npos) {
          matches.emplace_back(pos, pos + literal_.size());
          pos += literal_.size();
        }
      }
      ApplySplit(p, matches, behavior_, invert_, out);
    });
  }

 private:
  RegexScanner scanner_;
  std::string literal_;
  Behavior behavior_;
  bool invert_;
};

enum class Prepend : uint8_t { kAlways, kFirst, kNever };

class MetaspacePre : public PreTokenizer {
 public:
  MetaspacePre(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void Split(std::vector<Piece>* pieces) const override {
    ForEachPiece(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      Piece q{std::string(), p.at_start};
      q.text.reserve(p.text.size() + 3);
      for (char ch : p.text) {
        if (ch == ' ') {
          q.text += replacement_;
        } else {
          q.text.push_back(ch);
        }
      }
      const bool starts = q.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && p.at_start))) {
        q.text.insert(0, replacement_);
      }
      if (!split_) {
        if (!q.text.empty()) out->push_back(std::move(q));
        return;
      }
      Ranges m;
      size_t pos = 0;
      while ((pos = q.text.find(replacement_, pos)) != std::string::npos) {
        m.emplace_back(pos, pos + replacement_.size());
        pos += replacement_.size();
      }
      ApplySplit(q, m, Behavior::kMergedWithNext, false, out);
    });
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

enum class CharRule : uint8_t { kWhitespace, kBertPunct, kAsciiDigit, kDelimiter };

class CharSplitPre : public PreTokenizer {
 public:
  CharSplitPre(CharRule rule, Behavior behavior, uint32_t delimiter = 0)
      : rule_(rule), behavior_(behavior), delimiter_(delimiter) {}
  void Split(std::vector<Piece>* pieces) const override {
    ForEachPiece(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      const Ranges m = CharMatches(p.text, [&](uint32_t cp) {
        switch (rule_) {
          case CharRule::kWhitespace: return uni::IsWhitespace(cp);
          case CharRule::kBertPunct: return IsBertPunctuation(cp);
          case CharRule::kAsciiDigit: return cp >= '0' && cp <= '9';
          case CharRule::kDelimiter: return cp == delimiter_;
        }
        return false;
      });
      ApplySplit(p, m, behavior_, false, out);
    });
  }

 private:
  CharRule rule_;
  Behavior behavior_;
  uint32_t delimiter_;
};

// \w+|[^\w\s]+ kept, whitespace dropped; \w = letters, marks, Nd, Pc.
class WhitespacePre : public PreTokenizer {
 public:
  void Split(std::vector<Piece>* pieces) const override {
    ForEachPiece(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      Ranges m;
      size_t i = 0;
      int run = -1;  // 0 word, 1 other
      size_t run_begin = 0;
      while (i <= p.text.size()) {
        int cls = 2;
        const size_t b = i;
        if (i < p.text.size()) {
          const uint32_t cp = uni::NextCodePoint(p.text, &i);
          const auto cat = uni::CategoryOf(cp);
          const bool word = uni::IsLetter(cp) || uni::IsMark(cp) || cat == uni::Category::kNd ||
                            cat == uni::Category::kPc;
          cls = word ? 0 : uni::IsWhitespace(cp) ? 2 : 1;
        } else {
          ++i;
        }
        if (cls != run) {
          if (run == 0 || run == 1) m.emplace_back(run_begin, b);
          run = cls;
          run_begin = b;
        }
      }
      ApplySplit(p, m, Behavior::kRemoved, true, out);
    });
  }
};

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void Split(std::vector<Piece>* pieces) const override {
    for (const auto& p : parts_) p->Split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// ------------------------------------------------------------- normalizers

class UnicodeNorm : public Normalizer {
 public:
  explicit UnicodeNorm(uni::NormalForm form) : form_(form) {}
  void Normalize(std::string* t) const override { *t = uni::Normalize(*t, form_); }

 private:
  uni::NormalForm form_;
};

class LowercaseNorm : public Normalizer {
 public:
  void Normalize(std::string* t) const override { *t = uni::Lowercase(*t); }
};

std::string StripMarks(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t b = i;
    const uint32_t cp = uni::NextCodePoint(s, &i);
    if (uni::CategoryOf(cp) != uni::Category::kMn) out.append(s.substr(b, i - b));
  }
  return out;
}

class StripAccentsNorm : public Normalizer {
 public:
  void Normalize(std::string* t) const override { *t = StripMarks(*t); }
};

class ReplaceNorm : public Normalizer {
 public:
  ReplaceNorm(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(std::string* t) const override {
    if (pattern_.empty()) return;
    std::string out;
    size_t pos = 0;
    for (;;) {
      const size_t hit = t->find(pattern_, pos);
      if (hit == std::string::npos) break;
      out.append(*t, pos, hit - pos);
      out += content_;
      pos = hit + pattern_.size();
    }
    if (pos == 0) return;
    out.append(*t, pos, std::string::npos);
    t->swap(out);
  }

 private:
  std::string pattern_, content_;
};

class PrependNorm : public Normalizer {
 public:
  explicit PrependNorm(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* t) const override {
    if (!t->empty()) t->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class StripNorm : public Normalizer {
 public:
  StripNorm(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* t) const override {
    size_t b = 0, e = t->size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!uni::IsWhitespace(uni::NextCodePoint(*t, &i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<uint8_t>((*t)[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!uni::IsWhitespace(uni::NextCodePoint(*t, &i))) break;
        e = start;
      }
    }
    *t = t->substr(b, e - b);
  }

 private:
  bool left_, right_;
};

bool IsChineseChar(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

class BertNorm : public Normalizer {
 public:
  BertNorm(bool clean_text, bool chinese, bool strip_accents, bool lowercase)
      : clean_text_(clean_text), chinese_(chinese), strip_accents_(strip_accents), lowercase_(lowercase) {}
  void Normalize(std::string* t) const override {
    std::string out;
    out.reserve(t->size());
    size_t i = 0;
    while (i < t->size()) {
      const uint32_t cp = uni::NextCodePoint(*t, &i);
      if (clean_text_) {
        const bool ws = cp == '\t' || cp == '\n' || cp == '\r' || uni::IsWhitespace(cp);
        const auto cat = uni::CategoryOf(cp);
        const bool control = !ws && (cat == uni::Category::kCc || cat == uni::Category::kCf ||
                                     cat == uni::Category::kCn || cat == uni::Category::kCo ||
                                     cat == uni::Category::kCs);
        if (cp == 0 || cp == 0xFFFD || control) continue;
        if (ws) {
          out.push_back(' ');
          continue;
        }
      }
      if (chinese_ && IsChineseChar(cp)) {
        out.push_back(' ');
        uni::AppendUtf8(&out, cp);
        out.push_back(' ');
        continue;
      }
      uni::AppendUtf8(&out, cp);
    }
    if (strip_accents_) out = StripMarks(uni::Normalize(out, uni::NormalForm::kNfd));
    if (lowercase_) out = uni::Lowercase(out);
    t->swap(out);
  }

 private:
  bool clean_text_, chinese_, strip_accents_, lowercase_;
};

// SentencePiece's NMT normalization: drop some controls, map others to a space.
class NmtNorm : public Normalizer {
 public:
  void Normalize(std::string* t) const override {
    std::string out;
    size_t i = 0;
    while (i < t->size()) {
      const size_t b = i;
      const uint32_t cp = uni::NextCodePoint(*t, &i);
      if ((cp >= 0x1 && cp <= 0x8) || cp == 0xB || (cp >= 0xE && cp <= 0x1F) || cp == 0x7F ||
          cp == 0x8F || cp == 0x9F) {
        continue;
      }
      if (cp == 0x9 || cp == 0xA || cp == 0xC || cp == 0xD || cp == 0x1680 ||
          (cp >= 0x200B && cp <= 0x200F) || cp == 0x2028 || cp == 0x2029 || cp == 0x2581 ||
          cp == 0xFEFF || cp == 0xFFFD) {
        out.push_back(' ');
        continue;
      }
      out.append(*t, b, i - b);
    }
    t->swap(out);
  }
};

class ByteLevelNorm : public Normalizer {
 public:
  void Normalize(std::string* t) const override {
    const std::vector<std::string>& map = ByteToChar();
    std::string out;
    for (char ch : *t) out += map[static_cast<uint8_t>(ch)];
    t->swap(out);
  }
};

class SequenceNorm : public Normalizer {
 public:
  explicit SequenceNorm(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void Normalize(std::string* t) const override {
    for (const auto& p : parts_) p->Normalize(t);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// {"String": s} → s; {"Regex": r} → refused (no regex engine), naming r.
Result<std::string> LiteralPattern(const json& j, const std::string& where) {
  if (!j.contains("pattern") || !j["pattern"].is_object()) {
    return Fail(where, "missing or non-object 'pattern'");
  }
  const json& p = j["pattern"];
  if (p.contains("String") && p["String"].is_string()) return p["String"].get<std::string>();
  if (p.contains("Regex") && p["Regex"].is_string()) {
    return Status::Unsupported(where + "/pattern: regex " +
                               QuotedText(p["Regex"].get<std::string>()) +
                               " is not supported (alloy has scanners only for the GPT-2, "
                               "Llama-3 and Qwen2 split patterns)");
  }
  return Fail(where + "/pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace

// ------------------------------------------------------------------- shared

Status Fail(const std::string& where, std::string_view what) {
  return Status::Corrupt(where + ": " + std::string(what));
}

Result<std::string> GetString(const json& j, std::string_view key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return Fail(where, "'" + std::string(key) + "' must be a string");
  }
  return it->get<std::string>();
}

Result<bool> GetBool(const json& j, std::string_view key, const std::string& where, bool fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Fail(where, "'" + std::string(key) + "' must be true or false");
  return it->get<bool>();
}

Result<std::string> GetType(const json& j, const std::string& where) {
  if (!j.is_object()) return Fail(where, "expected an object");
  return GetString(j, "type", where);
}

const std::vector<std::string>& ByteToChar() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      uni::AppendUtf8(&t[b], printable ? b : 256 + extra++);
    }
    return t;
  }();
  return table;
}

int ByteOfChar(uint32_t cp) {
  static const std::vector<int> reverse = [] {
    std::vector<int> r(512, -1);
    const std::vector<std::string>& t = ByteToChar();
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      r[uni::NextCodePoint(t[static_cast<size_t>(b)], &i)] = b;
    }
    return r;
  }();
  return cp < 512 ? reverse[cp] : -1;
}

std::string ByteToken(uint8_t b) {
  static const char* kHex = "0123456789ABCDEF";
  return std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
}

RegexScanner FindRegexScanner(std::string_view pattern) {
  if (pattern == kGpt2Pattern) return &ScanGpt2Impl;
  if (pattern == kLlama3Pattern) return &ScanLlama3;
  if (pattern == kQwen2Pattern) return &ScanQwen2;
  return nullptr;
}

void ScanGpt2(std::string_view text, Ranges* out) { ScanGpt2Impl(text, out); }

Result<std::unique_ptr<Normalizer>> MakeNormalizer(const json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  ALLOY_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "NFC") return std::unique_ptr<Normalizer>(new UnicodeNorm(uni::NormalForm::kNfc));
  if (type == "NFD") return std::unique_ptr<Normalizer>(new UnicodeNorm(uni::NormalForm::kNfd));
  if (type == "NFKC") return std::unique_ptr<Normalizer>(new UnicodeNorm(uni::NormalForm::kNfkc));
  if (type == "NFKD") return std::unique_ptr<Normalizer>(new UnicodeNorm(uni::NormalForm::kNfkd));
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNorm());
  if (type == "StripAccents") return std::unique_ptr<Normalizer>(new StripAccentsNorm());
  if (type == "Nmt") return std::unique_ptr<Normalizer>(new NmtNorm());
  if (type == "ByteLevel") return std::unique_ptr<Normalizer>(new ByteLevelNorm());
  if (type == "Replace") {
    ALLOY_ASSIGN_OR_RETURN(std::string pattern, LiteralPattern(j, where));
    ALLOY_ASSIGN_OR_RETURN(std::string content, GetString(j, "content", where));
    return std::unique_ptr<Normalizer>(new ReplaceNorm(std::move(pattern), std::move(content)));
  }
  if (type == "Prepend") {
    ALLOY_ASSIGN_OR_RETURN(std::string prefix, GetString(j, "prepend", where));
    return std::unique_ptr<Normalizer>(new PrependNorm(std::move(prefix)));
  }
  if (type == "Strip") {
    ALLOY_ASSIGN_OR_RETURN(const bool left, GetBool(j, "strip_left", where, true));
    ALLOY_ASSIGN_OR_RETURN(const bool right, GetBool(j, "strip_right", where, true));
    return std::unique_ptr<Normalizer>(new StripNorm(left, right));
  }
  if (type == "BertNormalizer") {
    ALLOY_ASSIGN_OR_RETURN(const bool clean, GetBool(j, "clean_text", where, true));
    ALLOY_ASSIGN_OR_RETURN(const bool chinese, GetBool(j, "handle_chinese_chars", where, true));
    ALLOY_ASSIGN_OR_RETURN(const bool lower, GetBool(j, "lowercase", where, true));
    ALLOY_ASSIGN_OR_RETURN(const bool strip, GetBool(j, "strip_accents", where, lower));
    return std::unique_ptr<Normalizer>(new BertNorm(clean, chinese, strip, lower));
  }
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      return Fail(where, "Sequence needs a 'normalizers' array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t k = 0; k < j["normalizers"].size(); ++k) {
      ALLOY_ASSIGN_OR_RETURN(auto part, MakeNormalizer(j["normalizers"][k],
                                                       where + "/normalizers/" + std::to_string(k)));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Normalizer>(new SequenceNorm(std::move(parts)));
  }
  if (type == "Precompiled") {
    return Status::Unsupported(where + ": normalizer type 'Precompiled' (a SentencePiece "
                               "charsmap) is not supported");
  }
  return Status::Unsupported(where + ": unknown normalizer type " + QuotedText(type));
}

Result<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  ALLOY_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "ByteLevel") {
    ALLOY_ASSIGN_OR_RETURN(const bool prefix, GetBool(j, "add_prefix_space", where, true));
    ALLOY_ASSIGN_OR_RETURN(const bool regex, GetBool(j, "use_regex", where, true));
    return std::unique_ptr<PreTokenizer>(new ByteLevelPre(prefix, regex));
  }
  if (type == "Split") {
    ALLOY_ASSIGN_OR_RETURN(const Behavior behavior, ParseBehavior(j, where, Behavior::kIsolated));
    ALLOY_ASSIGN_OR_RETURN(const bool invert, GetBool(j, "invert", where, false));
    if (!j.contains("pattern") || !j["pattern"].is_object()) {
      return Fail(where, "missing or non-object 'pattern'");
    }
    const json& p = j["pattern"];
    if (p.contains("Regex") && p["Regex"].is_string()) {
      const std::string regex = p["Regex"].get<std::string>();
      RegexScanner scanner = FindRegexScanner(regex);
      if (scanner == nullptr) {
        return Status::Unsupported(where + "/pattern/Regex: unsupported regex " + QuotedText(regex) +
                                   " (alloy has scanners only for the GPT-2, Llama-3 and Qwen2 "
                                   "split patterns)");
      }
      return std::unique_ptr<PreTokenizer>(new SplitPre(scanner, "", behavior, invert));
    }
    ALLOY_ASSIGN_OR_RETURN(std::string literal, LiteralPattern(j, where));
    return std::unique_ptr<PreTokenizer>(new SplitPre(nullptr, std::move(literal), behavior, invert));
  }
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (j.contains("replacement")) {
      ALLOY_ASSIGN_OR_RETURN(replacement, GetString(j, "replacement", where));
    }
    size_t len = 0;
    if (replacement.empty() || (uni::NextCodePoint(replacement, &len), len != replacement.size())) {
      return Fail(where + "/replacement", "must be one character");
    }
    Prepend prepend = Prepend::kAlways;
    if (j.contains("prepend_scheme")) {
      ALLOY_ASSIGN_OR_RETURN(const std::string scheme, GetString(j, "prepend_scheme", where));
      if (scheme == "always") {
        prepend = Prepend::kAlways;
      } else if (scheme == "first") {
        prepend = Prepend::kFirst;
      } else if (scheme == "never") {
        prepend = Prepend::kNever;
      } else {
        return Status::Unsupported(where + "/prepend_scheme: unknown scheme " + QuotedText(scheme));
      }
    } else {
      ALLOY_ASSIGN_OR_RETURN(const bool add, GetBool(j, "add_prefix_space", where, true));
      prepend = add ? Prepend::kAlways : Prepend::kNever;
    }
    ALLOY_ASSIGN_OR_RETURN(const bool split, GetBool(j, "split", where, true));
    return std::unique_ptr<PreTokenizer>(new MetaspacePre(replacement, prepend, split));
  }
  if (type == "Whitespace") return std::unique_ptr<PreTokenizer>(new WhitespacePre());
  if (type == "WhitespaceSplit") {
    return std::unique_ptr<PreTokenizer>(new CharSplitPre(CharRule::kWhitespace, Behavior::kRemoved));
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.emplace_back(new CharSplitPre(CharRule::kWhitespace, Behavior::kRemoved));
    parts.emplace_back(new CharSplitPre(CharRule::kBertPunct, Behavior::kIsolated));
    return std::unique_ptr<PreTokenizer>(new SequencePre(std::move(parts)));
  }
  if (type == "Punctuation") {
    ALLOY_ASSIGN_OR_RETURN(const Behavior behavior, ParseBehavior(j, where, Behavior::kIsolated));
    return std::unique_ptr<PreTokenizer>(new CharSplitPre(CharRule::kBertPunct, behavior));
  }
  if (type == "Digits") {
    ALLOY_ASSIGN_OR_RETURN(const bool individual, GetBool(j, "individual_digits", where, false));
    return std::unique_ptr<PreTokenizer>(new CharSplitPre(
        CharRule::kAsciiDigit, individual ? Behavior::kIsolated : Behavior::kContiguous));
  }
  if (type == "CharDelimiterSplit") {
    ALLOY_ASSIGN_OR_RETURN(const std::string delim, GetString(j, "delimiter", where));
    size_t len = 0;
    if (delim.empty() || (uni::NextCodePoint(delim, &len), len != delim.size())) {
      return Fail(where + "/delimiter", "must be one character");
    }
    size_t k = 0;
    return std::unique_ptr<PreTokenizer>(
        new CharSplitPre(CharRule::kDelimiter, Behavior::kRemoved, uni::NextCodePoint(delim, &k)));
  }
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return Fail(where, "Sequence needs a 'pretokenizers' array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t k = 0; k < j["pretokenizers"].size(); ++k) {
      ALLOY_ASSIGN_OR_RETURN(auto part, MakePreTokenizer(j["pretokenizers"][k],
                                                         where + "/pretokenizers/" + std::to_string(k)));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePre(std::move(parts)));
  }
  return Status::Unsupported(where + ": unknown pre-tokenizer type " + QuotedText(type));
}

}  // namespace alloy::formats::tok
