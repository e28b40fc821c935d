#include "train/loss_curve.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/svg.h"

namespace baichuan::train {

namespace {

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.emplace_back();
  return cells;
}

double parse_loss_cell(const std::string& cell, const std::string& what, size_t line_no, const std::string& column) {
  double v = 0;
  const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (ec != std::errc() || end != cell.data() + cell.size())
    fail(what, ": line ", line_no, ", column ", column, ": '", cell, "' is not a number");
  return v;
}

// 1, 2 or 5 times a power of ten, so that about `count` ticks span `range`.
double tick_step(double range, int count) {
  const double raw = range / count, base = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * base >= raw) return m * base;
  return 10 * base;
}

std::string tick_label(double v, double step) {
  char s[32];
  std::snprintf(s, sizeof s, "%.*f", step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step))), v);
  return s;
}

}  // namespace

std::string loss_curve_svg(const std::string& csv, const std::string& what) {
  std::stringstream in(csv);
  std::string line;
  if (!std::getline(in, line)) fail(what, ": empty, no header");
  const auto header = split_csv_line(line);
  auto column = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) fail(what, ": the header has no '", name, "' column");
    return static_cast<size_t>(it - header.begin());
  };
  const size_t step_col = column("step"), loss_col = column("loss"), eval_col = column("eval_loss");
  std::vector<std::pair<double, double>> train, held_out;  // (step, loss)
  for (size_t line_no = 2; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    const auto cells = split_csv_line(line);
    if (cells.size() != header.size())
      fail(what, ": line ", line_no, " has ", cells.size(), " cells, the header ", header.size());
    const double step = parse_loss_cell(cells[step_col], what, line_no, "step");
    const double loss = parse_loss_cell(cells[loss_col], what, line_no, "loss");
    if (std::isfinite(loss)) train.emplace_back(step, loss);
    if (!cells[eval_col].empty()) {
      const double eval = parse_loss_cell(cells[eval_col], what, line_no, "eval_loss");
      if (std::isfinite(eval)) held_out.emplace_back(step, eval);
    }
  }

  const double left = 70, top = 40, plot_w = 560, plot_h = 320, legend = 150;
  std::string doc = svg::header(left + plot_w + legend, top + plot_h + 60, "loss per step");
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  if (!train.empty() || !held_out.empty()) {
    x_lo = y_lo = INFINITY, x_hi = y_hi = -INFINITY;
    for (const auto* series : {&train, &held_out})
      for (const auto& [x, y] : *series) {
        x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x), y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y);
      }
    if (x_hi <= x_lo) x_lo -= 1, x_hi += 1;  // one step: a point in the middle
    const double pad = y_hi > y_lo ? 0.05 * (y_hi - y_lo) : std::max(0.5, 0.05 * std::fabs(y_hi));
    y_lo -= pad, y_hi += pad;
  }
  auto x_of = [&](double x) { return left + plot_w * (x - x_lo) / (x_hi - x_lo); };
  auto y_of = [&](double y) { return top + plot_h * (1 - (y - y_lo) / (y_hi - y_lo)); };
  const double y_step = tick_step(y_hi - y_lo, 6), x_step = std::max(1.0, tick_step(x_hi - x_lo, 8));  // whole steps
  for (double y = std::ceil(y_lo / y_step) * y_step; y <= y_hi; y += y_step) {
    doc += svg::line(left, y_of(y), left + plot_w, y_of(y), "stroke=\"#ddd\"");
    doc += svg::text(left - 6, y_of(y) + 4, tick_label(y, y_step), "text-anchor=\"end\" fill=\"#555\"");
  }
  for (double x = std::ceil(x_lo / x_step) * x_step; x <= x_hi; x += x_step)
    doc += svg::text(x_of(x), top + plot_h + 18, tick_label(x, x_step), "text-anchor=\"middle\" fill=\"#555\"");
  doc += svg::line(left, top + plot_h, left + plot_w, top + plot_h, "stroke=\"#555\"");
  doc += svg::text(left + plot_w / 2, top + plot_h + 40, "step", "text-anchor=\"middle\"");

  struct Series {
    const std::vector<std::pair<double, double>>* points;
    const char* name;
  };
  const Series series[] = {{&train, "train"}, {&held_out, "held-out"}};
  for (size_t i = 0; i < 2; ++i) {
    const auto& points = *series[i].points;
    const std::string& color = svg::color(i);
    std::vector<std::pair<double, double>> pixels;
    for (const auto& [x, y] : points) pixels.emplace_back(x_of(x), y_of(y));
    doc += "<g class=\"" + std::string(series[i].name) + "\">\n";
    doc += svg::polyline(pixels, "stroke=\"" + color + "\" stroke-width=\"2\"");
    if (i == 1)  // evaluations are few: mark each one
      for (const auto& [px, py] : pixels)
        doc += "<circle cx=\"" + svg::num(px) + "\" cy=\"" + svg::num(py) + "\" r=\"3\" fill=\"" + color + "\"/>\n";
    doc += "</g>\n";
    const double ly = top + 16 + 18 * static_cast<double>(i);
    doc += svg::line(left + plot_w + 15, ly - 4, left + plot_w + 35, ly - 4, "stroke=\"" + color + "\" stroke-width=\"3\"");
    doc += svg::text(left + plot_w + 40, ly, std::string(series[i].name) + " (" + std::to_string(points.size()) + ")");
  }
  return doc + "</svg>\n";
}

}  // namespace baichuan::train
