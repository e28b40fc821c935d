#include "train/belle_records.h"

#include <sys/stat.h>

#include <cstring>

#include "core/error.h"

namespace baichuan::train {

using nlohmann::json;

InputLayout parse_input_layout(const std::string& name) {
  if (name == "auto") return InputLayout::Auto;
  if (name == "belle") return InputLayout::Belle;
  if (name == "alpaca") return InputLayout::Alpaca;
  if (name == "text") return InputLayout::Text;
  fail("unknown input layout '", name, "' (auto, belle, alpaca or text)");
}

const char* layout_name(InputLayout layout) {
  switch (layout) {
    case InputLayout::Belle: return "belle";
    case InputLayout::Alpaca: return "alpaca";
    case InputLayout::Text: return "text";
    case InputLayout::Auto: break;
  }
  return "auto";
}

namespace {

// "a number 3", "an object", ... for messages about a value of the wrong type.
std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return cat("a boolean ", v.dump());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return cat("a number ", v.dump());
    case json::value_t::string: {
      std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
      if (s.size() <= 40) return "a string " + s;
      size_t cut = 36;
      while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
      return "a string " + s.substr(0, cut) + "...\"";
    }
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a binary value";
  }
}

const json& member(const json& object, const std::string& key, const std::string& path) {
  auto it = object.find(key);
  if (it == object.end()) throw RecordError(path.empty() ? key : path + "." + key, "missing");
  return *it;
}

std::string string_at(const json& object, const std::string& key, const std::string& path) {
  const json& v = member(object, key, path);
  if (!v.is_string()) throw RecordError(path.empty() ? key : path + "." + key, "expected a string, got " + describe(v));
  return v.get<std::string>();
}

std::string record_id(const json& record, int64_t number) {
  auto it = record.find("id");
  if (it == record.end() || it->is_null()) return std::to_string(number - 1);  // Alpaca data has no ids
  if (it->is_string()) return it->get<std::string>();
  return it->dump();  // the official script never reads ids: any value names the record
}

Conversation belle_conversation(const json& record, int64_t number) {
  Conversation c;
  c.id = record_id(record, number);
  const json& turns = member(record, "conversations", "");
  if (!turns.is_array()) throw RecordError("conversations", "expected an array of turns, got " + describe(turns));
  if (turns.empty()) throw RecordError("conversations", "empty: a record needs at least one turn");
  c.turns.reserve(turns.size());
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string path = cat("conversations[", i, "]");
    const json& t = turns[i];
    if (!t.is_object()) throw RecordError(path, "expected an object {\"from\", \"value\"}, got " + describe(t));
    c.turns.push_back({string_at(t, "from", path), string_at(t, "value", path)});
  }
  return c;
}

Conversation alpaca_conversation(const json& record, int64_t number) {
  Conversation c;
  c.id = record_id(record, number);
  if (auto h = record.find("history"); h != record.end() && !h->is_null()) {
    if (!h->is_array()) throw RecordError("history", "expected an array of [query, answer] pairs, got " + describe(*h));
    for (size_t i = 0; i < h->size(); ++i) {
      const json& pair = (*h)[i];
      const std::string path = cat("history[", i, "]");
      if (!pair.is_array() || pair.size() != 2)
        throw RecordError(path, "expected a [query, answer] pair, got " + describe(pair));
      for (size_t k = 0; k < 2; ++k)
        if (!pair[k].is_string()) throw RecordError(cat(path, "[", k, "]"), "expected a string, got " + describe(pair[k]));
      c.turns.push_back({"human", pair[0].get<std::string>()});
      c.turns.push_back({"gpt", pair[1].get<std::string>()});
    }
  }
  std::string query = string_at(record, "instruction", "");
  if (auto in = record.find("input"); in != record.end() && !in->is_null()) {
    if (!in->is_string()) throw RecordError("input", "expected a string, got " + describe(*in));
    if (!in->get_ref<const std::string&>().empty()) query += "\n" + in->get<std::string>();
  }
  c.turns.push_back({"human", std::move(query)});
  c.turns.push_back({"gpt", string_at(record, "output", "")});
  return c;
}

Conversation text_record(const json& record, int64_t number) {
  Conversation c;
  c.id = record_id(record, number);
  c.turns.push_back({kTextTurn, string_at(record, "text", "")});
  return c;
}

// Builds each element of a top-level JSON array as a json value and hands it on, so only one record
// is in memory at a time (nlohmann's SAX interface; the DOM parser would build the whole array).
class ArrayElementSax {
 public:
  using Emit = std::function<void(json&&)>;
  ArrayElementSax(const std::string& path, Emit emit) : path_(path), emit_(std::move(emit)) {}

  bool null() { return value(json()); }
  bool boolean(bool b) { return value(json(b)); }
  bool number_integer(json::number_integer_t n) { return value(json(n)); }
  bool number_unsigned(json::number_unsigned_t n) { return value(json(n)); }
  bool number_float(json::number_float_t x, const json::string_t&) { return value(json(x)); }
  bool string(json::string_t& s) { return value(json(std::move(s))); }
  bool binary(json::binary_t&) { return value(json()); }  // not produced by the JSON text parser
  bool start_object(std::size_t) { return open(json::object()); }
  bool key(json::string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t) {
    if (!in_top_array_ && stack_.empty()) {
      in_top_array_ = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() {
    if (stack_.empty()) {
      in_top_array_ = false;  // the top-level array is done
      return true;
    }
    return close();
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // The parser's message carries the line and column.
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    fail(path_, ": invalid JSON in record ", elements_ + 1, " (byte ", position, "): ", what);
  }

 private:
  bool value(json&& v) {
    if (stack_.empty()) {
      if (!in_top_array_) fail(path_, ": expected a JSON array of records (or JSON Lines), found ", describe(v));
      ++elements_;
      emit_(std::move(v));
      return true;
    }
    insert(std::move(v));
    return true;
  }
  bool open(json&& container) {
    if (stack_.empty()) {
      if (!in_top_array_) fail(path_, ": expected a JSON array of records (or JSON Lines), found ", describe(container));
      current_ = std::move(container);
      stack_.push_back(&current_);
    } else {
      stack_.push_back(&insert(std::move(container)));
    }
    return true;
  }
  bool close() {
    stack_.pop_back();
    if (stack_.empty()) {
      ++elements_;
      emit_(std::move(current_));
      current_ = json();
    }
    return true;
  }
  // Adds v to the innermost open container; the reference stays valid until the next insert there,
  // which only happens after v's own contents are complete.
  json& insert(json&& v) {
    json& parent = *stack_.back();
    if (parent.is_object()) return parent[key_] = std::move(v);
    parent.push_back(std::move(v));
    return parent.back();
  }

  const std::string& path_;
  Emit emit_;
  bool in_top_array_ = false;
  std::vector<json*> stack_;
  json current_;
  std::string key_;
  int64_t elements_ = 0;
};

}  // namespace

InputLayout detect_layout(const json& record) {
  if (record.is_object()) {
    if (record.contains("conversations")) return InputLayout::Belle;
    if (record.contains("instruction")) return InputLayout::Alpaca;
    if (record.contains("text")) return InputLayout::Text;
  }
  return InputLayout::Auto;
}

Conversation conversation_from_json(const json& record, InputLayout layout, int64_t number) {
  if (!record.is_object()) throw RecordError("", "expected an object, got " + describe(record));
  if (layout == InputLayout::Alpaca) return alpaca_conversation(record, number);
  if (layout == InputLayout::Belle) return belle_conversation(record, number);
  if (layout == InputLayout::Text) return text_record(record, number);
  throw RecordError("", "neither the BELLE layout ('conversations'), Alpaca ('instruction') nor text ('text'); see --layout");
}

ConversationReader::ConversationReader(std::string path, InputLayout layout)
    : path_(std::move(path)), layout_(layout), buffer_(1 << 20) {
  struct stat st {};
  if (stat(path_.c_str(), &st) != 0) fail(path_, ": cannot open: ", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(path_, ": is a directory, not a JSON file");
  file_size_ = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;  // 0: a pipe, size unknown
  in_.rdbuf()->pubsetbuf(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
  in_.open(path_, std::ios::binary);
  if (!in_) fail(path_, ": cannot open: ", std::strerror(errno));
  // Looks ahead without seeking back, so a pipe works too. A UTF-8 byte order mark is not JSON; skip
  // it as Python's json.load of a 'utf-8-sig' file would (0xEF cannot start JSON anyway).
  if (in_.peek() == 0xEF) {
    char bom[3] = {};
    if (!in_.read(bom, 3) || std::memcmp(bom, "\xEF\xBB\xBF", 3) != 0) fail(path_, ": not UTF-8 JSON (starts with byte 0xEF)");
  }
  // JSON Lines starts with an object, a JSON array with '['; leading blank lines still count as lines.
  for (int c; (c = in_.peek()) == ' ' || c == '\t' || c == '\r' || c == '\n';) {
    if (c == '\n') ++blank_lines_;
    in_.get();
  }
  if (in_.peek() == std::char_traits<char>::eof()) fail(path_, ": empty file, expected a JSON array of records or JSON Lines");
  json_lines_ = in_.peek() == '{';
}

uint64_t ConversationReader::bytes_read() {
  if (file_size_ == 0) return 0;
  auto pos = in_.tellg();
  return pos < 0 ? file_size_ : static_cast<uint64_t>(pos);
}

void ConversationReader::read(const std::function<void(Conversation&&)>& on_record,
                              const std::function<void(const BadRecord&)>& on_bad) {
  if (json_lines_)
    read_lines(on_record, on_bad);
  else
    read_array(on_record, on_bad);
}

void ConversationReader::take(const json& record, int64_t number, const std::string& where,
                              const std::function<void(Conversation&&)>& on_record,
                              const std::function<void(const BadRecord&)>& on_bad) {
  try {
    InputLayout layout = layout_ == InputLayout::Auto ? detect_layout(record) : layout_;
    Conversation c = conversation_from_json(record, layout, number);
    layout_ = layout;  // the first good record fixes the layout for the rest
    on_record(std::move(c));
  } catch (const RecordError& e) {
    std::string id;
    if (record.is_object())
      if (auto it = record.find("id"); it != record.end() && (it->is_string() || it->is_number_integer()))
        id = " (id " + it->dump(-1, ' ', false, json::error_handler_t::replace) + ")";
    const std::string field = e.field.empty() ? "" : "field '" + e.field + "': ";
    BadRecord bad{number, cat(path_, ": ", where, id, ": ", field, e.problem)};
    if (!on_bad) throw Error(bad.message);
    on_bad(bad);
  }
}

void ConversationReader::read_array(const std::function<void(Conversation&&)>& on_record,
                                    const std::function<void(const BadRecord&)>& on_bad) {
  int64_t number = 0;
  ArrayElementSax sax(path_, [&](json&& record) {
    ++number;
    take(record, number, cat("record ", number), on_record, on_bad);
  });
  json::sax_parse(in_, &sax);
}

void ConversationReader::read_lines(const std::function<void(Conversation&&)>& on_record,
                                    const std::function<void(const BadRecord&)>& on_bad) {
  std::string line;
  int64_t line_number = blank_lines_, number = 0;
  while (std::getline(in_, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++number;
    const std::string where = cat("line ", line_number, " (record ", number, ")");
    json record;
    try {
      record = json::parse(line);
    } catch (const json::exception& e) {
      std::string what = e.what();
      if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
      BadRecord bad{number, cat(path_, ": ", where, ": invalid JSON: ", what)};
      if (!on_bad) throw Error(bad.message);
      on_bad(bad);
      continue;
    }
    take(record, number, where, on_record, on_bad);
  }
  if (in_.bad()) fail(path_, ": read failed after line ", line_number);
}

}  // namespace baichuan::train
