#include "train/dataset_json.h"

#include <charconv>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace baichuan::train {

namespace {

void append_int(std::string& out, int32_t v) {
  char digits[16];
  auto r = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, r.ptr);
}

void append_ints(std::string& out, std::span<const int32_t> values) {
  out += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    append_int(out, values[i]);
  }
  out += ']';
}

void append_u16_escape(std::string& out, uint32_t unit) {
  static const char* hex = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += hex[(unit >> shift) & 0xF];
}

}  // namespace

std::string python_json_string(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20 || c == 0x7F)  // Python escapes everything outside ' '..'~'
            append_u16_escape(out, c);
          else
            out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    // A UTF-8 sequence (the strings come from nlohmann's parser, which only accepts valid UTF-8).
    const int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    uint32_t cp = c & (0x3F >> extra);
    for (int k = 1; k <= extra && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += static_cast<size_t>(extra) + 1;
    if (cp >= 0x10000) {  // a surrogate pair, as Python writes characters beyond the BMP
      cp -= 0x10000;
      append_u16_escape(out, 0xD800 + (cp >> 10));
      append_u16_escape(out, 0xDC00 + (cp & 0x3FF));
    } else {
      append_u16_escape(out, cp);
    }
  }
  return out + "\"";
}

JsonDatasetWriter::JsonDatasetWriter(const std::string& path) : file_(path) { file_.write("["); }

void JsonDatasetWriter::add(const std::string& id, std::span<const int32_t> input_ids, std::span<const int32_t> labels) {
  buffer_.clear();
  if (records_++) buffer_ += ", ";
  buffer_ += "{\"id\": ";
  buffer_ += python_json_string(id);
  buffer_ += ", \"input_ids\": ";
  append_ints(buffer_, input_ids);
  buffer_ += ", \"labels\": ";
  append_ints(buffer_, labels);
  buffer_ += '}';
  file_.write(buffer_);
}

void JsonDatasetWriter::commit() {
  file_.write("]");  // json.dumps writes no newline at the end
  file_.commit();
}

namespace {

using nlohmann::json;

// Streams a top-level list of records into TokenRows: the integers of "input_ids" and "labels" go
// straight into the arrays, so the file is never held as a json document.
class DatasetSax {
 public:
  DatasetSax(const std::string& path, TokenRows& rows) : path_(path), rows_(rows) {}

  bool null() { return other("null"); }
  bool boolean(bool) { return other("a boolean"); }
  bool number_integer(json::number_integer_t n) { return integer(n); }
  bool number_unsigned(json::number_unsigned_t n) {
    // Anything past int64 is out of int32 range as well; integer() reports it.
    return integer(n > static_cast<json::number_unsigned_t>(std::numeric_limits<int64_t>::max())
                       ? std::numeric_limits<int64_t>::max()
                       : static_cast<int64_t>(n));
  }
  bool number_float(json::number_float_t, const json::string_t& s) { return other("the number " + s); }
  bool string(json::string_t&) { return other("a string"); }
  bool binary(json::binary_t&) { return other("a binary value"); }
  bool start_object(std::size_t) {
    ++depth_;
    if (depth_ == 1) bad("expected a JSON list of records, found an object");
    if (depth_ >= 3 && field_) bad(cat("record ", record_, ": field '", field_name_, "' holds an object"));
    if (depth_ == 2) {
      ++record_;
      seen_ids_ = seen_labels_ = false;
    }
    return true;
  }
  bool key(json::string_t& k) {
    if (depth_ == 2) {
      field_ = k == "input_ids" ? &rows_.input_ids : k == "labels" ? &rows_.labels : nullptr;
      if (field_) {
        bool& seen = field_ == &rows_.input_ids ? seen_ids_ : seen_labels_;
        if (seen) bad(cat("record ", record_, ": field '", k, "' appears twice"));
        seen = true;
      }
      field_name_ = k;
    }
    return true;
  }
  bool end_object() {
    if (depth_ == 2) {
      if (!seen_ids_ || !seen_labels_)
        bad(cat("record ", record_, ": field '", seen_ids_ ? "labels" : "input_ids", "' is missing"));
      field_ = nullptr;
    }
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    ++depth_;
    if (depth_ == 2) bad(cat("record ", record_ + 1, ": expected an object {\"input_ids\", \"labels\"}, found an array"));
    if (depth_ == 3) {
      if (!field_) return true;  // an array under another key: skipped
      array_start_ = static_cast<int64_t>(field_->size());
    }
    if (depth_ > 3 && field_) bad(cat("record ", record_, ": field '", field_name_, "' holds a nested array"));
    return true;
  }
  bool end_array() {
    if (depth_ == 3 && field_) {
      const int64_t n = static_cast<int64_t>(field_->size()) - array_start_;
      if (n == 0) bad(cat("record ", record_, ": field '", field_name_, "' is empty"));
      if (rows_.row_length == 0) rows_.row_length = n;
      if (n != rows_.row_length)
        bad(cat("record ", record_, ": field '", field_name_, "' has ", n, " values, the first record has ",
                rows_.row_length));
      field_ = nullptr;
    }
    --depth_;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    fail(path_, ": invalid JSON in record ", record_ + (depth_ >= 2 ? 0 : 1), " (byte ", position, "): ", what);
  }

 private:
  bool integer(int64_t n) {
    if (depth_ == 0) bad("expected a JSON list of records");
    if (depth_ == 3 && field_) {
      if (n < std::numeric_limits<int32_t>::min() || n > std::numeric_limits<int32_t>::max())
        bad(cat("record ", record_, ": field '", field_name_, "' holds ", n, ", outside int32"));
      field_->push_back(static_cast<int32_t>(n));
    }
    if (depth_ == 2 && (field_name_ == "input_ids" || field_name_ == "labels"))
      bad(cat("record ", record_, ": field '", field_name_, "' is a number, expected an array"));
    if (depth_ == 1) bad(cat("record ", record_ + 1, ": expected an object, found a number"));
    return true;
  }
  bool other(const std::string& what) {
    if (depth_ == 0) bad("expected a JSON list of records, found " + what);
    if (depth_ == 1) bad(cat("record ", record_ + 1, ": expected an object, found ", what));
    if ((depth_ == 2 || depth_ == 3) && field_) bad(cat("record ", record_, ": field '", field_name_, "' holds ", what));
    if (depth_ == 2 && (field_name_ == "input_ids" || field_name_ == "labels"))
      bad(cat("record ", record_, ": field '", field_name_, "' is ", what, ", expected an array"));
    return true;
  }
  [[noreturn]] void bad(const std::string& what) { fail(path_, ": ", what); }

  const std::string& path_;
  TokenRows& rows_;
  int depth_ = 0;
  int64_t record_ = 0;
  std::vector<int32_t>* field_ = nullptr;
  std::string field_name_;
  int64_t array_start_ = 0;
  bool seen_ids_ = false, seen_labels_ = false;
};

}  // namespace

TokenRows read_json_dataset(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  TokenRows rows;
  DatasetSax sax(path, rows);
  json::sax_parse(in, &sax);
  if (rows.input_ids.empty()) fail(path, ": no records");
  return rows;
}

}  // namespace baichuan::train
