#include "kernels/ops.h"

#include <cmath>


namespace baichuan::kernels {

void rms_norm(const float* x, const Tensor& weight, float eps, float* out, int64_t n) {
  float sum_sq = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum_sq += x[i] * x[i];
  float scale = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = load_float(weight.dtype, weight.data, static_cast<size_t>(i)) * (x[i] * scale);
}

std::vector<float> rope_inv_freq(int64_t head_dim, float theta) {
  std::vector<float> inv(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[static_cast<size_t>(i)] = 1.0f / std::pow(theta, exponent);
  }
  return inv;
}

void rope_rotation(int64_t pos, const std::vector<float>& inv_freq, float* cos_sin) {
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    float angle = static_cast<float>(pos) * inv_freq[i];  // rounded to float32 as torch does
    cos_sin[2 * i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    cos_sin[2 * i + 1] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

void apply_rope(float* head, int64_t head_dim, const float* cos_sin, bool interleaved) {
  int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
    float* a = interleaved ? head + 2 * i : head + i;
    float* b = interleaved ? head + 2 * i + 1 : head + i + half;
    float x0 = *a, x1 = *b;
    *a = x0 * c - x1 * s;
    *b = x1 * c + x0 * s;
  }
}

std::vector<float> alibi_slopes(int64_t n_heads, float max_bias) {
  auto closest = static_cast<int64_t>(1) << static_cast<int>(std::floor(std::log2(static_cast<double>(n_heads))));
  double base = std::pow(2.0, -static_cast<double>(max_bias) / static_cast<double>(closest));
  double extra_base = std::pow(2.0, -static_cast<double>(max_bias) / 2.0 / static_cast<double>(closest));
  std::vector<float> slopes;
  for (int64_t h = 0; h < n_heads; ++h) {
    double s = h < closest ? std::pow(base, static_cast<double>(h + 1))
                           : std::pow(extra_base, static_cast<double>(2 * (h - closest) + 1));
    slopes.push_back(static_cast<float>(s));
  }
  return slopes;
}

void softmax_inplace(float* x, int64_t n) {
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace baichuan::kernels
