#include "data/draw.h"

#include <stb/stb_easy_font.h>

#include <algorithm>
#include <vector>

namespace yolo5 {

Rgb class_color(int cls) {
  // Hues spread by the golden angle; saturated and bright enough for white or black text.
  static const std::array<Rgb, 16> palette = {{{230, 25, 75},
                                               {60, 180, 75},
                                               {255, 225, 25},
                                               {0, 130, 200},
                                               {245, 130, 48},
                                               {145, 30, 180},
                                               {70, 240, 240},
                                               {240, 50, 230},
                                               {210, 245, 60},
                                               {250, 190, 212},
                                               {0, 128, 128},
                                               {220, 190, 255},
                                               {170, 110, 40},
                                               {128, 0, 0},
                                               {170, 255, 195},
                                               {0, 0, 128}}};
  return palette[static_cast<size_t>(std::abs(cls)) % palette.size()];
}

void fill_rect(Image& img, int x1, int y1, int x2, int y2, Rgb color) {
  x1 = std::clamp(x1, 0, img.width);
  x2 = std::clamp(x2, 0, img.width);
  y1 = std::clamp(y1, 0, img.height);
  y2 = std::clamp(y2, 0, img.height);
  for (int y = y1; y < y2; ++y) {
    for (int x = x1; x < x2; ++x) {
      uint8_t* p = img.at(x, y);
      p[0] = color[0];
      p[1] = color[1];
      p[2] = color[2];
    }
  }
}

void draw_rect(Image& img, int x1, int y1, int x2, int y2, Rgb color, int t) {
  fill_rect(img, x1, y1, x2 + 1, y1 + t, color);
  fill_rect(img, x1, y2 - t + 1, x2 + 1, y2 + 1, color);
  fill_rect(img, x1, y1, x1 + t, y2 + 1, color);
  fill_rect(img, x2 - t + 1, y1, x2 + 1, y2 + 1, color);
}

int text_width(const std::string& text, int scale) {
  return stb_easy_font_width(const_cast<char*>(text.c_str())) * scale;
}

int text_height(int scale) { return 7 * scale; }

void draw_text(Image& img, int x, int y, const std::string& text, Rgb color, int scale) {
  // stb_easy_font describes glyphs as axis-aligned quads (4 vertices of 16 bytes each).
  std::vector<char> buffer(text.size() * 300 + 64);
  int quads = stb_easy_font_print(0, 0, const_cast<char*>(text.c_str()), nullptr, buffer.data(),
                                  static_cast<int>(buffer.size()));
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(buffer.data() + q * 64);
    const float* v2 = reinterpret_cast<const float*>(buffer.data() + q * 64 + 32);
    fill_rect(img, x + static_cast<int>(v0[0]) * scale, y + static_cast<int>(v0[1]) * scale,
              x + static_cast<int>(v2[0]) * scale, y + static_cast<int>(v2[1]) * scale, color);
  }
}

void draw_detection(Image& img, float fx1, float fy1, float fx2, float fy2,
                    const std::string& label, Rgb color, int lw) {
  int x1 = static_cast<int>(fx1), y1 = static_cast<int>(fy1);
  int x2 = static_cast<int>(fx2), y2 = static_cast<int>(fy2);
  draw_rect(img, x1, y1, x2, y2, color, lw);
  if (label.empty()) return;
  const int scale = std::max(1, (lw + 1) / 2 + 1);
  const int pad = scale;
  const int tw = text_width(label, scale) + 2 * pad, th = text_height(scale) + 2 * pad;
  const bool above = y1 - th >= 0;
  const int ty = above ? y1 - th : y1;
  const int tx = std::clamp(x1, 0, std::max(0, img.width - tw));
  fill_rect(img, tx, ty, tx + tw, ty + th, color);
  // White on dark tags, black on light ones.
  const double luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2];
  const Rgb ink = luma > 150 ? Rgb{0, 0, 0} : Rgb{255, 255, 255};
  draw_text(img, tx + pad, ty + pad + scale, label, ink, scale);
}

Image crop_image(const Image& img, int x1, int y1, int x2, int y2) {
  x1 = std::clamp(x1, 0, img.width);
  x2 = std::clamp(x2, 0, img.width);
  y1 = std::clamp(y1, 0, img.height);
  y2 = std::clamp(y2, 0, img.height);
  Image out;
  out.width = std::max(0, x2 - x1);
  out.height = std::max(0, y2 - y1);
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * 3);
  for (int y = 0; y < out.height; ++y)
    std::copy_n(img.at(x1, y1 + y), static_cast<size_t>(out.width) * 3, out.at(0, y));
  return out;
}

}  // namespace yolo5
