#include "eval/svg_plot.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "core/svg.h"

namespace baichuan::eval {

namespace {

using svg::header;
using svg::line;
using svg::num;
using svg::text;

// One run: a horizontal bar per subject, then the averages in a darker colour.
std::string bars(const EvalReport& r, const std::string& label) {
  struct Bar {
    std::string name;
    double accuracy;
    bool average;
  };
  std::vector<Bar> rows;
  for (const auto& s : r.subjects) rows.push_back({s.name, s.accuracy(), false});  // the ASCII file stem: no CJK font needed
  for (const auto& a : benchmark_averages(r)) rows.push_back({a.name, a.accuracy, true});
  const double left = 230, plot = 420, row = 20, top = 50;
  const double height = top + row * static_cast<double>(rows.size()) + 40;
  std::string doc = header(left + plot + 70, height, r.task + " accuracy per subject: " + label);
  const double bottom = top + row * static_cast<double>(rows.size());
  for (int p = 0; p <= 100; p += 25) {
    const double x = left + plot * p / 100.0;
    doc += line(x, top - 5, x, bottom, "stroke=\"#ddd\"");
    doc += text(x, bottom + 16, std::to_string(p) + "%", "text-anchor=\"middle\" fill=\"#555\"");
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const double y = top + row * static_cast<double>(i);
    doc += text(left - 6, y + 14, rows[i].name, "text-anchor=\"end\"" + std::string(rows[i].average ? " font-weight=\"bold\"" : ""));
    doc += "<rect x=\"" + num(left) + "\" y=\"" + num(y + 3) + "\" width=\"" + num(plot * rows[i].accuracy) +
           "\" height=\"" + num(row - 6) + "\" fill=\"" + (rows[i].average ? "#1f4e79" : "#6baed6") + "\"/>\n";
    doc += text(left + plot * rows[i].accuracy + 4, y + 14, num(100 * rows[i].accuracy));
  }
  if (is_multiple_choice(r.task)) {  // four options: chance is 25%
    const double x = left + plot * 0.25;
    doc += line(x, top - 5, x, bottom, "stroke=\"#999\" stroke-dasharray=\"4 3\"");
    doc += text(x + 3, top - 8, "chance", "fill=\"#777\" font-size=\"10\"");
  }
  return doc + "</svg>\n";
}

// Several runs: x is the run, y the accuracy; the averages bold and coloured, subjects thin and grey.
std::string lines(const std::vector<EvalReport>& runs, const std::vector<std::string>& labels) {
  const double left = 60, top = 40, plot_w = std::max(300.0, 110.0 * static_cast<double>(runs.size())), plot_h = 320;
  const double legend = 180;
  std::string doc = header(left + plot_w + legend, top + plot_h + 70, runs[0].task + " accuracy across runs");
  auto x_of = [&](size_t i) { return left + plot_w * (static_cast<double>(i) + 0.5) / static_cast<double>(runs.size()); };
  auto y_of = [&](double acc) { return top + plot_h * (1 - acc); };
  for (int p = 0; p <= 100; p += 20) {
    doc += line(left, y_of(p / 100.0), left + plot_w, y_of(p / 100.0), "stroke=\"#ddd\"");
    doc += text(left - 6, y_of(p / 100.0) + 4, std::to_string(p) + "%", "text-anchor=\"end\" fill=\"#555\"");
  }
  for (size_t i = 0; i < runs.size(); ++i)
    doc += text(x_of(i), top + plot_h + 18, labels[i], "text-anchor=\"middle\"");
  auto polyline = [&](const std::vector<double>& ys, const std::string& attrs) {
    std::vector<std::pair<double, double>> points;
    for (size_t i = 0; i < ys.size(); ++i)
      if (ys[i] >= 0) points.emplace_back(x_of(i), y_of(ys[i]));
    return svg::polyline(points, attrs);
  };
  for (const auto& s : runs[0].subjects) {
    std::vector<double> ys;
    for (const auto& r : runs) {
      auto it = std::find_if(r.subjects.begin(), r.subjects.end(), [&](auto& x) { return x.name == s.name; });
      ys.push_back(it == r.subjects.end() ? -1 : it->accuracy());
    }
    doc += polyline(ys, "stroke=\"#bbb\" stroke-width=\"1\"");
  }
  const auto names = benchmark_averages(runs[0]);
  for (size_t a = 0; a < names.size(); ++a) {
    std::vector<double> ys;
    for (const auto& r : runs) {
      const auto av = benchmark_averages(r);
      auto it = std::find_if(av.begin(), av.end(), [&](auto& x) { return x.name == names[a].name; });
      ys.push_back(it == av.end() ? -1 : it->accuracy);
    }
    const std::string& color = svg::color(a);
    doc += polyline(ys, "stroke=\"" + color + "\" stroke-width=\"" + (a == 0 ? "3" : "2") + "\"");
    const double ly = top + 16 + 18 * static_cast<double>(a);
    doc += line(left + plot_w + 15, ly - 4, left + plot_w + 35, ly - 4, "stroke=\"" + color + "\" stroke-width=\"3\"");
    doc += text(left + plot_w + 40, ly, names[a].name);
  }
  const double ly = top + 16 + 18 * static_cast<double>(names.size());
  doc += line(left + plot_w + 15, ly - 4, left + plot_w + 35, ly - 4, "stroke=\"#bbb\"");
  doc += text(left + plot_w + 40, ly, "each subject");
  return doc + "</svg>\n";
}

}  // namespace

std::string accuracy_svg(const std::vector<EvalReport>& runs, const std::vector<std::string>& labels) {
  if (runs.empty()) fail("--plot: no run to draw");
  if (labels.size() != runs.size()) fail("internal: ", labels.size(), " labels for ", runs.size(), " runs");
  return runs.size() == 1 ? bars(runs[0], labels[0]) : lines(runs, labels);
}

}  // namespace baichuan::eval
