#include "model/listing.h"

namespace yolo5 {

ModelListing list_model(const YoloModelImpl& model) {
  ModelListing l;
  for (const auto& p : model.named_parameters(true)) {
    const auto sizes = p.value().sizes();
    l.parameters.push_back({p.key(), {sizes.begin(), sizes.end()}, p.value().requires_grad()});
  }
  const auto state = model.state();
  const auto kinds = model.state_kinds();
  for (size_t i = 0; i < state.size(); ++i) {
    const auto& t = state[i].second;
    l.state.push_back(
        {state[i].first, {t.sizes().begin(), t.sizes().end()}, kinds[i].second, t.scalar_type()});
    if (t.device().is_cpu()) l.host_bytes += static_cast<int64_t>(t.nbytes());
  }
  const auto& d = model.detect();
  l.modules = model.module_count();
  l.gflops = model.gflops_640();
  l.layer_gflops = model.layer_gflops_640();
  l.nc = d.nc;
  l.in_channels = model.in_channels();
  l.fused = model.fused();
  l.stride = d.stride;
  l.anchors = d.anchors.detach().to(torch::kCPU).clone();
  return l;
}

}  // namespace yolo5
