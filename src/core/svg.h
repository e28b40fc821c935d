// The pieces of a standalone SVG chart (no scripts, no external resources), shared by eval's accuracy
// charts and the trainer's loss curve: XML escaping, numbers with one decimal, text, lines, polylines,
// the document header and a palette.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace baichuan::svg {

std::string escape_xml(const std::string& s);
std::string num(double v);  // one decimal: enough for pixel coordinates
std::string text(double x, double y, const std::string& s, const std::string& attrs = "");
std::string line(double x1, double y1, double x2, double y2, const std::string& attrs);
std::string polyline(const std::vector<std::pair<double, double>>& points, const std::string& attrs);
// The opening <svg> element, a white background and a centred title; close it with "</svg>\n".
std::string header(double width, double height, const std::string& title);
const std::string& color(size_t i);  // a palette that cycles

}  // namespace baichuan::svg
