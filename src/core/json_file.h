// JSON text and files (nlohmann-json) with parse errors that name their source.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace baichuan {

// The one wording of JSON errors: Error "<what>: invalid JSON: <parser message>".
nlohmann::json parse_json(std::string_view text, const std::string& what);
// parse_json of text that must hold an object: Error "<what>: not a JSON object" otherwise.
nlohmann::json parse_json_object(std::string_view text, const std::string& what);
// parse_json of the file's text, named by its path.
nlohmann::json read_json_file(const std::string& path);

}  // namespace baichuan
