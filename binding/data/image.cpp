#include "data/image.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include "data/jpeg.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace yolo5 {

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

// Python's int(round(x)): halves go to the even neighbour.
int py_round(double x) { return static_cast<int>(std::nearbyint(x)); }

// Per output coordinate: the source samples and their weights along one axis.
struct AxisWeights {
  std::vector<int> start;      // first source index per output
  std::vector<int> count;      // how many source indices
  std::vector<float> weight;   // flattened, count[i] entries per output
  std::vector<size_t> offset;  // into weight
};

AxisWeights linear_weights(int src, int dst) {
  AxisWeights w;
  double scale = static_cast<double>(src) / dst;
  for (int i = 0; i < dst; ++i) {
    double s = (i + 0.5) * scale - 0.5;
    int s0 = static_cast<int>(std::floor(s));
    double f = s - s0;
    // Outside the image the edge pixel repeats (cv2's border handling for resize).
    if (s0 < 0) {
      s0 = 0;
      f = 0;
    }
    if (s0 >= src - 1) {
      s0 = src - 1;
      f = 0;
    }
    w.start.push_back(s0);
    w.offset.push_back(w.weight.size());
    if (f == 0 || s0 + 1 >= src) {
      w.count.push_back(1);
      w.weight.push_back(1.f);
    } else {
      w.count.push_back(2);
      w.weight.push_back(static_cast<float>(1 - f));
      w.weight.push_back(static_cast<float>(f));
    }
  }
  return w;
}

AxisWeights area_weights(int src, int dst) {
  AxisWeights w;
  double scale = static_cast<double>(src) / dst;
  for (int i = 0; i < dst; ++i) {
    double a = i * scale, b = std::min((i + 1) * scale, static_cast<double>(src));
    int s0 = static_cast<int>(std::floor(a));
    int s1 = std::min(static_cast<int>(std::ceil(b)), src);
    w.start.push_back(s0);
    w.count.push_back(s1 - s0);
    w.offset.push_back(w.weight.size());
    for (int s = s0; s < s1; ++s) {
      double cover = std::min<double>(s + 1, b) - std::max<double>(s, a);
      w.weight.push_back(static_cast<float>(cover / scale));
    }
  }
  return w;
}

}  // namespace

void check_pixels(int width, int height, int64_t limit, const std::string& what) {
  const int64_t pixels = static_cast<int64_t>(width) * height;
  if (pixels > limit)
    throw std::runtime_error(what + ": image too large (" + std::to_string(width) + "x" +
                             std::to_string(height) + " is " + std::to_string(pixels) +
                             " pixels, more than " + std::to_string(limit) + ")");
}

namespace {

Image decode_any(const uint8_t* data, size_t size, const std::string& what, std::string* warning) {
  if (size == 0) throw std::runtime_error(what + ": empty file");
  if (size > static_cast<size_t>(INT32_MAX)) throw std::runtime_error(what + ": file too large");
  if (is_jpeg(data, size)) {
    if (auto img = decode_jpeg_turbo(data, size, what, warning)) return std::move(*img);
  }
  int w = 0, h = 0, c = 0;
  // The header's size is checked before stb_image allocates for it.
  if (stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &c))
    check_pixels(w, h, kMaxDecodePixels, what);
  stbi_uc* px = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &c, 3);
  if (px == nullptr)
    throw std::runtime_error(what + ": not a readable image (" + stbi_failure_reason() + ")");
  Image img;
  img.width = w;
  img.height = h;
  img.pixels.assign(px, px + static_cast<size_t>(w) * h * 3);
  stbi_image_free(px);
  return img;
}

// A file read in parts: the header first, all of it only when needed.
struct FileBytes {
  std::ifstream in;
  size_t total = 0;
  std::vector<uint8_t> bytes;

  explicit FileBytes(const std::string& path) : in(path, std::ios::binary | std::ios::ate) {
    const auto end = in ? static_cast<std::streamoff>(in.tellg()) : -1;
    if (end < 0) throw std::runtime_error(path + ": cannot open");
    total = static_cast<size_t>(end);
  }
  void read(size_t n, const std::string& path) {
    n = std::min(n, total);
    if (bytes.size() >= n) return;
    bytes.resize(n);
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(n)))
      throw std::runtime_error(path + ": cannot read");
  }
  bool whole() const { return bytes.size() == total; }
};

// Headers (EXIF, ICC profiles included) nearly always fit here; larger ones read the whole file.
constexpr size_t kHeaderBytes = 64 * 1024;

ImageSize probe_jpeg(FileBytes& f, const std::string& path) {
  try {
    return *probe_jpeg_turbo(f.bytes.data(), f.bytes.size(), path);
  } catch (const std::exception&) {
    if (f.whole()) throw;
  }
  f.read(f.total, path);
  return *probe_jpeg_turbo(f.bytes.data(), f.bytes.size(), path);
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& what) {
  return decode_any(data, size, what, nullptr);
}

Image read_image(const std::string& path) {
  auto bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

Image image_from_rgb(const uint8_t* rgb, int width, int height) {
  Image img;
  img.width = width;
  img.height = height;
  img.pixels.assign(rgb, rgb + static_cast<size_t>(width) * height * 3);
  return img;
}

ImageSize probe_image(const std::string& path) {
  FileBytes f(path);
  f.read(kHeaderBytes, path);
  const bool jpeg = is_jpeg(f.bytes.data(), f.bytes.size());
  ImageSize size;
  int channels = 0;
  if (jpeg && turbojpeg_loaded()) {
    size = probe_jpeg(f, path);
  } else if (!stbi_info(path.c_str(), &size.width, &size.height, &channels)) {
    throw std::runtime_error(path + ": not a readable image (" + stbi_failure_reason() + ")");
  }
  check_pixels(size.width, size.height, kMaxVerifyPixels, path);
  if (!jpeg) return size;
  uint8_t tail[2] = {0, 0};
  f.in.seekg(static_cast<std::streamoff>(f.total - 2));
  if (!f.in.read(reinterpret_cast<char*>(tail), 2))
    throw std::runtime_error(path + ": cannot read");
  if (has_jpeg_end(tail, 2)) return size;
  // Truncated (the reference's test): usable if what is there decodes; the file stays as it is.
  f.read(f.total, path);
  std::string warning;
  decode_any(f.bytes.data(), f.bytes.size(), path, &warning);
  size.restored = "corrupt JPEG restored: no end-of-image marker (FF D9)";
  if (!warning.empty()) size.restored += " (" + warning + ")";
  size.restored += "; using the decodable part, the file is left unchanged";
  return size;
}

Image resize_image(const Image& src, int width, int height, Interp interp) {
  if (width == src.width && height == src.height) return src;
  if (width <= 0 || height <= 0) throw std::invalid_argument("resize to an empty image");
  // Area averaging only makes sense when shrinking; growing falls back to linear (as cv2 does).
  auto axis = [&](int s, int d) {
    return interp == Interp::Area && d < s ? area_weights(s, d) : linear_weights(s, d);
  };
  auto wx = axis(src.width, width), wy = axis(src.height, height);
  // Horizontal pass in float, then vertical with rounding to uint8.
  std::vector<float> tmp(static_cast<size_t>(src.height) * width * 3);
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* row = src.at(0, y);
    float* out = tmp.data() + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width; ++x) {
      float acc[3] = {0, 0, 0};
      for (int k = 0; k < wx.count[x]; ++k) {
        float wk = wx.weight[wx.offset[x] + k];
        const uint8_t* p = row + static_cast<size_t>(wx.start[x] + k) * 3;
        acc[0] += wk * p[0];
        acc[1] += wk * p[1];
        acc[2] += wk * p[2];
      }
      out[x * 3] = acc[0];
      out[x * 3 + 1] = acc[1];
      out[x * 3 + 2] = acc[2];
    }
  }
  Image dst;
  dst.width = width;
  dst.height = height;
  dst.pixels.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    uint8_t* out = dst.at(0, y);
    for (int i = 0; i < width * 3; ++i) {
      float acc = 0;
      for (int k = 0; k < wy.count[y]; ++k)
        acc +=
            wy.weight[wy.offset[y] + k] * tmp[static_cast<size_t>(wy.start[y] + k) * width * 3 + i];
      out[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(acc), 0.f, 255.f));
    }
  }
  return dst;
}

Letterbox letterbox(const Image& src, int height, int width, bool auto_pad, bool scaleup,
                    int stride) {
  Letterbox lb;
  double r =
      std::min(static_cast<double>(height) / src.height, static_cast<double>(width) / src.width);
  if (!scaleup) r = std::min(r, 1.0);
  int unpad_w = py_round(src.width * r), unpad_h = py_round(src.height * r);
  double dw = width - unpad_w, dh = height - unpad_h;
  if (auto_pad) {
    dw = std::fmod(dw, stride);
    dh = std::fmod(dh, stride);
  }
  dw /= 2;
  dh /= 2;
  Image resized;
  const Image* body = &src;
  if (unpad_w != src.width || unpad_h != src.height) {
    resized = resize_image(src, unpad_w, unpad_h, Interp::Linear);
    body = &resized;
  }
  int top = py_round(dh - 0.1), bottom = py_round(dh + 0.1);
  int left = py_round(dw - 0.1), right = py_round(dw + 0.1);
  Image out;
  out.width = unpad_w + left + right;
  out.height = unpad_h + top + bottom;
  out.pixels.assign(static_cast<size_t>(out.width) * out.height * 3, 114);
  for (int y = 0; y < unpad_h; ++y)
    std::copy_n(body->at(0, y), static_cast<size_t>(unpad_w) * 3, out.at(left, y + top));
  lb.image = std::move(out);
  lb.ratio = r;
  lb.pad_w = dw;
  lb.pad_h = dh;
  return lb;
}

namespace {
void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  auto* p = static_cast<uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}
}  // namespace

std::vector<uint8_t> encode_image(const Image& img, const std::string& format) {
  std::vector<uint8_t> out;
  int ok = 0;
  if (format == "png") {
    ok = stbi_write_png_to_func(append_bytes, &out, img.width, img.height, 3, img.pixels.data(),
                                img.width * 3);
  } else if (format == "jpg" || format == "jpeg") {
    ok =
        stbi_write_jpg_to_func(append_bytes, &out, img.width, img.height, 3, img.pixels.data(), 95);
  } else if (format == "bmp") {
    ok = stbi_write_bmp_to_func(append_bytes, &out, img.width, img.height, 3, img.pixels.data());
  } else {
    throw std::invalid_argument("cannot encode images as " + format + " (jpg, png or bmp)");
  }
  if (!ok) throw std::runtime_error("encoding the image as " + format + " failed");
  return out;
}

void write_image(const Image& img, const std::string& path) {
  auto dot = path.find_last_of('.');
  std::string ext = dot == std::string::npos ? "jpg" : path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  auto bytes = encode_image(img, ext == "jpeg" ? "jpg" : ext);
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path + ": cannot write");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error(path + ": write failed");
}

}  // namespace yolo5
