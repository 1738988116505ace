// Uses the installed library through its public header only: loads a model folder, generates one
// 64x64 image in float32 and checks what comes back. Usage: zimage_consumer <model folder>
#include <zimage/pipeline.h>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <model folder>\n", argv[0]);
    return 2;
  }
  try {
    zimage::PretrainedOptions o;
    o.torch_dtype = "float32";
    o.num_threads = 2;
    auto pipe = zimage::ZImagePipeline::from_pretrained(argv[1], o);
    zimage::CallParams p;
    p.prompt = {"a cat"};
    p.height = p.width = 64;
    p.num_inference_steps = 2;
    p.guidance_scale = 0;
    p.generator = {zimage::Generator{42}};
    auto out = pipe(p);
    if (out.images.size() != 1) {
      std::fprintf(stderr, "expected 1 image, got %zu\n", out.images.size());
      return 1;
    }
    const auto& img = out.images[0];
    if (img.width != 64 || img.height != 64 || img.channels != 3 || img.pixels.size() != 64u * 64u * 3u) {
      std::fprintf(stderr, "expected a 64x64 RGB image, got %dx%d x%d (%zu bytes)\n", img.width, img.height,
                   img.channels, img.pixels.size());
      return 1;
    }
    const zimage::Shape want = pipe.latents_shape(1, 64, 64);
    if (out.latents.shape() != want) {
      std::fprintf(stderr, "latents %s, expected %s\n", zimage::shape_str(out.latents.shape()).c_str(),
                   zimage::shape_str(want).c_str());
      return 1;
    }
    std::printf("ok: %dx%d image, latents %s\n", img.width, img.height, zimage::shape_str(want).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
