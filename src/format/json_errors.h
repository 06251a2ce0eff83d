// simdjson error codes as text for stload's messages.
#pragma once

#include <simdjson.h>

#include <string>

namespace stload::format {

// simdjson's own description, e.g. "The input is not valid UTF-8".
inline std::string JsonErrorText(simdjson::error_code err) { return simdjson::error_message(err); }

}  // namespace stload::format
