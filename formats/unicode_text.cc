#include "formats/unicode_text.h"

#include <algorithm>
#include <vector>

namespace alloy::formats::unicode {
namespace ut = unicode_tables;
namespace {

// Length of the valid sequence at `i`, or 0 with `*bad` = bytes of the
// maximal invalid subpart (WHATWG / Unicode "U+FFFD substitution of maximal
// subparts").
size_t ValidSequenceAt(std::string_view s, size_t i, size_t* bad) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return 1;
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      *bad = k;
      return 0;
    }
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *bad = k;
      return 0;
    }
  }
  return need + 1;
}

bool Lookup(const uint64_t* table, size_t n, uint32_t cp, uint32_t* off, uint32_t* len) {
  const uint64_t key = static_cast<uint64_t>(cp) << 32;
  const uint64_t* it = std::lower_bound(table, table + n, key);
  if (it == table + n || (*it >> 32) != cp) return false;
  *off = static_cast<uint32_t>((*it >> 8) & 0xFFFFFF);
  *len = static_cast<uint32_t>(*it & 0xFF);
  return true;
}

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void Decompose(uint32_t cp, bool compat, std::u32string* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out->push_back(kTBase + s % kTCount);
    return;
  }
  uint32_t off = 0, len = 0;
  if ((compat && Lookup(ut::kCompatDecompositions, ut::kNumCompatDecompositions, cp, &off, &len)) ||
      Lookup(ut::kCanonicalDecompositions, ut::kNumCanonicalDecompositions, cp, &off, &len)) {
    out->append(ut::kDecompositionPool + off, ut::kDecompositionPool + off + len);
    return;
  }
  out->push_back(cp);
}

// Canonical ordering: a stable sort of each run of non-starters by class.
void CanonicalOrder(std::u32string* s) {
  size_t i = 0;
  while (i < s->size()) {
    if (CombiningClass((*s)[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s->size() && CombiningClass((*s)[j]) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(s->begin() + static_cast<std::ptrdiff_t>(i),
                       s->begin() + static_cast<std::ptrdiff_t>(j),
                       [](char32_t a, char32_t b) { return CombiningClass(a) < CombiningClass(b); });
    }
    i = j;
  }
}

uint32_t ComposePair(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const uint64_t key = (static_cast<uint64_t>(a) << 21) | b;
  const uint64_t* end = ut::kCompositionKeys + ut::kNumCompositions;
  const uint64_t* it = std::lower_bound(ut::kCompositionKeys, end, key);
  if (it == end || *it != key) return 0;
  return ut::kCompositionValues[it - ut::kCompositionKeys];
}

void Compose(std::u32string* s) {
  if (s->empty()) return;
  size_t starter = 0;
  bool have_starter = CombiningClass((*s)[0]) == 0;
  size_t out = 1;
  int last_class = have_starter ? 0 : 256;
  for (size_t i = 1; i < s->size(); ++i) {
    const uint32_t c = (*s)[i];
    const int cls = CombiningClass(c);
    if (have_starter && (last_class < cls || (last_class == 0 && out == starter + 1))) {
      const uint32_t composed = ComposePair((*s)[starter], c);
      if (composed != 0) {
        (*s)[starter] = composed;
        continue;
      }
    }
    if (cls == 0) {
      starter = out;
      have_starter = true;
    }
    last_class = cls;
    (*s)[out++] = c;
  }
  s->resize(out);
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 0;
    const size_t n = ValidSequenceAt(s, i, &bad);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string RepairUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 0;
    const size_t n = ValidSequenceAt(s, i, &bad);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      i += bad;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

void AppendUtf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) out.push_back(NextCodePoint(s, &i));
  return out;
}

std::string EncodeUtf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(&out, c);
  return out;
}

Category CategoryOf(uint32_t cp) {
  // ASCII fast path: a 128-entry table built from the runs once.
  static const auto ascii = [] {
    std::vector<Category> t(128);
    size_t run = 0;
    for (uint32_t c = 0; c < 128; ++c) {
      while (run + 1 < ut::kNumCategoryRuns && (ut::kCategoryRuns[run + 1] >> 8) <= c) ++run;
      t[c] = static_cast<Category>(ut::kCategoryRuns[run] & 0xFF);
    }
    return t;
  }();
  if (cp < 128) return ascii[cp];
  const uint32_t key = (cp << 8) | 0xFF;
  const uint32_t* end = ut::kCategoryRuns + ut::kNumCategoryRuns;
  const uint32_t* it = std::upper_bound(ut::kCategoryRuns, end, key);
  return static_cast<Category>(*(it - 1) & 0xFF);
}

bool IsLetter(uint32_t cp) {
  const Category c = CategoryOf(cp);
  return c >= Category::kLu && c <= Category::kLo;
}
bool IsNumber(uint32_t cp) {
  const Category c = CategoryOf(cp);
  return c >= Category::kNd && c <= Category::kNo;
}
bool IsMark(uint32_t cp) {
  const Category c = CategoryOf(cp);
  return c >= Category::kMn && c <= Category::kMe;
}
bool IsPunctuation(uint32_t cp) {
  const Category c = CategoryOf(cp);
  return c >= Category::kPc && c <= Category::kPo;
}
bool IsAlphanumeric(uint32_t cp) { return IsLetter(cp) || IsNumber(cp); }

bool IsWhitespace(uint32_t cp) {
  // The White_Space property (PropList.txt), which is short and stable.
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint8_t CombiningClass(uint32_t cp) {
  if (cp < 0x300) return 0;
  const uint64_t key = (static_cast<uint64_t>(cp) << 32) | 0xFFFFFFFFu;
  const uint64_t* end = ut::kCombiningRuns + ut::kNumCombiningRuns;
  const uint64_t* it = std::upper_bound(ut::kCombiningRuns, end, key);
  if (it == ut::kCombiningRuns) return 0;
  const uint64_t run = *(it - 1);
  const auto last = static_cast<uint32_t>((run >> 8) & 0xFFFFFF);
  return cp <= last ? static_cast<uint8_t>(run & 0xFF) : 0;
}

std::string Normalize(std::string_view s, NormalForm form) {
  bool ascii = true;
  for (char c : s) ascii = ascii && static_cast<uint8_t>(c) < 0x80;
  if (ascii) return std::string(s);  // ASCII is invariant under every form
  const bool compat = form == NormalForm::kNfkc || form == NormalForm::kNfkd;
  std::u32string d;
  d.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) Decompose(NextCodePoint(s, &i), compat, &d);
  CanonicalOrder(&d);
  if (form == NormalForm::kNfc || form == NormalForm::kNfkc) Compose(&d);
  return EncodeUtf8(d);
}

std::string Lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const uint32_t cp = NextCodePoint(s, &i);
    if (cp < 128) {
      out.push_back(static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
      continue;
    }
    if (cp == 0x130) {  // İ → i + combining dot above (SpecialCasing.txt)
      out += "i\xCC\x87";
      continue;
    }
    uint32_t low = cp;
    const ut::LowerRun* end = ut::kLowerRuns + ut::kNumLowerRuns;
    const ut::LowerRun* it = std::upper_bound(
        ut::kLowerRuns, end, cp, [](uint32_t c, const ut::LowerRun& r) { return c < r.start; });
    if (it != ut::kLowerRuns) {
      const ut::LowerRun& r = *(it - 1);
      const uint32_t k = (cp - r.start) / r.step;
      if ((cp - r.start) % r.step == 0 && k < r.count) {
        low = static_cast<uint32_t>(static_cast<int64_t>(cp) + r.delta);
      }
    }
    AppendUtf8(&out, low);
  }
  return out;
}

}  // namespace alloy::formats::unicode
