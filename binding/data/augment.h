// Training augmentation as the reference does it: mosaic, random perspective/affine with the box
// candidate filter, HSV gains, flips, mixup. Labels are rows (class, x1, y1, x2, y2) in pixels.
#pragma once
#include <array>
#include <random>
#include <vector>

#include "data/image.h"

namespace yolo5 {

using Box = std::array<float, 5>;  // class, x1, y1, x2, y2 (pixels)

struct AugmentHyp {
  double hsv_h = 0.015, hsv_s = 0.7, hsv_v = 0.4;
  double degrees = 0, translate = 0.1, scale = 0.5, shear = 0, perspective = 0;
  double flipud = 0, fliplr = 0.5;
  double mosaic = 1.0, mixup = 0;
};

using Rng = std::mt19937_64;
double uniform(Rng& rng, double a, double b);

// Random perspective / affine: output (height + 2·border_h) × (width + 2·border_w); border < 0
// crops (mosaic). Boxes are transformed, clipped and filtered like the reference's candidates.
void random_perspective(Image& img, std::vector<Box>& boxes, const AugmentHyp& h, int border_h,
                        int border_w, Rng& rng);

// HSV gains through lookup tables (OpenCV's 8-bit HSV: hue 0…179).
void augment_hsv(Image& img, const AugmentHyp& h, Rng& rng);

void flip_lr(Image& img, std::vector<Box>& boxes);
void flip_ud(Image& img, std::vector<Box>& boxes);

// Blends b into a (weights from Beta(32, 32)) and joins the labels.
void mixup(Image& a, std::vector<Box>& boxes_a, const Image& b, const std::vector<Box>& boxes_b,
           Rng& rng);

// Keeps boxes that survived a transform: w, h > 2 px, area > 10% of the scaled original, aspect <
// 100.
bool box_candidate(const Box& before, const Box& after, double scale);

}  // namespace yolo5
