// Images as 8-bit RGB (height × width × 3): decoding (JPEG, PNG, BMP, GIF, TGA, PNM compiled in),
// OpenCV-style resizing and the letterbox the reference uses.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace yolo5 {

// The most pixels (width × height) an image may have, checked from the header before anything is
// allocated. Decoding anywhere: 2^30, OpenCV's default limit (CV_IO_MAX_IMAGE_PIXELS), which the
// reference's cv2.imread applies. Data-set verification: 178,956,970 (2 × 89,478,485), the limit
// above which PIL, and so the reference's verification, refuses an image as a decompression bomb.
constexpr int64_t kMaxDecodePixels = int64_t{1} << 30;
constexpr int64_t kMaxVerifyPixels = 2 * int64_t{89478485};

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // RGB, row-major

  uint8_t* at(int x, int y) { return pixels.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* at(int x, int y) const {
    return pixels.data() + (static_cast<size_t>(y) * width + x) * 3;
  }
};

// Throws std::runtime_error naming `what` (a path, or "buffer") when the bytes are not an image.
Image decode_image(const uint8_t* data, size_t size, const std::string& what);
Image read_image(const std::string& path);
Image image_from_rgb(const uint8_t* rgb, int width, int height);

struct ImageSize {
  int width = 0;
  int height = 0;
  // Set when the image is usable but was not whole: a JPEG without its end-of-image marker.
  std::string restored;
};
// Verification: the size from the header, refused (throws like read_image) when unreadable or
// larger than kMaxVerifyPixels. A JPEG without its end marker is decoded in full here, once:
// undecodable throws, decodable sets `restored`.
ImageSize probe_image(const std::string& path);
// Throws "<what>: image too large …" when width × height is above `limit`.
void check_pixels(int width, int height, int64_t limit, const std::string& what);

enum class Interp { Linear, Area };
// Resizes like cv2.resize with INTER_LINEAR (half-pixel centres) or INTER_AREA (exact pixel
// coverage when shrinking).
Image resize_image(const Image& src, int width, int height, Interp interp);

struct Letterbox {
  Image image;
  double ratio = 1;  // scale applied to the source
  double pad_w = 0;  // left padding before rounding (the reference's dw)
  double pad_h = 0;  // top padding before rounding (dh)
};
// Scales to fit (height, width) keeping the aspect ratio (never up unless scaleup), then pads
// with grey 114; `auto_pad` pads only to the next multiple of stride instead.
Letterbox letterbox(const Image& src, int height, int width, bool auto_pad, bool scaleup,
                    int stride);

// Encodes as JPEG (quality 95) or PNG by the file extension of `path`, and writes it.
void write_image(const Image& img, const std::string& path);
std::vector<uint8_t> encode_image(const Image& img, const std::string& format);

}  // namespace yolo5
