#include "server/api_error.h"

namespace baichuan::server {

using nlohmann::json;

ApiError::ApiError(int status_code, const std::string& message, std::string param_name, std::string error_code,
                   std::string error_type)
    : Error(message),
      status(status_code),
      param(std::move(param_name)),
      code(std::move(error_code)),
      type(std::move(error_type)) {}

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

json error_body(const ApiError& e) { return error_body(e.what(), e.type, e.param, e.code); }

[[noreturn]] void bad_field(const std::string& name, const std::string& message) {
  throw ApiError(400, cat("'", name, "' ", message), name);
}

}  // namespace baichuan::server
