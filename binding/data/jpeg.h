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
// Whether the file ends with the end-of-image marker FF D9 (the reference's check for a truncated
// JPEG).
bool has_jpeg_end(const uint8_t* data, size_t size);
// Reads the size from the header with TurboJPEG when loaded (nullopt when not); throws when the
// header is unreadable.
std::optional<ImageSize> probe_jpeg_turbo(const uint8_t* data, size_t size,
                                          const std::string& what);
// Decodes with TurboJPEG when loaded (nullopt when not); throws on a corrupt file. A file that
// decodes with warnings (truncated: the rest is filled in, as OpenCV does) gives its pixels, and
// the warning goes to `warning` when given. CMYK and YCCK files become RGB with OpenCV's formula
// (cmyk_to_rgb).
std::optional<Image> decode_jpeg_turbo(const uint8_t* data, size_t size, const std::string& what,
                                       std::string* warning = nullptr);

// One stored CMYK sample (Adobe-inverted, as Photoshop writes them and libjpeg returns them) to
// RGB the way OpenCV's imread does: R = K - ((255 - C) * K >> 8), likewise G from M and B from Y.
inline uint8_t cmyk_channel(uint8_t c, uint8_t k) {
  return static_cast<uint8_t>(k - (((255 - c) * k) >> 8));
}

}  // namespace yolo5
