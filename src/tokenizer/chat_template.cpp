#include "tokenizer/chat_template.h"

#include "core/error.h"

namespace zimage::tok {

namespace {
// What the Qwen3 template emits for our case. The user turn is message.content verbatim (no
// trim), the generation prompt adds the assistant header, and only enable_thinking == false
// would add an empty <think> block.
constexpr const char* kRequired[] = {
    R"('<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n')",
    R"('<|im_start|>assistant\n')",
    R"(enable_thinking is defined and enable_thinking is false)",
    R"(messages[0].role == 'system')",
};
// A default system prompt (Qwen2.5's "You are Qwen, ...") would change the rendering.
constexpr const char* kForbidden[] = {"You are Qwen", "You are a helpful assistant"};
}  // namespace

ChatTemplate ChatTemplate::from_jinja(const std::string& jinja, const std::string& origin) {
  for (const char* r : kRequired)
    if (jinja.find(r) == std::string::npos)
      fail("[tokenizer] ", origin, ": unsupported chat_template (not the Qwen3 template): it lacks ", r);
  for (const char* f : kForbidden)
    if (jinja.find(f) != std::string::npos)
      fail("[tokenizer] ", origin, ": unsupported chat_template: it adds a default system prompt ('", f, "...')");
  ChatTemplate t;
  t.present_ = true;
  return t;
}

std::string ChatTemplate::render_user_prompt(std::string_view prompt) const {
  if (!present_)
    fail("[tokenizer] the tokenizer folder has no chat_template (tokenizer_config.json or chat_template.jinja)");
  std::string s;
  s.reserve(prompt.size() + 48);
  s += "<|im_start|>user\n";
  s += prompt;
  s += "<|im_end|>\n<|im_start|>assistant\n";
  return s;
}

}  // namespace zimage::tok
