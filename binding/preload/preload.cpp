// The preload helper: a tiny N-API module that needs nothing but the C library. lib/native.ts
// loads it before the addon when a prebuilt binary runs on a LibTorch outside the dynamic linker's
// search path (LIBTORCH, a Python torch): load(file) opens each torch library with RTLD_GLOBAL, so
// the addon's own dependencies (by soname) resolve to those copies. The addon itself cannot do
// this: it does not load until its LibTorch does.
#include <node_api.h>

#include <string>

#ifndef _WIN32
#include <dlfcn.h>
#endif

namespace {

napi_value Load(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  size_t length = 0;
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], nullptr, 0, &length) != napi_ok) {
    napi_throw_type_error(env, nullptr, "load(file): file must be a string");
    return nullptr;
  }
  std::string file(length, '\0');
  napi_get_value_string_utf8(env, argv[0], file.data(), length + 1, &length);
#ifdef _WIN32
  napi_throw_error(env, nullptr, ("preloading " + file + " is not supported on Windows").c_str());
  return nullptr;
#else
  if (dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* err = dlerror();
    napi_throw_error(env, nullptr, err != nullptr ? err : ("cannot load " + file).c_str());
    return nullptr;
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
#endif
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "load", NAPI_AUTO_LENGTH, Load, nullptr, &fn);
  napi_set_named_property(env, exports, "load", fn);
  return exports;
}
