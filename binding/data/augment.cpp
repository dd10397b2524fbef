#include "data/augment.h"

#include <algorithm>
#include <cmath>

namespace yolo5 {

double uniform(Rng& rng, double a, double b) {
  return std::uniform_real_distribution<double>(a, b)(rng);
}

namespace {

// std::nearbyint (ties to even) for |v| < 2^22, without the libm call: adding 1.5·2^23 (2^52 for
// double) leaves no fraction bits, so the addition itself rounds.
inline float round_even(float v) { return (v + 12582912.f) - 12582912.f; }
inline double round_even(double v) { return (v + 6755399441055744.0) - 6755399441055744.0; }

using Mat3 = std::array<double, 9>;

Mat3 identity() { return {1, 0, 0, 0, 1, 0, 0, 0, 1}; }

Mat3 mul(const Mat3& a, const Mat3& b) {
  Mat3 c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
  return c;
}

bool invert(const Mat3& m, Mat3& inv) {
  double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
               m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (std::abs(det) < 1e-12) return false;
  inv = {(m[4] * m[8] - m[5] * m[7]) / det, (m[2] * m[7] - m[1] * m[8]) / det,
         (m[1] * m[5] - m[2] * m[4]) / det, (m[5] * m[6] - m[3] * m[8]) / det,
         (m[0] * m[8] - m[2] * m[6]) / det, (m[2] * m[3] - m[0] * m[5]) / det,
         (m[3] * m[7] - m[4] * m[6]) / det, (m[1] * m[6] - m[0] * m[7]) / det,
         (m[0] * m[4] - m[1] * m[3]) / det};
  return true;
}

// Inverse-maps every output pixel through M and samples bilinearly; outside is grey 114.
Image warp(const Image& src, const Mat3& m, int width, int height) {
  Mat3 inv;
  Image out;
  out.width = width;
  out.height = height;
  out.pixels.assign(static_cast<size_t>(width) * height * 3, 114);
  if (!invert(m, inv)) return out;
  const bool affine = inv[6] == 0 && inv[7] == 0 && inv[8] == 1;
  const size_t stride = static_cast<size_t>(src.width) * 3;
  auto round_px = [](float v) {
    return static_cast<uint8_t>(std::clamp(round_even(v), 0.f, 255.f));
  };
  for (int y = 0; y < height; ++y) {
    uint8_t* row = out.at(0, y);
    for (int x = 0; x < width; ++x) {
      double sx = inv[0] * x + inv[1] * y + inv[2];
      double sy = inv[3] * x + inv[4] * y + inv[5];
      if (!affine) {
        double w = inv[6] * x + inv[7] * y + inv[8];
        if (w == 0) continue;
        sx /= w;
        sy /= w;
      }
      int x0 = static_cast<int>(std::floor(sx)), y0 = static_cast<int>(std::floor(sy));
      if (x0 < -1 || y0 < -1 || x0 >= src.width || y0 >= src.height) continue;
      float fx = static_cast<float>(sx - x0), fy = static_cast<float>(sy - y0);
      uint8_t* o = row + x * 3;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < src.width && y0 + 1 < src.height) {
        // All four taps inside (nearly every pixel): no per-tap bounds checks.
        const uint8_t* p = src.at(x0, y0);
        const uint8_t* q = p + stride;
        for (int c = 0; c < 3; ++c) {
          float v =
              (1 - fy) * ((1 - fx) * p[c] + fx * p[c + 3]) + fy * ((1 - fx) * q[c] + fx * q[c + 3]);
          o[c] = round_px(v);
        }
        continue;
      }
      for (int c = 0; c < 3; ++c) {
        auto px = [&](int xx, int yy) -> float {
          return (xx < 0 || yy < 0 || xx >= src.width || yy >= src.height) ? 114.f
                                                                           : src.at(xx, yy)[c];
        };
        float v = (1 - fy) * ((1 - fx) * px(x0, y0) + fx * px(x0 + 1, y0)) +
                  fy * ((1 - fx) * px(x0, y0 + 1) + fx * px(x0 + 1, y0 + 1));
        o[c] = round_px(v);
      }
    }
  }
  return out;
}

}  // namespace

bool box_candidate(const Box& before, const Box& after, double scale) {
  const double eps = 1e-16;
  double w1 = (before[3] - before[1]) * scale, h1 = (before[4] - before[2]) * scale;
  double w2 = after[3] - after[1], h2 = after[4] - after[2];
  double ar = std::max(w2 / (h2 + eps), h2 / (w2 + eps));
  return w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + eps) > 0.1 && ar < 100;
}

void random_perspective(Image& img, std::vector<Box>& boxes, const AugmentHyp& h, int border_h,
                        int border_w, Rng& rng) {
  const int height = img.height + border_h * 2, width = img.width + border_w * 2;
  const double deg2rad = M_PI / 180;
  Mat3 C = identity();  // centre on the origin
  C[2] = -img.width / 2.0;
  C[5] = -img.height / 2.0;
  Mat3 P = identity();  // perspective
  P[6] = uniform(rng, -h.perspective, h.perspective);
  P[7] = uniform(rng, -h.perspective, h.perspective);
  Mat3 R = identity();  // rotation and scale
  const double angle = uniform(rng, -h.degrees, h.degrees);
  const double s = uniform(rng, 1 - h.scale, 1 + h.scale);
  const double ca = s * std::cos(angle * deg2rad), sa = s * std::sin(angle * deg2rad);
  R[0] = ca;
  R[1] = sa;
  R[3] = -sa;
  R[4] = ca;
  Mat3 S = identity();  // shear
  S[1] = std::tan(uniform(rng, -h.shear, h.shear) * deg2rad);
  S[3] = std::tan(uniform(rng, -h.shear, h.shear) * deg2rad);
  Mat3 T = identity();  // translation
  T[2] = uniform(rng, 0.5 - h.translate, 0.5 + h.translate) * width;
  T[5] = uniform(rng, 0.5 - h.translate, 0.5 + h.translate) * height;
  Mat3 M = mul(T, mul(S, mul(R, mul(P, C))));
  if (border_h != 0 || border_w != 0 || M != identity()) {
    img = warp(img, M, width, height);
  }
  std::vector<Box> kept;
  for (const auto& b : boxes) {
    const double xs[4] = {b[1], b[3], b[1], b[3]}, ys[4] = {b[2], b[4], b[4], b[2]};
    double x1 = 1e30, y1 = 1e30, x2 = -1e30, y2 = -1e30;
    for (int k = 0; k < 4; ++k) {
      double X = M[0] * xs[k] + M[1] * ys[k] + M[2], Y = M[3] * xs[k] + M[4] * ys[k] + M[5];
      if (h.perspective != 0) {
        double W = M[6] * xs[k] + M[7] * ys[k] + M[8];
        X /= W;
        Y /= W;
      }
      x1 = std::min(x1, X);
      x2 = std::max(x2, X);
      y1 = std::min(y1, Y);
      y2 = std::max(y2, Y);
    }
    Box nb = {b[0], static_cast<float>(std::clamp(x1, 0.0, static_cast<double>(width))),
              static_cast<float>(std::clamp(y1, 0.0, static_cast<double>(height))),
              static_cast<float>(std::clamp(x2, 0.0, static_cast<double>(width))),
              static_cast<float>(std::clamp(y2, 0.0, static_cast<double>(height)))};
    if (box_candidate(b, nb, s)) kept.push_back(nb);
  }
  boxes = std::move(kept);
}

namespace {

// Per-byte constants of the conversions, computed once with exactly the arithmetic they replace
// (so the pixels are the same as computing them per pixel, just without divisions and fmod).
struct HsvTables {
  uint8_t sat[256][256];  // [v][v − min]: round(255·diff/v)
  double s_unit[256];     // s / 255
  double x_factor[256];   // 1 − |fmod(h·2/60 mod 6, 2) − 1|
  uint8_t sector[256];    // floor(h·2/60 mod 6)
  HsvTables() {
    for (int v = 0; v < 256; ++v)
      for (int d = 0; d < 256; ++d)
        sat[v][d] = v == 0 || d > v ? 0 : static_cast<uint8_t>(std::nearbyint(255.0 * d / v));
    for (int s = 0; s < 256; ++s) s_unit[s] = s / 255.0;
    for (int h = 0; h < 256; ++h) {
      double hp = std::fmod(h * 2.0 / 60.0, 6.0);
      x_factor[h] = 1 - std::abs(std::fmod(hp, 2.0) - 1);
      sector[h] = static_cast<uint8_t>(hp);
    }
  }
};

const HsvTables& hsv_tables() {
  static const HsvTables t;
  return t;
}

// OpenCV's 8-bit RGB→HSV: V = max, S = 255·(V − min)/V, H in degrees / 2.
void rgb_to_hsv(const HsvTables& t, const uint8_t* p, uint8_t* hsv) {
  int r = p[0], g = p[1], b = p[2];
  int v = std::max({r, g, b}), mn = std::min({r, g, b});
  int diff = v - mn;
  double hue = 0;
  if (diff != 0) {
    if (v == r)
      hue = 60.0 * (g - b) / diff;
    else if (v == g)
      hue = 120.0 + 60.0 * (b - r) / diff;
    else
      hue = 240.0 + 60.0 * (r - g) / diff;
    if (hue < 0) hue += 360;
  }
  int h = static_cast<int>(round_even(hue / 2));
  if (h >= 180) h -= 180;
  hsv[0] = static_cast<uint8_t>(h);
  hsv[1] = t.sat[v][diff];
  hsv[2] = static_cast<uint8_t>(v);
}

void hsv_to_rgb(const HsvTables& t, const uint8_t* hsv, uint8_t* p) {
  double v = hsv[2];
  double c = v * t.s_unit[hsv[1]];
  double x = c * t.x_factor[hsv[0]];
  double r = 0, g = 0, b = 0;
  switch (t.sector[hsv[0]]) {
    case 0:
      r = c, g = x;
      break;
    case 1:
      r = x, g = c;
      break;
    case 2:
      g = c, b = x;
      break;
    case 3:
      g = x, b = c;
      break;
    case 4:
      r = x, b = c;
      break;
    default:
      r = c, b = x;
      break;
  }
  double m = v - c;
  p[0] = static_cast<uint8_t>(std::clamp(round_even(r + m), 0.0, 255.0));
  p[1] = static_cast<uint8_t>(std::clamp(round_even(g + m), 0.0, 255.0));
  p[2] = static_cast<uint8_t>(std::clamp(round_even(b + m), 0.0, 255.0));
}

}  // namespace

void augment_hsv(Image& img, const AugmentHyp& h, Rng& rng) {
  if (h.hsv_h == 0 && h.hsv_s == 0 && h.hsv_v == 0) return;
  const double gh = uniform(rng, -1, 1) * h.hsv_h + 1, gs = uniform(rng, -1, 1) * h.hsv_s + 1,
               gv = uniform(rng, -1, 1) * h.hsv_v + 1;
  uint8_t lut_h[256], lut_s[256], lut_v[256];
  for (int x = 0; x < 256; ++x) {
    lut_h[x] = static_cast<uint8_t>(static_cast<int>(x * gh) % 180);
    lut_s[x] = static_cast<uint8_t>(std::clamp(x * gs, 0.0, 255.0));
    lut_v[x] = static_cast<uint8_t>(std::clamp(x * gv, 0.0, 255.0));
  }
  const auto& t = hsv_tables();
  const size_t n = static_cast<size_t>(img.width) * img.height;
  uint8_t* px = img.pixels.data();
  for (size_t i = 0; i < n; ++i, px += 3) {
    uint8_t hsv[3];
    rgb_to_hsv(t, px, hsv);
    hsv[0] = lut_h[hsv[0]];
    hsv[1] = lut_s[hsv[1]];
    hsv[2] = lut_v[hsv[2]];
    hsv_to_rgb(t, hsv, px);
  }
}

void flip_lr(Image& img, std::vector<Box>& boxes) {
  for (int y = 0; y < img.height; ++y) {
    for (int x = 0; x < img.width / 2; ++x)
      std::swap_ranges(img.at(x, y), img.at(x, y) + 3, img.at(img.width - 1 - x, y));
  }
  for (auto& b : boxes) {
    float x1 = img.width - b[3], x2 = img.width - b[1];
    b[1] = x1;
    b[3] = x2;
  }
}

void flip_ud(Image& img, std::vector<Box>& boxes) {
  const size_t row = static_cast<size_t>(img.width) * 3;
  for (int y = 0; y < img.height / 2; ++y)
    std::swap_ranges(img.at(0, y), img.at(0, y) + row, img.at(0, img.height - 1 - y));
  for (auto& b : boxes) {
    float y1 = img.height - b[4], y2 = img.height - b[2];
    b[2] = y1;
    b[4] = y2;
  }
}

void mixup(Image& a, std::vector<Box>& boxes_a, const Image& b, const std::vector<Box>& boxes_b,
           Rng& rng) {
  std::gamma_distribution<double> g(32.0, 1.0);
  double x = g(rng), y = g(rng);
  double r = x / (x + y);  // Beta(32, 32)
  for (size_t i = 0; i < a.pixels.size(); ++i)
    a.pixels[i] = static_cast<uint8_t>(a.pixels[i] * r + b.pixels[i] * (1 - r));
  boxes_a.insert(boxes_a.end(), boxes_b.begin(), boxes_b.end());
}

}  // namespace yolo5
