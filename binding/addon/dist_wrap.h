// NativeProcessGroup: one rank's membership of a c10d process group (train/dist.h), joined off
// the event loop. lib/train/dist.ts decides the rank's role; this is only the connection.
#pragma once
#include <napi.h>

#include <memory>

#include "train/dist.h"

namespace yolo5 {

Napi::Function DefineProcessGroup(Napi::Env env);
// The joined group behind a NativeProcessGroup object (a TypeError for anything else or one that
// has not joined).
std::shared_ptr<DistGroup> GroupOf(const Napi::Value& value, const std::string& where);

}  // namespace yolo5
