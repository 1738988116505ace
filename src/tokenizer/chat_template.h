// The chat template of ZImagePipeline's prompt encoding: a single user message rendered by the
// Qwen3 Jinja template with add_generation_prompt=True, enable_thinking=True. Instead of a Jinja
// engine, the template text is checked for the constructs that rendering depends on and the
// (verbatim, unstripped) prompt is wrapped the way it renders:
//   <|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n
#pragma once
#include <string>
#include <string_view>

namespace zimage::tok {

class ChatTemplate {
 public:
  ChatTemplate() = default;
  // Errors (naming `origin`) when `jinja` is not a template this renderer reproduces.
  static ChatTemplate from_jinja(const std::string& jinja, const std::string& origin);
  // The Qwen3 template of Z-Image-Turbo's tokenizer/ folder (what from_jinja accepts).
  static ChatTemplate qwen3() {
    ChatTemplate t;
    t.present_ = true;
    return t;
  }
  bool present() const { return present_; }
  // Renders one user message with the generation prompt (enable_thinking=True).
  std::string render_user_prompt(std::string_view prompt) const;

 private:
  bool present_ = false;
};

}  // namespace zimage::tok
