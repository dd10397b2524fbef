// The model description the TypeScript side resolves from a yaml file: channels already rounded,
// depth already applied, every row checked. C++ only builds what it is told.
#pragma once
#include <string>
#include <vector>

namespace yolo5 {

// One positional module argument: None, a bool, a number, a string, or a list (kernel pairs,
// anchors).
struct Arg {
  enum class Kind { None, Bool, Number, String, List };
  Kind kind = Kind::None;
  double number = 0;
  std::string text;
  std::vector<Arg> items;

  bool is_none() const { return kind == Kind::None; }
};

struct LayerSpec {
  int index = 0;
  std::vector<int> from;  // -1 = previous layer, else absolute index
  std::string module;     // "Conv", "C3", "nn.Upsample", "Detect", …
  int repeats = 1;        // > 1 wraps copies in a Sequential (children "0", "1", …)
  std::vector<Arg> args;  // resolved constructor args, as the reference's parse step leaves them
};

struct ActivationSpec {
  std::string kind = "SiLU";  // SiLU, ReLU, LeakyReLU, Hardswish, Sigmoid, Identity
  double slope = 0.01;        // LeakyReLU negative slope
};

struct ModelSpec {
  std::vector<LayerSpec> layers;
  ActivationSpec activation;
  int in_channels = 3;
};

}  // namespace yolo5
