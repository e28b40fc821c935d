#include "eval/csv.h"

#include "core/error.h"
#include "core/mapped_file.h"

namespace baichuan::eval {

std::vector<CsvRow> parse_csv(std::string_view text, const std::string& what) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;
  size_t line = 1;
  size_t i = 0;
  const size_t n = text.size();
  bool row_started = false;  // distinguishes a blank line from a row holding one empty field

  auto end_field = [&] {
    row.fields.push_back(std::move(field));
    field.clear();
  };
  auto end_row = [&] {
    end_field();
    if (row_started) rows.push_back(std::move(row));
    row = CsvRow{};
    row_started = false;
  };

  while (i < n) {
    if (!row_started) {
      row.line = line;
      // A blank line (LF or CRLF alone) is no row.
      if (text[i] == '\n') { ++line; ++i; continue; }
      if (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') { ++line; i += 2; continue; }
      row_started = true;
    }
    char c = text[i];
    if (c == '"' && field.empty()) {
      // A quoted field: runs to the quote that is not doubled.
      const size_t start_line = line;
      ++i;
      for (;;) {
        if (i >= n) fail(what, ":", start_line, ": unterminated quoted field");
        if (text[i] == '"') {
          if (i + 1 < n && text[i + 1] == '"') { field += '"'; i += 2; continue; }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field += text[i++];
      }
      if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
        fail(what, ":", line, ": unexpected character after the closing quote of a field");
      continue;
    }
    if (c == ',') { end_field(); ++i; continue; }
    if (c == '\n') { end_row(); ++line; ++i; continue; }
    if (c == '\r' && i + 1 < n && text[i + 1] == '\n') { end_row(); ++line; i += 2; continue; }
    if (c == '\r') { end_row(); ++line; ++i; continue; }  // old Mac line end
    field += c;  // a stray quote inside an unquoted field is kept literally, as Python's csv does
    ++i;
  }
  if (row_started) end_row();
  return rows;
}

std::vector<CsvRow> read_csv(const std::string& path) { return parse_csv(read_text_file(path), path); }

}  // namespace baichuan::eval
