// A request the server refuses, and the JSON that tells the client why: OpenAI's error object.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace baichuan::server {

// The HTTP status and the fields of OpenAI's error object.
struct ApiError : Error {
  ApiError(int status, const std::string& message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error");
  int status;
  std::string param, code, type;
};

// A 400 for one field of a request body: "'<name>' <message>", with the field as the error's param.
[[noreturn]] void bad_field(const std::string& name, const std::string& message);

// {"error": {"message", "type", "param", "code"}}; empty param/code become null.
nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param = {},
                          const std::string& code = {});
nlohmann::json error_body(const ApiError& e);

}  // namespace baichuan::server
