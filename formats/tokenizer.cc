#include "formats/tokenizer.h"

#include <algorithm>
#include <unordered_map>

#include "formats/file_util.h"
#include "formats/json_strict.h"
#include "formats/tokenizer_parts.h"
#include "formats/unicode_text.h"

namespace alloy::formats {

using nlohmann::json;

struct Tokenizer::Rep {
  std::string source;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::Model> model;
  std::unique_ptr<tok::PostProcessor> post_processor;
  std::unique_ptr<tok::Decoder> decoder;
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;  // id → index in `added`
  tok::TokenMap added_ids;                          // content → id
  // Added tokens matched on raw / normalized text, by first byte of what is
  // matched, longest first (leftmost-longest matching). Pairs (content, index).
  std::vector<std::vector<std::pair<std::string, size_t>>> raw_by_byte, norm_by_byte;
  bool has_raw = false, has_norm = false;
  size_t vocab_size = 0;
  TokenizerConfig config;
};

namespace {

struct Segment {
  std::string text;
  int32_t added = -1;  // id of the added token, or -1 for text
  bool at_start = false;
};

bool IsWordChar(std::string_view s, bool last) {
  if (s.empty()) return false;
  size_t pos = 0;
  if (last) {
    pos = s.size() - 1;
    while (pos > 0 && (static_cast<uint8_t>(s[pos]) & 0xC0) == 0x80) --pos;
  }
  // tokenizers tests the neighbours with Rust regex's \w: letters, marks,
  // decimal and letter numbers, connector punctuation.
  const uint32_t cp = unicode::NextCodePoint(s, &pos);
  const unicode::Category cat = unicode::CategoryOf(cp);
  return unicode::IsLetter(cp) || unicode::IsMark(cp) || cat == unicode::Category::kNd ||
         cat == unicode::Category::kNl || cat == unicode::Category::kPc;
}

// Splits `text` at the added tokens of `by_byte` (tokenizers'
// AddedVocabulary::find_matches: leftmost-longest, then single_word, lstrip
// and rstrip) and appends the segments.
void SplitAdded(const Tokenizer::Rep& rep, const std::vector<std::vector<std::pair<std::string, size_t>>>& by_byte,
                std::string_view text, bool at_start, std::vector<Segment>* out) {
  size_t seg_start = 0, pos = 0;
  while (pos < text.size()) {
    const auto& bucket = by_byte[static_cast<uint8_t>(text[pos])];
    const std::pair<std::string, size_t>* hit = nullptr;
    for (const auto& cand : bucket) {
      if (text.compare(pos, cand.first.size(), cand.first) == 0) {
        hit = &cand;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    const AddedToken& tok = rep.added[hit->second];
    size_t start = pos, stop = pos + hit->first.size();
    if (tok.single_word && ((start > 0 && IsWordChar(text.substr(0, start), true)) ||
                            (stop < text.size() && IsWordChar(text.substr(stop), false)))) {
      pos = stop;
      continue;
    }
    if (tok.lstrip) {
      while (start > seg_start) {
        size_t b = start - 1;
        while (b > seg_start && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
        size_t k = b;
        if (!unicode::IsWhitespace(unicode::NextCodePoint(text, &k))) break;
        start = b;
      }
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t k = stop;
        if (!unicode::IsWhitespace(unicode::NextCodePoint(text, &k))) break;
        stop = k;
      }
    }
    if (start > seg_start) {
      out->push_back({std::string(text.substr(seg_start, start - seg_start)), -1, at_start && seg_start == 0});
    }
    out->push_back({std::string(), tok.id, false});
    seg_start = pos = stop;
  }
  if (seg_start < text.size()) {
    out->push_back({std::string(text.substr(seg_start)), -1, at_start && seg_start == 0});
  }
}

Result<AddedToken> ParseAddedToken(const json& j, const std::string& where, bool need_id, size_t max_vocab) {
  if (!j.is_object()) return tok::Fail(where, "an added token must be an object");
  AddedToken t;
  ALLOY_ASSIGN_OR_RETURN(t.content, tok::GetString(j, "content", where));
  if (t.content.empty()) return tok::Fail(where, "an added token's content must not be empty");
  if (t.content.size() > kMaxTokenBytes) return tok::Fail(where, "added token content exceeds the cap");
  if (need_id) {
    if (!j.contains("id") || !j["id"].is_number_integer()) return tok::Fail(where, "'id' must be an integer");
    const auto id = j["id"].get<int64_t>();
    if (id < 0 || static_cast<uint64_t>(id) >= max_vocab) {
      return tok::Fail(where, "id " + std::to_string(id) + " out of range [0, " + std::to_string(max_vocab) + ")");
    }
    t.id = static_cast<int32_t>(id);
  }
  ALLOY_ASSIGN_OR_RETURN(t.single_word, tok::GetBool(j, "single_word", where, false));
  ALLOY_ASSIGN_OR_RETURN(t.lstrip, tok::GetBool(j, "lstrip", where, false));
  ALLOY_ASSIGN_OR_RETURN(t.rstrip, tok::GetBool(j, "rstrip", where, false));
  ALLOY_ASSIGN_OR_RETURN(t.special, tok::GetBool(j, "special", where, false));
  ALLOY_ASSIGN_OR_RETURN(t.normalized, tok::GetBool(j, "normalized", where, !t.special));
  return t;
}

// A special token in tokenizer_config.json / special_tokens_map.json: a
// string, an AddedToken object ({"content": ...}), or null.
Result<std::optional<std::string>> SpecialTokenField(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return std::optional<std::string>();
  const json& v = j[key];
  if (v.is_string()) return std::optional<std::string>(v.get<std::string>());
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return std::optional<std::string>(v["content"].get<std::string>());
  }
  return tok::Fail(where + "/" + key, "expected a string or an object with a 'content' string");
}

Status ReadSpecialTokens(const json& j, const std::string& where, TokenizerConfig* c) {
  const std::pair<const char*, std::optional<std::string>*> fields[] = {
      {"bos_token", &c->bos_token}, {"eos_token", &c->eos_token},
      {"pad_token", &c->pad_token}, {"unk_token", &c->unk_token}};
  for (const auto& [key, dst] : fields) {
    ALLOY_ASSIGN_OR_RETURN(std::optional<std::string> v, SpecialTokenField(j, key, where));
    if (v) *dst = std::move(v);
  }
  if (j.contains("additional_special_tokens") && !j["additional_special_tokens"].is_null()) {
    const json& list = j["additional_special_tokens"];
    const std::string w = where + "/additional_special_tokens";
    if (!list.is_array()) return tok::Fail(w, "expected a list");
    c->additional_special_tokens.clear();
    for (size_t k = 0; k < list.size(); ++k) {
      const json& e = list[k];
      if (e.is_string()) {
        c->additional_special_tokens.push_back(e.get<std::string>());
      } else if (e.is_object() && e.contains("content") && e["content"].is_string()) {
        c->additional_special_tokens.push_back(e["content"].get<std::string>());
      } else {
        return tok::Fail(w + "/" + std::to_string(k), "expected a string or an AddedToken object");
      }
    }
  }
  return Status::OK();
}

Result<json> ParseObject(std::string_view text, std::string_view what) {
  ALLOY_ASSIGN_OR_RETURN(json j, ParseStrictJson(text, what));
  if (!j.is_object()) return Status::Corrupt(std::string(what) + ": expected a JSON object at the top level");
  return j;
}

}  // namespace

Tokenizer::Tokenizer() : rep_(std::make_unique<Rep>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

namespace {

Status BuildRep(const json& root, const std::string& w, size_t max_vocab, Tokenizer::Rep* rep) {
  if (root.contains("model") == false) return tok::Fail(w, "no 'model'");
  ALLOY_ASSIGN_OR_RETURN(rep->normalizer,
                         tok::MakeNormalizer(root.value("normalizer", json()), w + ": /normalizer"));
  ALLOY_ASSIGN_OR_RETURN(rep->pre_tokenizer,
                         tok::MakePreTokenizer(root.value("pre_tokenizer", json()), w + ": /pre_tokenizer"));
  ALLOY_ASSIGN_OR_RETURN(rep->model, tok::MakeModel(root["model"], w + ": /model", max_vocab));
  ALLOY_ASSIGN_OR_RETURN(rep->decoder, tok::MakeDecoder(root.value("decoder", json()), w + ": /decoder"));
  const tok::Vocab& vocab = rep->model->vocab();
  rep->vocab_size = vocab.tokens.size();
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& list = root["added_tokens"];
    if (!list.is_array()) return tok::Fail(w + ": /added_tokens", "expected a list");
    if (list.size() > max_vocab) return Status::InvalidArgument(w + ": /added_tokens: too many added tokens");
    for (size_t k = 0; k < list.size(); ++k) {
      const std::string tw = w + ": /added_tokens/" + std::to_string(k);
      ALLOY_ASSIGN_OR_RETURN(AddedToken t, ParseAddedToken(list[k], tw, true, max_vocab));
      const auto idx = static_cast<size_t>(t.id);
      if (idx < vocab.tokens.size() && vocab.present[idx] && vocab.tokens[idx] != t.content) {
        return tok::Fail(tw, "added token " + QuotedText(t.content) + " has id " + std::to_string(t.id) +
                                 ", which the model vocabulary gives to " + QuotedText(vocab.tokens[idx]));
      }
      const auto in_model = vocab.ids.find(t.content);
      if (in_model != vocab.ids.end() && in_model->second != t.id) {
        return tok::Fail(tw, "added token " + QuotedText(t.content) + " has id " + std::to_string(t.id) +
                                 " but is id " + std::to_string(in_model->second) + " in the model vocabulary");
      }
      if (rep->added_by_id.count(t.id)) {
        return tok::Fail(tw, "duplicate added token id " + std::to_string(t.id));
      }
      if (!rep->added_ids.emplace(t.content, t.id).second) {
        return tok::Fail(tw, "duplicate added token " + QuotedText(t.content));
      }
      rep->added_by_id[t.id] = rep->added.size();
      rep->vocab_size = std::max(rep->vocab_size, idx + 1);
      rep->added.push_back(std::move(t));
    }
  }
  rep->raw_by_byte.assign(256, {});
  rep->norm_by_byte.assign(256, {});
  for (size_t k = 0; k < rep->added.size(); ++k) {
    const AddedToken& t = rep->added[k];
    std::string match = t.content;
    const bool norm = t.normalized && rep->normalizer != nullptr;
    if (norm) rep->normalizer->Normalize(&match);
    if (match.empty()) continue;
    auto& by_byte = norm ? rep->norm_by_byte : rep->raw_by_byte;
    by_byte[static_cast<uint8_t>(match[0])].emplace_back(match, k);
    (norm ? rep->has_norm : rep->has_raw) = true;
  }
  for (auto* table : {&rep->raw_by_byte, &rep->norm_by_byte}) {
    for (auto& bucket : *table) {
      std::stable_sort(bucket.begin(), bucket.end(),
                       [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    }
  }
  const tok::TokenLookup lookup = [rep](std::string_view s) -> std::optional<int32_t> {
    const auto it = rep->added_ids.find(s);
    if (it != rep->added_ids.end()) return it->second;
    const auto m = rep->model->vocab().ids.find(s);
    if (m != rep->model->vocab().ids.end()) return m->second;
    return std::nullopt;
  };
  ALLOY_ASSIGN_OR_RETURN(rep->post_processor,
                         tok::MakePostProcessor(root.value("post_processor", json()), w + ": /post_processor",
                                                lookup, rep->vocab_size));
  return Status::OK();
}

}  // namespace

Result<Tokenizer> ParseTokenizerJson(std::string_view json_text, std::string_view what) {
  ALLOY_ASSIGN_OR_RETURN(json root, ParseObject(json_text, what));
  Tokenizer t;
  t.rep_->source = std::string(what);
  ALLOY_RETURN_IF_ERROR(BuildRep(root, std::string(what), kMaxTokenizerVocab, t.rep_.get()));
  return t;
}

Status ParseTokenizerConfig(std::string_view config_text, std::string_view config_what,
                            std::string_view map_text, std::string_view map_what, TokenizerConfig* config) {
  if (!config_text.empty()) {
    const std::string w(config_what);
    ALLOY_ASSIGN_OR_RETURN(json j, ParseObject(config_text, config_what));
    config->files.push_back(w);
    if (j.contains("chat_template") && !j["chat_template"].is_null()) {
      const json& ct = j["chat_template"];
      if (ct.is_string()) {
        config->chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (size_t k = 0; k < ct.size(); ++k) {
          const std::string ew = w + ": /chat_template/" + std::to_string(k);
          ALLOY_ASSIGN_OR_RETURN(std::string name, tok::GetString(ct[k], "name", ew));
          ALLOY_ASSIGN_OR_RETURN(std::string tmpl, tok::GetString(ct[k], "template", ew));
          if (name == "default") config->chat_template = tmpl;
          config->named_chat_templates.emplace_back(std::move(name), std::move(tmpl));
        }
      } else {
        return tok::Fail(w + ": /chat_template", "expected a string or a list of {name, template}");
      }
    }
    ALLOY_RETURN_IF_ERROR(ReadSpecialTokens(j, w + ": ", config));
    for (const char* key : {"add_bos_token", "add_eos_token"}) {
      if (!j.contains(key) || j[key].is_null()) continue;
      if (!j[key].is_boolean()) return tok::Fail(w + ": /" + key, "expected true or false");
      (std::string(key) == "add_bos_token" ? config->add_bos_token : config->add_eos_token) = j[key].get<bool>();
    }
    if (j.contains("added_tokens_decoder") && !j["added_tokens_decoder"].is_null()) {
      const json& dec = j["added_tokens_decoder"];
      if (!dec.is_object()) return tok::Fail(w + ": /added_tokens_decoder", "expected an object");
      for (auto it = dec.begin(); it != dec.end(); ++it) {
        const std::string ew = w + ": /added_tokens_decoder/" + PrintableText(it.key(), 40);
        const std::string& key = it.key();
        if (key.empty() || key.size() > 9 || !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
          return tok::Fail(ew, "key must be a token id");
        }
        const auto id = std::stoll(key);
        if (static_cast<uint64_t>(id) >= kMaxTokenizerVocab) return tok::Fail(ew, "id out of range");
        ALLOY_ASSIGN_OR_RETURN(AddedToken t, ParseAddedToken(it.value(), ew, false, kMaxTokenizerVocab));
        t.id = static_cast<int32_t>(id);
        config->added_tokens_decoder.push_back(std::move(t));
      }
      std::sort(config->added_tokens_decoder.begin(), config->added_tokens_decoder.end(),
                [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
    }
  }
  if (!map_text.empty()) {
    ALLOY_ASSIGN_OR_RETURN(json j, ParseObject(map_text, map_what));
    config->files.emplace_back(map_what);
    ALLOY_RETURN_IF_ERROR(ReadSpecialTokens(j, std::string(map_what) + ": ", config));
  }
  return Status::OK();
}

Result<Tokenizer> LoadTokenizer(const std::string& model_dir, const TokenizerLoadOptions& options) {
  if (!IsDirectory(model_dir)) return Status::NotFound(model_dir + ": not a directory");
  const std::string path = model_dir + "/tokenizer.json";
  if (!IsRegularFile(path)) {
    if (IsRegularFile(model_dir + "/tokenizer.model")) {
      return Status::Unsupported(model_dir +
                                 ": only tokenizer.model (SentencePiece protobuf) found; alloy reads "
                                 "tokenizer.json (convert it with transformers' "
                                 "AutoTokenizer.from_pretrained(...).save_pretrained(...))");
    }
    return Status::NotFound(model_dir + ": no tokenizer.json");
  }
  ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(model_dir, path, options.symlinks));
  ALLOY_ASSIGN_OR_RETURN(const std::string text, ReadSmallFile(path, options.max_file_bytes));
  ALLOY_ASSIGN_OR_RETURN(json root, ParseObject(text, path));
  Tokenizer t;
  t.rep_->source = path;
  ALLOY_RETURN_IF_ERROR(BuildRep(root, path, options.max_vocab, t.rep_.get()));
  std::string config_text, map_text;
  const std::string config_path = model_dir + "/tokenizer_config.json";
  const std::string map_path = model_dir + "/special_tokens_map.json";
  for (const auto& [p, dst] : {std::pair{&config_path, &config_text}, std::pair{&map_path, &map_text}}) {
    if (!IsRegularFile(*p)) continue;
    ALLOY_RETURN_IF_ERROR(CheckInsideDirectory(model_dir, *p, options.symlinks));
    ALLOY_ASSIGN_OR_RETURN(*dst, ReadSmallFile(*p, options.max_file_bytes));
  }
  ALLOY_RETURN_IF_ERROR(ParseTokenizerConfig(config_text, config_path, map_text, map_path, &t.rep_->config));
  return t;
}

Result<std::vector<int32_t>> Tokenizer::Encode(std::string_view input, bool add_special_tokens) const {
  const Rep& r = *rep_;
  std::string repaired;
  if (!unicode::IsValidUtf8(input)) {
    repaired = unicode::RepairUtf8(input);
    input = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(input.size() / 3 + 4);
  std::vector<Segment> segments, sub;
  if (r.has_raw) {
    SplitAdded(r, r.raw_by_byte, input, true, &segments);
  } else if (!input.empty()) {
    segments.push_back({std::string(input), -1, true});
  }
  std::vector<tok::Piece> pieces;
  for (Segment& seg : segments) {
    if (seg.added >= 0) {
      ids.push_back(seg.added);
      continue;
    }
    if (r.normalizer) r.normalizer->Normalize(&seg.text);
    sub.clear();
    if (r.has_norm) {
      SplitAdded(r, r.norm_by_byte, seg.text, seg.at_start, &sub);
    } else if (!seg.text.empty()) {
      sub.push_back({std::move(seg.text), -1, seg.at_start});
    }
    for (Segment& s : sub) {
      if (s.added >= 0) {
        ids.push_back(s.added);
        continue;
      }
      pieces.clear();
      pieces.push_back({std::move(s.text), s.at_start});
      if (r.pre_tokenizer) r.pre_tokenizer->Split(&pieces);
      for (const tok::Piece& p : pieces) {
        ALLOY_RETURN_IF_ERROR(r.model->Encode(p.text, &ids));
      }
    }
  }
  if (add_special_tokens && r.post_processor) r.post_processor->Process(&ids);
  return ids;
}

std::vector<std::string> Tokenizer::Pieces(const std::vector<int32_t>& ids) const {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    const auto t = TokenOf(id);
    out.emplace_back(t ? *t : std::string_view());
  }
  return out;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special_tokens && IsSpecial(id)) continue;
    const auto t = TokenOf(id);
    if (t) tokens.emplace_back(*t);
  }
  std::string out;
  if (rep_->decoder) {
    rep_->decoder->Decode(&tokens);
    for (const std::string& t : tokens) out += t;
    return out;
  }
  for (size_t k = 0; k < tokens.size(); ++k) {
    if (k) out.push_back(' ');
    out += tokens[k];
  }
  return out;
}

size_t Tokenizer::vocab_size() const { return rep_->vocab_size; }
size_t Tokenizer::model_vocab_size() const { return rep_->model->vocab().tokens.size(); }

std::optional<std::string_view> Tokenizer::TokenOf(int32_t id) const {
  const auto it = rep_->added_by_id.find(id);
  if (it != rep_->added_by_id.end()) return std::string_view(rep_->added[it->second].content);
  const tok::Vocab& v = rep_->model->vocab();
  if (id < 0 || static_cast<size_t>(id) >= v.tokens.size() || !v.present[static_cast<size_t>(id)]) {
    return std::nullopt;
  }
  return std::string_view(v.tokens[static_cast<size_t>(id)]);
}

std::optional<int32_t> Tokenizer::IdOf(std::string_view token) const {
  const auto it = rep_->added_ids.find(token);
  if (it != rep_->added_ids.end()) return it->second;
  const auto m = rep_->model->vocab().ids.find(token);
  if (m != rep_->model->vocab().ids.end()) return m->second;
  return std::nullopt;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return rep_->added; }

bool Tokenizer::IsSpecial(int32_t id) const {
  const auto it = rep_->added_by_id.find(id);
  return it != rep_->added_by_id.end() && rep_->added[it->second].special;
}

bool Tokenizer::IsAdded(int32_t id) const { return rep_->added_by_id.count(id) != 0; }
std::string_view Tokenizer::model_type() const { return rep_->model->type(); }
const TokenizerConfig& Tokenizer::config() const { return rep_->config; }
const std::string& Tokenizer::source() const { return rep_->source; }

}  // namespace alloy::formats
