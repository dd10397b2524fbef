#include "data/jpeg.h"

#include <mutex>
#include <stdexcept>

#ifndef _WIN32
#include <dlfcn.h>
#endif

namespace yolo5 {

namespace {

// The TurboJPEG 2.x/3.x C API, declared from its documentation.
using tjhandle = void*;
using InitDecompress = tjhandle (*)();
using DecompressHeader3 = int (*)(tjhandle, const unsigned char*, unsigned long, int*, int*, int*,
                                  int*);
using Decompress2 = int (*)(tjhandle, const unsigned char*, unsigned long, unsigned char*, int, int,
                            int, int, int);
using Destroy = int (*)(tjhandle);
using GetErrorStr2 = char* (*)(tjhandle);
using GetErrorCode = int (*)(tjhandle);
constexpr int kPixelFormatRgb = 0;      // TJPF_RGB
constexpr int kPixelFormatCmyk = 11;    // TJPF_CMYK
constexpr int kColorspaceCmyk = 3;      // TJCS_CMYK
constexpr int kColorspaceYcck = 4;      // TJCS_YCCK (decoded to CMYK by libjpeg)
constexpr int kFlagAccurateDct = 4096;  // TJFLAG_ACCURATEDCT (the islow DCT)
constexpr int kErrorWarning = 0;        // TJERR_WARNING

struct Api {
  InitDecompress init = nullptr;
  DecompressHeader3 header = nullptr;
  Decompress2 decompress = nullptr;
  Destroy destroy = nullptr;
  GetErrorStr2 error_str = nullptr;
  GetErrorCode error_code = nullptr;  // optional (2.0+)
  std::string path;
};

std::mutex g_mutex;
const Api* g_api = nullptr;

struct Handle {
  tjhandle h = nullptr;
  ~Handle() {
    if (h != nullptr && g_api != nullptr) g_api->destroy(h);
  }
};

}  // namespace

std::string load_turbojpeg(const std::string& path) {
#ifdef _WIN32
  return "loading TurboJPEG at run time is not supported on Windows";
#else
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_api != nullptr) return "";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    return path + ": " + (err != nullptr ? err : "cannot load");
  }
  auto* api = new Api();
  api->init = reinterpret_cast<InitDecompress>(dlsym(lib, "tjInitDecompress"));
  api->header = reinterpret_cast<DecompressHeader3>(dlsym(lib, "tjDecompressHeader3"));
  api->decompress = reinterpret_cast<Decompress2>(dlsym(lib, "tjDecompress2"));
  api->destroy = reinterpret_cast<Destroy>(dlsym(lib, "tjDestroy"));
  api->error_str = reinterpret_cast<GetErrorStr2>(dlsym(lib, "tjGetErrorStr2"));
  api->error_code = reinterpret_cast<GetErrorCode>(dlsym(lib, "tjGetErrorCode"));
  if (!api->init || !api->header || !api->decompress || !api->destroy || !api->error_str) {
    delete api;
    dlclose(lib);
    return path + ": not a TurboJPEG library (missing tjDecompress2 and friends)";
  }
  api->path = path;
  g_api = api;  // kept for the life of the process, like the library itself
  return "";
#endif
}

bool turbojpeg_loaded() { return g_api != nullptr; }
std::string turbojpeg_path() { return g_api != nullptr ? g_api->path : ""; }

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

bool has_jpeg_end(const uint8_t* data, size_t size) {
  return size >= 2 && data[size - 2] == 0xFF && data[size - 1] == 0xD9;
}

namespace {

struct Header {
  int width = 0, height = 0, colorspace = 0;
};

Header read_header(const Api* api, tjhandle h, const uint8_t* data, size_t size,
                   const std::string& what) {
  Header hd;
  int subsamp = 0;
  if (api->header(h, data, static_cast<unsigned long>(size), &hd.width, &hd.height, &subsamp,
                  &hd.colorspace) != 0)
    throw std::runtime_error(what + ": not a readable JPEG (" + api->error_str(h) + ")");
  if (hd.width <= 0 || hd.height <= 0)
    throw std::runtime_error(what + ": unsupported JPEG size " + std::to_string(hd.width) + "x" +
                             std::to_string(hd.height));
  return hd;
}

// Runs tjDecompress2 into `out`; warnings (a truncated but mostly decodable file) still give
// pixels, as OpenCV would, and are returned; errors throw.
std::string decompress(const Api* api, tjhandle h, const uint8_t* data, size_t size, uint8_t* out,
                       const Header& hd, int channels, int format, const std::string& what) {
  if (api->decompress(h, data, static_cast<unsigned long>(size), out, hd.width, hd.width * channels,
                      hd.height, format, kFlagAccurateDct) == 0)
    return "";
  bool warning_only = api->error_code != nullptr && api->error_code(h) == kErrorWarning;
  if (!warning_only) throw std::runtime_error(what + ": corrupt JPEG (" + api->error_str(h) + ")");
  return api->error_str(h);
}

}  // namespace

std::optional<ImageSize> probe_jpeg_turbo(const uint8_t* data, size_t size,
                                          const std::string& what) {
  const Api* api = g_api;
  if (api == nullptr) return std::nullopt;
  Handle handle;
  handle.h = api->init();
  if (handle.h == nullptr) throw std::runtime_error("TurboJPEG: cannot create a decompressor");
  Header hd = read_header(api, handle.h, data, size, what);
  ImageSize out;
  out.width = hd.width;
  out.height = hd.height;
  return out;
}

std::optional<Image> decode_jpeg_turbo(const uint8_t* data, size_t size, const std::string& what,
                                       std::string* warning) {
  const Api* api = g_api;
  if (api == nullptr) return std::nullopt;
  // A fresh decompressor per image: a reused one can carry the previous header into a bad file.
  Handle handle;
  handle.h = api->init();
  if (handle.h == nullptr) throw std::runtime_error("TurboJPEG: cannot create a decompressor");
  Header hd = read_header(api, handle.h, data, size, what);
  check_pixels(hd.width, hd.height, kMaxDecodePixels, what);
  Image img;
  img.width = hd.width;
  img.height = hd.height;
  const size_t n = static_cast<size_t>(hd.width) * hd.height;
  img.pixels.resize(n * 3);
  std::string warned;
  if (hd.colorspace == kColorspaceCmyk || hd.colorspace == kColorspaceYcck) {
    // libjpeg converts no further than CMYK; RGB as OpenCV's imread makes it.
    std::vector<uint8_t> cmyk(n * 4);
    warned = decompress(api, handle.h, data, size, cmyk.data(), hd, 4, kPixelFormatCmyk, what);
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = cmyk.data() + i * 4;
      for (int c = 0; c < 3; ++c) img.pixels[i * 3 + c] = cmyk_channel(p[c], p[3]);
    }
  } else {
    warned = decompress(api, handle.h, data, size, img.pixels.data(), hd, 3, kPixelFormatRgb, what);
  }
  if (warning != nullptr) *warning = warned;
  return img;
}

}  // namespace yolo5
