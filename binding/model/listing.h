// A copy of what describes a model without its weights: parameter and state names, shapes and
// flags, layer and FLOP counts, strides and anchors. Built under the model's lock; read later
// without it, so that describing a model never waits for a call that is using it.
#pragma once
#include <string>
#include <vector>

#include "model/yolo.h"

namespace yolo5 {

struct ParameterListing {
  std::string name;
  std::vector<int64_t> shape;
  bool requires_grad;
};

struct StateListing {
  std::string name;
  std::vector<int64_t> shape;
  bool is_parameter;
  c10::ScalarType dtype;
};

struct ModelListing {
  std::vector<ParameterListing> parameters;  // named_parameters() order
  std::vector<StateListing> state;           // state-dict order
  int64_t modules = 0;
  double gflops = 0;
  std::vector<double> layer_gflops;
  int64_t nc = 0;
  int in_channels = 0;
  bool fused = false;
  std::vector<double> stride;
  torch::Tensor anchors;   // a CPU copy
  int64_t host_bytes = 0;  // parameters and buffers held in host memory
};

ModelListing list_model(const YoloModelImpl& model);

}  // namespace yolo5
