#include "text_encoder/qwen3_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"

namespace zimage {

namespace {

template <class F>
auto tagged(F&& f) {
  return with_component("text_encoder", std::forward<F>(f));
}

}  // namespace

Qwen3Config Qwen3Config::load(const std::string& path) {
  JsonConfig c = tagged([&] { return JsonConfig::load(path); });
  return parse(c);
}

Qwen3Config Qwen3Config::parse(const JsonConfig& c) {
  return tagged([&] {
    constexpr int64_t kMax = int64_t(1) << 31;
    Qwen3Config q;
    q.vocab_size = c.get_int_in("vocab_size", 1, kMax);
    q.hidden_size = c.get_int_in("hidden_size", 1, kMax);
    q.intermediate_size = c.get_int_in("intermediate_size", 1, kMax);
    q.num_hidden_layers = c.get_int_in("num_hidden_layers", 1, 100000);
    q.num_attention_heads = c.get_int_in("num_attention_heads", 1, 100000);
    // Qwen3Config.__post_init__: a null num_key_value_heads means one kv head per query head.
    q.num_key_value_heads = c.get_int("num_key_value_heads", q.num_attention_heads, 1, 100000);
    // transformers' Qwen3Config declares head_dim: int = 128, so that is the default when absent.
    q.head_dim = c.get_int("head_dim", 128, 1, 65536);
    q.rms_norm_eps = c.get_float("rms_norm_eps", 1e-6);
    q.attention_bias = c.get_bool("attention_bias", false);
    q.hidden_act = c.get_string("hidden_act", "silu");
    q.dtype = c.get_string("dtype", c.get_string("torch_dtype", ""));
    q.max_position_embeddings = c.get_int("max_position_embeddings", 40960, 1, int64_t(1) << 24);
    // The class of the model (transformers' model_type and architectures), when the config says.
    if (c.has("model_type") && c.get_string("model_type") != "qwen3")
      c.bad("model_type", "= \"" + c.get_string("model_type") + "\" is not supported (only \"qwen3\")");
    if (c.has("architectures"))
      for (const std::string& a : c.get_string_list("architectures"))
        if (a != "Qwen3Model" && a != "Qwen3ForCausalLM")
          c.bad("architectures", "entry \"" + a + "\" is not supported (only \"Qwen3Model\" or \"Qwen3ForCausalLM\")");

    if (q.num_attention_heads % q.num_key_value_heads != 0)
      c.bad("num_attention_heads",
            "= " + std::to_string(q.num_attention_heads) +
                " is not a multiple of num_key_value_heads = " + std::to_string(q.num_key_value_heads));
    if (q.head_dim % 2 != 0) c.bad("head_dim", "= " + std::to_string(q.head_dim) + " must be even for RoPE");
    if (!(q.rms_norm_eps > 0)) c.bad("rms_norm_eps", "= " + std::to_string(q.rms_norm_eps) + " must be > 0");
    if (q.hidden_act != "silu") c.bad("hidden_act", "= \"" + q.hidden_act + "\" is not supported (only \"silu\")");

    // RoPE, as RotaryEmbeddingConfigMixin.convert_rope_params_to_dict: rope_scaling (old name)
    // or rope_parameters holds rope_type and rope_theta; rope_theta may also sit at top level.
    const nlohmann::json& j = c.json();
    const char* rp_key = c.has("rope_scaling") ? "rope_scaling" : "rope_parameters";
    double top_theta = c.get_float("rope_theta", 10000.0);
    q.rope_theta = top_theta;
    if (c.has(rp_key)) {
      const nlohmann::json& rp = j[rp_key];
      if (!rp.is_object()) c.bad(rp_key, "should be an object, got " + json_excerpt(rp));
      std::string type = "default", type_key = std::string(rp_key) + ".rope_type";
      for (const char* k : {"rope_type", "type"})
        if (rp.contains(k)) {
          type_key = std::string(rp_key) + "." + k;
          if (!rp[k].is_string()) c.bad(type_key, "should be a string, got " + json_excerpt(rp[k]));
          type = rp[k].get<std::string>();
          break;
        }
      if (type != "default") c.bad(type_key, "= \"" + type + "\" is not supported (only \"default\")");
      if (rp.contains("rope_theta") && !rp["rope_theta"].is_null()) {
        if (!rp["rope_theta"].is_number())
          c.bad(std::string(rp_key) + ".rope_theta", "should be a number, got " + json_excerpt(rp["rope_theta"]));
        q.rope_theta = rp["rope_theta"].get<double>();
      }
    }
    if (!(q.rope_theta > 0) || !std::isfinite(q.rope_theta))
      c.bad("rope_theta", "= " + std::to_string(q.rope_theta) + " must be a positive number");

    // Every layer this encoder runs must use full (causal) attention; sliding windows are not implemented.
    std::vector<std::string> types;
    if (c.has("layer_types")) {
      types = c.get_string_list("layer_types");
      if (int64_t(types.size()) != q.num_hidden_layers)
        c.bad("layer_types", "has " + std::to_string(types.size()) + " entries, num_hidden_layers is " +
                                 std::to_string(q.num_hidden_layers));
    } else {
      const bool sliding = c.get_bool("use_sliding_window", false) && c.has("sliding_window");
      const int64_t mwl = c.get_int("max_window_layers", 28);
      for (int64_t i = 0; i < q.num_hidden_layers; ++i)
        types.push_back(sliding && i >= mwl ? "sliding_attention" : "full_attention");
    }
    for (size_t i = 0; i < types.size(); ++i)
      if (types[i] != "full_attention")
        c.bad("layer_types",
              "[" + std::to_string(i) + "] = \"" + types[i] + "\" is not supported (only \"full_attention\")");
    return q;
  });
}

}  // namespace zimage
