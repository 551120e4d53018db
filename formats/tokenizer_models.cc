// The tokenizer models: BPE (byte-level and SentencePiece-style with byte
// fallback), Unigram (Viterbi over log-probabilities) and WordPiece (greedy
// longest match), each validated while it is built from tokenizer.json.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <mutex>

#include "formats/tokenizer.h"
#include "formats/tokenizer_parts.h"
#include "formats/unicode_text.h"

namespace alloy::formats::tok {
namespace {

using nlohmann::json;
namespace uni = unicode;

Result<int32_t> CheckedId(const json& v, const std::string& where, size_t max_vocab) {
  if (!v.is_number_integer()) return Fail(where, "id must be an integer");
  const auto id = v.get<int64_t>();
  if (id < 0 || static_cast<uint64_t>(id) >= max_vocab) {
    return Fail(where, "id " + std::to_string(id) + " out of range [0, " + std::to_string(max_vocab) + ")");
  }
  return static_cast<int32_t>(id);
}

Status AddToVocab(Vocab* vocab, const std::string& token, int32_t id, const std::string& where) {
  if (token.size() > kMaxTokenBytes) {
    return Fail(where, "token of " + std::to_string(token.size()) + " bytes exceeds the cap of " +
                           std::to_string(kMaxTokenBytes));
  }
  const auto idx = static_cast<size_t>(id);
  if (idx >= vocab->tokens.size()) {
    vocab->tokens.resize(idx + 1);
    vocab->present.resize(idx + 1, false);
  }
  if (vocab->present[idx]) {
    return Fail(where, "duplicate id " + std::to_string(id) + " for " + QuotedText(vocab->tokens[idx]) +
                           " and " + QuotedText(token));
  }
  if (!vocab->ids.emplace(token, id).second) {
    return Fail(where, "duplicate token " + QuotedText(token));
  }
  vocab->tokens[idx] = token;
  vocab->present[idx] = true;
  return Status::OK();
}

// {"token": id, ...}
Result<Vocab> ReadVocabObject(const json& j, const std::string& where, size_t max_vocab) {
  if (!j.contains("vocab") || !j["vocab"].is_object()) return Fail(where, "'vocab' must be an object");
  const json& v = j["vocab"];
  if (v.size() > max_vocab) {
    return Status::InvalidArgument(where + "/vocab: " + std::to_string(v.size()) +
                                   " tokens exceed the cap of " + std::to_string(max_vocab));
  }
  Vocab vocab;
  vocab.ids.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string w = where + "/vocab/" + PrintableText(it.key(), 60);
    ALLOY_ASSIGN_OR_RETURN(const int32_t id, CheckedId(it.value(), w, max_vocab));
    ALLOY_RETURN_IF_ERROR(AddToVocab(&vocab, it.key(), id, w));
  }
  return vocab;
}

Result<std::string> OptionalString(const json& j, std::string_view key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Fail(where, "'" + std::string(key) + "' must be a string or null");
  return it->get<std::string>();
}

std::optional<int32_t> Find(const Vocab& v, std::string_view token) {
  const auto it = v.ids.find(token);
  if (it == v.ids.end()) return std::nullopt;
  return it->second;
}

// ---------------------------------------------------------------------- BPE

class BpeModel : public Model {
 public:
  std::string_view type() const override { return "BPE"; }
  const Vocab& vocab() const override { return vocab_; }

  Status Encode(std::string_view word, std::vector<int32_t>* out) const override {
    if (word.empty()) return Status::OK();
    if (ignore_merges_) {
      if (auto id = Find(vocab_, word)) {
        out->push_back(*id);
        return Status::OK();
      }
    }
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(mu_);
      const auto it = cache_.find(word);
      if (it != cache_.end()) {
        out->insert(out->end(), it->second.begin(), it->second.end());
        return Status::OK();
      }
    }
    const size_t first = out->size();
    MergeWord(word, out);
    if (cacheable) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cache_.size() >= kCacheCapacity) cache_.clear();
      cache_.emplace(std::string(word), std::vector<int32_t>(out->begin() + static_cast<std::ptrdiff_t>(first), out->end()));
    }
    return Status::OK();
  }

  static Result<std::unique_ptr<Model>> Make(const json& j, const std::string& where, size_t max_vocab) {
    auto m = std::make_unique<BpeModel>();
    ALLOY_ASSIGN_OR_RETURN(m->vocab_, ReadVocabObject(j, where, max_vocab));
    if (j.contains("dropout") && !j["dropout"].is_null()) {
      if (!j["dropout"].is_number()) return Fail(where, "'dropout' must be a number or null");
      if (j["dropout"].get<double>() > 0) {
        return Status::Unsupported(where + "/dropout: BPE dropout (random merges) is not supported");
      }
    }
    ALLOY_ASSIGN_OR_RETURN(const std::string unk, OptionalString(j, "unk_token", where));
    if (!unk.empty()) {
      m->unk_ = Find(m->vocab_, unk);
      if (!m->unk_) return Fail(where + "/unk_token", QuotedText(unk) + " is not in the vocabulary");
    }
    ALLOY_ASSIGN_OR_RETURN(m->prefix_, OptionalString(j, "continuing_subword_prefix", where));
    ALLOY_ASSIGN_OR_RETURN(m->suffix_, OptionalString(j, "end_of_word_suffix", where));
    ALLOY_ASSIGN_OR_RETURN(m->fuse_unk_, GetBool(j, "fuse_unk", where, false));
    ALLOY_ASSIGN_OR_RETURN(m->byte_fallback_, GetBool(j, "byte_fallback", where, false));
    ALLOY_ASSIGN_OR_RETURN(m->ignore_merges_, GetBool(j, "ignore_merges", where, false));
    ALLOY_RETURN_IF_ERROR(m->ReadMerges(j, where));
    m->char_ids_.fill(-1);
    if (m->prefix_.empty() && m->suffix_.empty()) {
      for (uint32_t cp = 0; cp < m->char_ids_.size(); ++cp) {
        std::string s;
        uni::AppendUtf8(&s, cp);
        if (auto id = Find(m->vocab_, s)) m->char_ids_[cp] = *id;
      }
    }
    for (int b = 0; b < 256; ++b) {
      const auto id = Find(m->vocab_, ByteToken(static_cast<uint8_t>(b)));
      m->byte_ids_[static_cast<size_t>(b)] = id ? *id : -1;
    }
    return std::unique_ptr<Model>(std::move(m));
  }

 private:
  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kCacheCapacity = 16384;

  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    // A min-heap on (rank, pos) through std::push_heap's max-heap.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };

  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  Status ReadMerges(const json& j, const std::string& where) {
    if (!j.contains("merges")) return Status::OK();
    const json& merges = j["merges"];
    if (!merges.is_array()) return Fail(where, "'merges' must be an array");
    if (merges.size() > kMaxTokenizerMerges) {
      return Status::InvalidArgument(where + "/merges: " + std::to_string(merges.size()) +
                                     " merges exceed the cap of " + std::to_string(kMaxTokenizerMerges));
    }
    merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const std::string w = where + "/merges/" + std::to_string(rank);
      const json& mj = merges[rank];
      std::string a, b;
      if (mj.is_string()) {
        const std::string s = mj.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          return Fail(w, "merge " + QuotedText(s) + " is not two tokens separated by one space");
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
        a = mj[0].get<std::string>();
        b = mj[1].get<std::string>();
      } else {
        return Fail(w, "a merge must be \"a b\" or [\"a\", \"b\"]");
      }
      const auto ia = Find(vocab_, a), ib = Find(vocab_, b);
      if (!ia) return Fail(w, "merge refers to unknown token " + QuotedText(a));
      if (!ib) return Fail(w, "merge refers to unknown token " + QuotedText(b));
      std::string merged = a;
      merged += (!prefix_.empty() && b.rfind(prefix_, 0) == 0) ? b.substr(prefix_.size()) : b;
      const auto im = Find(vocab_, merged);
      if (!im) return Fail(w, "merge result " + QuotedText(merged) + " is not in the vocabulary");
      merges_[PairKey(*ia, *ib)] = {static_cast<uint32_t>(rank), *im};
    }
    return Status::OK();
  }

  void PushSymbol(int32_t id, std::vector<Symbol>* syms) const {
    const auto n = static_cast<int32_t>(syms->size());
    syms->push_back({id, n - 1, -1});
    if (n > 0) (*syms)[static_cast<size_t>(n - 1)].next = n;
  }

  void MergeWord(std::string_view word, std::vector<int32_t>* out) const {
    thread_local std::vector<Symbol> syms;
    thread_local std::vector<Candidate> heap;
    thread_local std::string scratch;
    syms.clear();
    heap.clear();
    bool last_unk = false;
    size_t i = 0;
    while (i < word.size()) {
      const size_t b = i;
      const uint32_t cp = uni::NextCodePoint(word, &i);
      int32_t id = -1;
      if (cp < char_ids_.size() && prefix_.empty() && suffix_.empty()) {
        id = char_ids_[cp];
      } else {
        scratch.clear();
        if (b > 0) scratch += prefix_;
        scratch.append(word.substr(b, i - b));
        if (i == word.size()) scratch += suffix_;
        if (auto found = Find(vocab_, scratch)) id = *found;
      }
      if (id >= 0) {
        PushSymbol(id, &syms);
        last_unk = false;
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (size_t k = b; k < i; ++k) all = all && byte_ids_[static_cast<uint8_t>(word[k])] >= 0;
        if (all) {
          for (size_t k = b; k < i; ++k) PushSymbol(byte_ids_[static_cast<uint8_t>(word[k])], &syms);
          last_unk = false;
          continue;
        }
      }
      if (!unk_) continue;  // no unknown token: the character is dropped, as tokenizers does
      if (!(fuse_unk_ && last_unk)) PushSymbol(*unk_, &syms);
      last_unk = true;
    }
    auto push_pair = [&](int32_t pos) {
      const Symbol& s = syms[static_cast<size_t>(pos)];
      if (s.next < 0) return;
      const auto it = merges_.find(PairKey(s.id, syms[static_cast<size_t>(s.next)].id));
      if (it == merges_.end()) return;
      heap.push_back({it->second.first, pos, it->second.second});
      std::push_heap(heap.begin(), heap.end());
    };
    for (size_t k = 0; k + 1 < syms.size(); ++k) push_pair(static_cast<int32_t>(k));
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const Candidate top = heap.back();
      heap.pop_back();
      Symbol& s = syms[static_cast<size_t>(top.pos)];
      if (s.id < 0 || s.next < 0) continue;  // merged away, or nothing on the right
      Symbol& right = syms[static_cast<size_t>(s.next)];
      const auto it = merges_.find(PairKey(s.id, right.id));
      if (it == merges_.end() || it->second.second != top.new_id) continue;  // stale
      s.id = top.new_id;
      right.id = -1;
      s.next = right.next;
      if (s.next >= 0) syms[static_cast<size_t>(s.next)].prev = top.pos;
      if (s.prev >= 0) push_pair(s.prev);
      push_pair(top.pos);
    }
    for (const Symbol& s : syms) {
      if (s.id >= 0) out->push_back(s.id);
    }
  }

  Vocab vocab_;
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges_;  // pair → (rank, merged id)
  std::optional<int32_t> unk_;
  std::string prefix_, suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::array<int32_t, 0x800> char_ids_{};  // id of each code point < U+0800 as a whole token
  std::array<int32_t, 256> byte_ids_{};    // id of <0xXX>, or -1
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

// ------------------------------------------------------------------ Unigram

class UnigramModel : public Model {
 public:
  std::string_view type() const override { return "Unigram"; }
  const Vocab& vocab() const override { return vocab_; }

  Status Encode(std::string_view word, std::vector<int32_t>* out) const override {
    if (word.empty()) return Status::OK();
    // Lattice over byte positions that start characters; best[k] = best path ending at k.
    struct Node {
      double score = 0;
      size_t start = 0;
      int32_t id = -2;  // -2: unreached, -1: unknown character
    };
    std::vector<Node> best(word.size() + 1);
    best[0].id = -3;  // reached (the start)
    size_t pos = 0;
    while (pos < word.size()) {
      size_t char_end = pos;
      uni::NextCodePoint(word, &char_end);
      if (best[pos].id == -2) {
        pos = char_end;
        continue;
      }
      const double here = best[pos].score;
      bool single = false;
      size_t end = pos;
      while (end < word.size() && end - pos < max_piece_bytes_) {
        uni::NextCodePoint(word, &end);
        const auto id = Find(vocab_, word.substr(pos, end - pos));
        if (!id) continue;
        if (end == char_end) single = true;
        const double cand = here + scores_[static_cast<size_t>(*id)];
        Node& target = best[end];
        if (target.id == -2 || cand > target.score) target = {cand, pos, *id};
      }
      if (!single) {
        const double cand = here + unk_score_;
        Node& target = best[char_end];
        if (target.id == -2 || cand > target.score) target = {cand, pos, -1};
      }
      pos = char_end;
    }
    // Backtrack; fuse runs of unknown characters.
    std::vector<std::pair<size_t, int32_t>> path;  // (start, id) from the end
    size_t end = word.size();
    while (end > 0) {
      const Node& n = best[end];
      if (n.id == -1 && !path.empty() && path.back().second == -1) {
        path.back().first = n.start;
      } else {
        path.emplace_back(n.start, n.id);
      }
      end = n.start;
    }
    size_t piece_end = word.size();
    std::vector<int32_t> ids;
    for (const auto& [start, id] : path) {
      // Reversed order: emit into `ids` reversed, then flip.
      std::vector<int32_t> piece;
      if (id >= 0) {
        piece.push_back(id);
      } else {
        const std::string_view text = word.substr(start, piece_end - start);
        bool done = false;
        if (byte_fallback_) {
          std::vector<int32_t> bytes;
          for (char c : text) {
            if (const auto bid = Find(vocab_, ByteToken(static_cast<uint8_t>(c)))) bytes.push_back(*bid);
          }
          if (bytes.size() == text.size()) {
            piece = std::move(bytes);
            done = true;
          }
        }
        if (!done) {
          if (!unk_) {
            return Status::InvalidArgument("Unigram model has no unknown token for " + QuotedText(text));
          }
          piece.push_back(*unk_);
        }
      }
      ids.insert(ids.end(), piece.rbegin(), piece.rend());
      piece_end = start;
    }
    out->insert(out->end(), ids.rbegin(), ids.rend());
    return Status::OK();
  }

  static Result<std::unique_ptr<Model>> Make(const json& j, const std::string& where, size_t max_vocab) {
    auto m = std::make_unique<UnigramModel>();
    if (!j.contains("vocab") || !j["vocab"].is_array()) return Fail(where, "'vocab' must be an array");
    const json& v = j["vocab"];
    if (v.size() > max_vocab) {
      return Status::InvalidArgument(where + "/vocab: " + std::to_string(v.size()) +
                                     " tokens exceed the cap of " + std::to_string(max_vocab));
    }
    double min_score = std::numeric_limits<double>::infinity();
    for (size_t k = 0; k < v.size(); ++k) {
      const std::string w = where + "/vocab/" + std::to_string(k);
      if (!v[k].is_array() || v[k].size() != 2 || !v[k][0].is_string() || !v[k][1].is_number()) {
        return Fail(w, "expected [\"piece\", score]");
      }
      const double score = v[k][1].get<double>();
      if (!std::isfinite(score)) return Fail(w, "score is not finite");
      ALLOY_RETURN_IF_ERROR(AddToVocab(&m->vocab_, v[k][0].get<std::string>(), static_cast<int32_t>(k), w));
      m->scores_.push_back(score);
      min_score = std::min(min_score, score);
      m->max_piece_bytes_ = std::max(m->max_piece_bytes_, v[k][0].get_ref<const std::string&>().size());
    }
    m->unk_score_ = (v.empty() ? 0.0 : min_score) - 10.0;  // tokenizers' K_UNK_PENALTY
    if (j.contains("unk_id") && !j["unk_id"].is_null()) {
      ALLOY_ASSIGN_OR_RETURN(const int32_t unk, CheckedId(j["unk_id"], where + "/unk_id", v.size()));
      m->unk_ = unk;
    }
    ALLOY_ASSIGN_OR_RETURN(m->byte_fallback_, GetBool(j, "byte_fallback", where, false));
    return std::unique_ptr<Model>(std::move(m));
  }

 private:
  Vocab vocab_;
  std::vector<double> scores_;
  double unk_score_ = -10.0;
  size_t max_piece_bytes_ = 1;
  std::optional<int32_t> unk_;
  bool byte_fallback_ = false;
};

// ---------------------------------------------------------------- WordPiece

class WordPieceModel : public Model {
 public:
  std::string_view type() const override { return "WordPiece"; }
  const Vocab& vocab() const override { return vocab_; }

  Status Encode(std::string_view word, std::vector<int32_t>* out) const override {
    if (word.empty()) return Status::OK();
    size_t n_chars = 0;
    for (char c : word) n_chars += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
    if (n_chars > max_chars_) {
      out->push_back(unk_);
      return Status::OK();
    }
    std::vector<int32_t> ids;
    std::string candidate;
    size_t start = 0;
    while (start < word.size()) {
      size_t end = word.size();
      std::optional<int32_t> found;
      while (start < end) {
        candidate.clear();
        if (start > 0) candidate = prefix_;
        candidate.append(word.substr(start, end - start));
        found = Find(vocab_, candidate);
        if (found) break;
        --end;
        while (end > start && (static_cast<uint8_t>(word[end]) & 0xC0) == 0x80) --end;
      }
      if (!found) {
        out->push_back(unk_);
        return Status::OK();
      }
      ids.push_back(*found);
      start = end;
    }
    out->insert(out->end(), ids.begin(), ids.end());
    return Status::OK();
  }

  static Result<std::unique_ptr<Model>> Make(const json& j, const std::string& where, size_t max_vocab) {
    auto m = std::make_unique<WordPieceModel>();
    ALLOY_ASSIGN_OR_RETURN(m->vocab_, ReadVocabObject(j, where, max_vocab));
    ALLOY_ASSIGN_OR_RETURN(const std::string unk, GetString(j, "unk_token", where));
    const auto unk_id = Find(m->vocab_, unk);
    if (!unk_id) return Fail(where + "/unk_token", QuotedText(unk) + " is not in the vocabulary");
    m->unk_ = *unk_id;
    m->prefix_ = "##";
    if (j.contains("continuing_subword_prefix")) {
      ALLOY_ASSIGN_OR_RETURN(m->prefix_, GetString(j, "continuing_subword_prefix", where));
    }
    if (j.contains("max_input_chars_per_word")) {
      const json& mc = j["max_input_chars_per_word"];
      if (!mc.is_number_unsigned()) return Fail(where, "'max_input_chars_per_word' must be a non-negative integer");
      m->max_chars_ = mc.get<size_t>();
    }
    return std::unique_ptr<Model>(std::move(m));
  }

 private:
  Vocab vocab_;
  int32_t unk_ = 0;
  std::string prefix_;
  size_t max_chars_ = 100;
};

// ---------------------------------------------------------------- WordLevel

// One token per pre-token: the word's id, or the unknown token.
class WordLevelModel : public Model {
 public:
  std::string_view type() const override { return "WordLevel"; }
  const Vocab& vocab() const override { return vocab_; }

  Status Encode(std::string_view word, std::vector<int32_t>* out) const override {
    if (word.empty()) return Status::OK();
    if (const auto id = Find(vocab_, word)) {
      out->push_back(*id);
      return Status::OK();
    }
    if (!unk_) return Status::InvalidArgument("WordLevel model has no unknown token for " + QuotedText(word));
    out->push_back(*unk_);
    return Status::OK();
  }

  static Result<std::unique_ptr<Model>> Make(const json& j, const std::string& where, size_t max_vocab) {
    auto m = std::make_unique<WordLevelModel>();
    ALLOY_ASSIGN_OR_RETURN(m->vocab_, ReadVocabObject(j, where, max_vocab));
    ALLOY_ASSIGN_OR_RETURN(const std::string unk, OptionalString(j, "unk_token", where));
    if (!unk.empty()) {
      m->unk_ = Find(m->vocab_, unk);
      if (!m->unk_) return Fail(where + "/unk_token", QuotedText(unk) + " is not in the vocabulary");
    }
    return std::unique_ptr<Model>(std::move(m));
  }

 private:
  Vocab vocab_;
  std::optional<int32_t> unk_;
};

}  // namespace

Result<std::unique_ptr<Model>> MakeModel(const json& j, const std::string& where, size_t max_vocab) {
  if (!j.is_object()) return Fail(where, "'model' must be an object");
  std::string type;
  if (j.contains("type")) {
    ALLOY_ASSIGN_OR_RETURN(type, GetString(j, "type", where));
  } else if (j.contains("merges")) {
    type = "BPE";  // old files omit the type of BPE models
  } else {
    return Fail(where, "the model has no 'type'");
  }
  if (type == "BPE") return BpeModel::Make(j, where, max_vocab);
  if (type == "Unigram") return UnigramModel::Make(j, where, max_vocab);
  if (type == "WordPiece") return WordPieceModel::Make(j, where, max_vocab);
  if (type == "WordLevel") return WordLevelModel::Make(j, where, max_vocab);
  return Status::Unsupported(where + ": unknown model type " + QuotedText(type) +
                             " (alloy reads BPE, Unigram, WordPiece and WordLevel)");
}

}  // namespace alloy::formats::tok
