// JPEG decoding through libjpeg-turbo's TurboJPEG API, loaded at run time from a path the
// TypeScript side finds (the npm package @julusian/jpeg-turbo ships one). Its accurate integer
// DCT and smooth chroma upsampling give the same pixels as OpenCV, which the reference uses; the
// built-in decoder is the fallback.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "data/image.h"

namespace yolo5 {

// Loads the library; returns an error message, or "" on success.
std::string load_turbojpeg(const std::string& path);
bool turbojpeg_loaded();
std::string turbojpeg_path();

bool is_jpeg(const uint8_t* data, size_t size);
// Decodes with TurboJPEG when loaded (nullopt when not); throws on a corrupt file.
std::optional<Image> decode_jpeg_turbo(const uint8_t* data, size_t size, const std::string& what);

}  // namespace yolo5
