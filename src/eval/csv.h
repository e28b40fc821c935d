// An RFC 4180 CSV reader for the benchmark files (C-Eval, MMLU, CMMLU, AGIEval's few-shot sheet):
// quoted fields may hold commas, newlines and doubled quotes; rows end in LF or CRLF; a UTF-8 BOM is
// skipped. Field bytes are kept as they are (a CRLF inside a quoted field stays CRLF).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace baichuan::eval {

struct CsvRow {
  std::vector<std::string> fields;
  size_t line = 0;  // 1-based line on which the row starts, for error messages
};

// `what` names the source in errors ("mmlu/val/anatomy_val.csv"). Blank lines are skipped.
std::vector<CsvRow> parse_csv(std::string_view text, const std::string& what);
std::vector<CsvRow> read_csv(const std::string& path);

}  // namespace baichuan::eval
