#include "core/json_file.h"

#include "core/error.h"
#include "core/mapped_file.h"

namespace baichuan {

nlohmann::json parse_json(std::string_view text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": invalid JSON: ", e.what());
  }
}

nlohmann::json parse_json_object(std::string_view text, const std::string& what) {
  nlohmann::json j = parse_json(text, what);
  if (!j.is_object()) fail(what, ": not a JSON object");
  return j;
}

nlohmann::json read_json_file(const std::string& path) { return parse_json(read_text_file(path), path); }

}  // namespace baichuan
