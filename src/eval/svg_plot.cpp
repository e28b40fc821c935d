#include "eval/svg_plot.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace baichuan::eval {

namespace {

std::string escape_xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f", v);
  return s;
}

std::string text(double x, double y, const std::string& s, const std::string& attrs = "") {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" " + attrs + ">" + escape_xml(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& attrs) {
  return "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) + "\" " +
         attrs + "/>\n";
}

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string header(double width, double height, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" + num(height) +
         "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" +
         text(width / 2, 20, title, "text-anchor=\"middle\" font-size=\"15\"");
}

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
  std::string svg = header(left + plot + 70, height, r.task + " accuracy per subject: " + label);
  const double bottom = top + row * static_cast<double>(rows.size());
  for (int p = 0; p <= 100; p += 25) {
    const double x = left + plot * p / 100.0;
    svg += line(x, top - 5, x, bottom, "stroke=\"#ddd\"");
    svg += text(x, bottom + 16, std::to_string(p) + "%", "text-anchor=\"middle\" fill=\"#555\"");
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const double y = top + row * static_cast<double>(i);
    svg += text(left - 6, y + 14, rows[i].name, "text-anchor=\"end\"" + std::string(rows[i].average ? " font-weight=\"bold\"" : ""));
    svg += "<rect x=\"" + num(left) + "\" y=\"" + num(y + 3) + "\" width=\"" + num(plot * rows[i].accuracy) +
           "\" height=\"" + num(row - 6) + "\" fill=\"" + (rows[i].average ? "#1f4e79" : "#6baed6") + "\"/>\n";
    svg += text(left + plot * rows[i].accuracy + 4, y + 14, num(100 * rows[i].accuracy));
  }
  if (is_multiple_choice(r.task)) {  // four options: chance is 25%
    const double x = left + plot * 0.25;
    svg += line(x, top - 5, x, bottom, "stroke=\"#999\" stroke-dasharray=\"4 3\"");
    svg += text(x + 3, top - 8, "chance", "fill=\"#777\" font-size=\"10\"");
  }
  return svg + "</svg>\n";
}

// Several runs: x is the run, y the accuracy; the averages bold and coloured, subjects thin and grey.
std::string lines(const std::vector<EvalReport>& runs, const std::vector<std::string>& labels) {
  const double left = 60, top = 40, plot_w = std::max(300.0, 110.0 * static_cast<double>(runs.size())), plot_h = 320;
  const double legend = 180;
  std::string svg = header(left + plot_w + legend, top + plot_h + 70, runs[0].task + " accuracy across runs");
  auto x_of = [&](size_t i) { return left + plot_w * (static_cast<double>(i) + 0.5) / static_cast<double>(runs.size()); };
  auto y_of = [&](double acc) { return top + plot_h * (1 - acc); };
  for (int p = 0; p <= 100; p += 20) {
    svg += line(left, y_of(p / 100.0), left + plot_w, y_of(p / 100.0), "stroke=\"#ddd\"");
    svg += text(left - 6, y_of(p / 100.0) + 4, std::to_string(p) + "%", "text-anchor=\"end\" fill=\"#555\"");
  }
  for (size_t i = 0; i < runs.size(); ++i)
    svg += text(x_of(i), top + plot_h + 18, labels[i], "text-anchor=\"middle\"");
  auto polyline = [&](const std::vector<double>& ys, const std::string& attrs) {
    std::string pts;
    for (size_t i = 0; i < ys.size(); ++i)
      if (ys[i] >= 0) pts += num(x_of(i)) + "," + num(y_of(ys[i])) + " ";
    return "<polyline fill=\"none\" points=\"" + pts + "\" " + attrs + "/>\n";
  };
  for (const auto& s : runs[0].subjects) {
    std::vector<double> ys;
    for (const auto& r : runs) {
      auto it = std::find_if(r.subjects.begin(), r.subjects.end(), [&](auto& x) { return x.name == s.name; });
      ys.push_back(it == r.subjects.end() ? -1 : it->accuracy());
    }
    svg += polyline(ys, "stroke=\"#bbb\" stroke-width=\"1\"");
  }
  const auto names = benchmark_averages(runs[0]);
  for (size_t a = 0; a < names.size(); ++a) {
    std::vector<double> ys;
    for (const auto& r : runs) {
      const auto av = benchmark_averages(r);
      auto it = std::find_if(av.begin(), av.end(), [&](auto& x) { return x.name == names[a].name; });
      ys.push_back(it == av.end() ? -1 : it->accuracy);
    }
    const std::string color = kColors[a % (sizeof kColors / sizeof kColors[0])];
    svg += polyline(ys, "stroke=\"" + color + "\" stroke-width=\"" + (a == 0 ? "3" : "2") + "\"");
    const double ly = top + 16 + 18 * static_cast<double>(a);
    svg += line(left + plot_w + 15, ly - 4, left + plot_w + 35, ly - 4, "stroke=\"" + color + "\" stroke-width=\"3\"");
    svg += text(left + plot_w + 40, ly, names[a].name);
  }
  const double ly = top + 16 + 18 * static_cast<double>(names.size());
  svg += line(left + plot_w + 15, ly - 4, left + plot_w + 35, ly - 4, "stroke=\"#bbb\"");
  svg += text(left + plot_w + 40, ly, "each subject");
  return svg + "</svg>\n";
}

}  // namespace

std::string accuracy_svg(const std::vector<EvalReport>& runs, const std::vector<std::string>& labels) {
  if (runs.empty()) fail("--plot: no run to draw");
  if (labels.size() != runs.size()) fail("internal: ", labels.size(), " labels for ", runs.size(), " runs");
  return runs.size() == 1 ? bars(runs[0], labels[0]) : lines(runs, labels);
}

}  // namespace baichuan::eval
