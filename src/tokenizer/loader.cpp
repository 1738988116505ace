// Qwen2Tokenizer::from_folder: parses tokenizer.json (model, added_tokens, normalizer,
// pre_tokenizer, post_processor, decoder) and tokenizer_config.json (pad/eos tokens, chat template).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace zimage {

namespace {
using nlohmann::json;

// Tokenizer files can be large (Qwen2's tokenizer.json is 11 MB); anything past this is refused
// before it is read.
constexpr uint64_t kMaxTokenizerFileBytes = 128ull << 20;

std::string read_text(const std::string& path, bool required) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (required) fail("[tokenizer] cannot read ", path);
    return {};
  }
  // A FIFO, directory or device in place of the file is an error, never a hang.
  return read_regular_file(path, kMaxTokenizerFileBytes, "[tokenizer] ");
}

json parse(const std::string& text, const std::string& origin) { return parse_json_text(text, origin, "[tokenizer] "); }

// t[key] as a string; `def` when t is not an object or the key is absent or null.
std::string string_or(const json& t, const char* key, const std::string& def, const std::string& where) {
  if (!t.is_object() || !t.contains(key) || t[key].is_null()) return def;
  if (!t[key].is_string()) fail("[tokenizer] ", where, ": '", key, "' must be a string, got ", json_excerpt(t[key]));
  return t[key].get<std::string>();
}

bool flag(const json& t, const char* key, bool def, const std::string& where) {
  if (!t.contains(key) || t[key].is_null()) return def;
  if (!t[key].is_boolean()) fail("[tokenizer] ", where, ": '", key, "' must be a boolean, got ", t[key].dump());
  return t[key].get<bool>();
}

std::unique_ptr<tok::BpeModel> load_model(const json& root, const std::string& origin) {
  if (!root.contains("model") || !root["model"].is_object()) fail("[tokenizer] ", origin, ": missing 'model'");
  const json& m = root["model"];
  const std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "";
  if (type != "BPE") fail("[tokenizer] ", origin, ": unsupported model type '", type, "' (supported: BPE)");
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail("[tokenizer] ", origin, ": missing model.vocab");
  if (!m.contains("merges") || !m["merges"].is_array()) fail("[tokenizer] ", origin, ": missing model.merges");
  // Options that change the result and that this implementation does not do.
  if (m.contains("dropout") && !m["dropout"].is_null())
    fail("[tokenizer] ", origin, ": unsupported model.dropout ", m["dropout"].dump());
  if (m.contains("unk_token") && !m["unk_token"].is_null())
    fail("[tokenizer] ", origin, ": unsupported model.unk_token ", m["unk_token"].dump());
  if (flag(m, "byte_fallback", false, origin + " model"))
    fail("[tokenizer] ", origin, ": unsupported model.byte_fallback true");
  if (flag(m, "ignore_merges", false, origin + " model"))
    fail("[tokenizer] ", origin, ": unsupported model.ignore_merges true");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
      fail("[tokenizer] ", origin, ": unsupported model.", k, " ", m[k].dump());

  tok::BpeModel::Vocab vocab;
  vocab.reserve(m["vocab"].size());
  for (const auto& [tok, id] : m["vocab"].items()) {
    if (!id.is_number_integer())
      fail("[tokenizer] ", origin, ": model.vocab['", tok, "'] is not an integer: ", id.dump());
    const int64_t v = id.get<int64_t>();
    if (v < 0 || v > INT32_MAX) fail("[tokenizer] ", origin, ": model.vocab['", tok, "'] has id ", v, " out of range");
    vocab.emplace(tok, int32_t(v));
  }
  if (vocab.empty()) fail("[tokenizer] ", origin, ": model.vocab is empty");

  std::vector<tok::BpeModel::Merge> merges;
  merges.reserve(m["merges"].size());
  size_t rank = 0;
  for (const auto& e : m["merges"]) {
    if (e.is_string()) {  // "a b"
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail("[tokenizer] ", origin, ": merge ", rank, " '", s, "' is not two tokens separated by one space");
      merges.push_back({s.substr(0, sp), s.substr(sp + 1)});
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // ["a", "b"]
      merges.push_back({e[0].get<std::string>(), e[1].get<std::string>()});
    } else {
      fail("[tokenizer] ", origin, ": merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]: ", e.dump());
    }
    ++rank;
  }
  return std::make_unique<tok::BpeModel>(std::move(vocab), merges, origin);
}

void load_added_tokens(Qwen2Tokenizer::Impl& t, const json& root, const std::string& origin) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  const json& list = root["added_tokens"];
  if (!list.is_array()) fail("[tokenizer] ", origin, ": 'added_tokens' must be a list");
  const int64_t limit = int64_t(t.model->max_id()) + 1 + int64_t(list.size());
  for (const auto& e : list) {
    if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer() || !e.contains("content") ||
        !e["content"].is_string())
      fail("[tokenizer] ", origin, ": added token without integer 'id' and string 'content': ", e.dump());
    tok::AddedToken a;
    const int64_t id = e["id"].get<int64_t>();
    a.content = e["content"].get<std::string>();
    if (id < 0 || id >= limit)
      fail("[tokenizer] ", origin, ": added token '", a.content, "' has id ", id, " outside [0, ", limit,
           ") (vocab size + added tokens)");
    a.id = int32_t(id);
    if (a.content.empty()) fail("[tokenizer] ", origin, ": added token id ", id, " has empty content");
    const std::string where = origin + " added token '" + a.content + "'";
    a.special = flag(e, "special", false, where);
    a.single_word = flag(e, "single_word", false, where);
    a.lstrip = flag(e, "lstrip", false, where);
    a.rstrip = flag(e, "rstrip", false, where);
    a.normalized = flag(e, "normalized", !a.special, where);
    if (t.added_by_id.count(a.id))
      fail("[tokenizer] ", origin, ": added tokens '", t.added[t.added_by_id[a.id]].content, "' and '", a.content,
           "' share id ", id);
    if (t.added_ids.count(a.content)) fail("[tokenizer] ", origin, ": added token '", a.content, "' is declared twice");
    t.added_by_id[a.id] = t.added.size();
    t.added_ids[a.content] = a.id;
    t.added.push_back(a);
  }
  // tokenizers matches special tokens first, then the others, in declaration order; with
  // leftmost-longest matching only equal patterns could tie, and contents are distinct.
  std::vector<tok::AddedToken> raw, norm;
  std::vector<std::string> raw_pat, norm_pat;
  for (const auto& a : t.added) {
    if (a.normalized) {
      norm.push_back(a);
      norm_pat.push_back(t.normalizer.apply(a.content));
    } else {
      raw.push_back(a);
      raw_pat.push_back(a.content);
    }
  }
  t.raw_matcher = tok::AddedTokenMatcher(std::move(raw), std::move(raw_pat));
  t.normalized_matcher = tok::AddedTokenMatcher(std::move(norm), std::move(norm_pat));
}

void check_post_processor(const json& root, const std::string& origin) {
  if (!root.contains("post_processor") || root["post_processor"].is_null()) return;
  const json& p = root["post_processor"];
  // ByteLevel only adjusts offsets; anything that adds tokens (TemplateProcessing, ...) would
  // change the ids transformers produces.
  if (!(p.is_object() && string_or(p, "type", "", origin + " post_processor") == "ByteLevel"))
    fail("[tokenizer] ", origin, ": unsupported post_processor ", p.dump().substr(0, 200),
         " (supported: ByteLevel, null)");
}

bool load_decoder(const json& root, const std::string& origin) {
  if (!root.contains("decoder") || root["decoder"].is_null()) return false;
  const json& d = root["decoder"];
  if (!(d.is_object() && string_or(d, "type", "", origin + " decoder") == "ByteLevel"))
    fail("[tokenizer] ", origin, ": unsupported decoder ", d.dump().substr(0, 200), " (supported: ByteLevel, null)");
  return true;
}

// A special token in tokenizer_config.json: "text", {"content": "text", ...} or null.
std::optional<std::string> config_token(const json& cfg, const char* key, const char* def, const std::string& origin) {
  if (!cfg.contains(key)) return def ? std::optional<std::string>(def) : std::nullopt;
  const json& v = cfg[key];
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail("[tokenizer] ", origin, ": '", key, "' must be a token string, got ", v.dump());
}
}  // namespace

Qwen2Tokenizer Qwen2Tokenizer::from_json_text(const std::string& tokenizer_json, const std::string& config_json,
                                              const std::string& origin, const std::string& chat_template_jinja) {
  const std::string tj = origin + "/tokenizer.json", cj = origin + "/tokenizer_config.json";
  auto impl = std::make_shared<Impl>();
  {
    const json root = parse(tokenizer_json, tj);
    if (!root.is_object()) fail("[tokenizer] ", tj, ": not a JSON object");
    impl->model = load_model(root, tj);
    impl->normalizer = tok::Normalizer::from_json(root.contains("normalizer") ? root["normalizer"] : json(), tj);
    impl->pre_tokenizer =
        tok::PreTokenizer::from_json(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json(), tj);
    check_post_processor(root, tj);
    impl->byte_level_decoder = load_decoder(root, tj);
    load_added_tokens(*impl, root, tj);
  }
  int32_t max_id = impl->model->max_id();
  for (const auto& a : impl->added) max_id = std::max(max_id, a.id);
  impl->vocab_size = max_id + 1;

  const json cfg = parse(config_json, cj);
  if (!cfg.is_object()) fail("[tokenizer] ", cj, ": not a JSON object");
  if (cfg.contains("tokenizer_class") && cfg["tokenizer_class"].is_string()) {
    const std::string cls = cfg["tokenizer_class"].get<std::string>();
    if (cls != "Qwen2Tokenizer" && cls != "Qwen2TokenizerFast")
      fail("[tokenizer] ", cj, ": unsupported tokenizer_class '", cls, "' (supported: Qwen2Tokenizer)");
  }
  Qwen2Tokenizer t;
  t.impl_ = impl;
  // Qwen2Tokenizer's defaults apply when the config does not name the token.
  auto resolve = [&](const char* key) -> int32_t {
    const auto name = config_token(cfg, key, "<|endoftext|>", cj);
    if (!name) return -1;
    const int32_t id = t.token_to_id(*name);
    if (id < 0) fail("[tokenizer] ", cj, ": ", key, " '", *name, "' is not a token of tokenizer.json");
    return id;
  };
  impl->pad_id = resolve("pad_token");
  impl->eos_id = resolve("eos_token");

  // A chat_template.jinja file takes precedence over the config's entry, as in transformers.
  std::string jinja = chat_template_jinja;
  if (jinja.empty() && cfg.contains("chat_template") && !cfg["chat_template"].is_null()) {
    const json& ct = cfg["chat_template"];
    if (ct.is_string()) {
      jinja = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const auto& e : ct)
        if (e.is_object() && string_or(e, "name", "", cj + " chat_template") == "default" && e.contains("template") &&
            e["template"].is_string())
          jinja = e["template"].get<std::string>();
      if (jinja.empty()) fail("[tokenizer] ", cj, ": chat_template list has no 'default' template");
    } else {
      fail("[tokenizer] ", cj, ": chat_template must be a string or a list");
    }
  }
  if (!jinja.empty()) impl->chat_template = tok::ChatTemplate::from_jinja(jinja, cj);
  return t;
}

Qwen2Tokenizer Qwen2Tokenizer::from_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail("[tokenizer] tokenizer folder not found: ", dir);
  const std::string tj = read_text((fs::path(dir) / "tokenizer.json").string(), true);
  const std::string cj = read_text((fs::path(dir) / "tokenizer_config.json").string(), true);
  const std::string jinja = read_text((fs::path(dir) / "chat_template.jinja").string(), false);
  return from_json_text(tj, cj, dir, jinja);
}

}  // namespace zimage
