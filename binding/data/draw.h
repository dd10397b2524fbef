// Annotating images: box outlines and filled label tags with legible text.
#pragma once
#include <array>
#include <string>

#include "data/image.h"

namespace yolo5 {

using Rgb = std::array<uint8_t, 3>;

// A stable, distinct colour per class index.
Rgb class_color(int cls);

void draw_rect(Image& img, int x1, int y1, int x2, int y2, Rgb color, int thickness);
void fill_rect(Image& img, int x1, int y1, int x2, int y2, Rgb color);
// Draws text with its top-left at (x, y); each font pixel becomes scale×scale pixels.
void draw_text(Image& img, int x, int y, const std::string& text, Rgb color, int scale);
int text_width(const std::string& text, int scale);
int text_height(int scale);

// A box with an optional label tag above it (inside when there is no room above).
void draw_detection(Image& img, float x1, float y1, float x2, float y2, const std::string& label,
                    Rgb color, int line_width);

Image crop_image(const Image& img, int x1, int y1, int x2, int y2);

}  // namespace yolo5
