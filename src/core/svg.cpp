#include "core/svg.h"

#include <array>
#include <cstdio>

namespace baichuan::svg {

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

std::string text(double x, double y, const std::string& s, const std::string& attrs) {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" " + attrs + ">" + escape_xml(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& attrs) {
  return "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) + "\" " +
         attrs + "/>\n";
}

std::string polyline(const std::vector<std::pair<double, double>>& points, const std::string& attrs) {
  std::string pts;
  for (const auto& [x, y] : points) pts += num(x) + "," + num(y) + " ";
  return "<polyline fill=\"none\" points=\"" + pts + "\" " + attrs + "/>\n";
}

std::string header(double width, double height, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" + num(height) +
         "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" +
         text(width / 2, 20, title, "text-anchor=\"middle\" font-size=\"15\"");
}

const std::string& color(size_t i) {
  static const std::array<std::string, 6> colors = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  return colors[i % colors.size()];
}

}  // namespace baichuan::svg
