// Precompiled once for every translation unit (see CMakeLists.txt).
#pragma once
#include <torch/torch.h>
