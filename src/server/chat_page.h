// The chat page served at GET /: one self-contained HTML document (inline CSS and JS, nothing
// fetched from elsewhere) that streams answers from /v1/chat/completions.
//
// DOM contract (a browser test depends on it): textarea#prompt, button#send (Enter without Shift
// also sends), button#reset, input#api-key (kept in localStorage, sent as a Bearer token when not
// empty), input#max-tokens (default 256), input#temperature; #messages holds div.message.user and
// div.message.assistant; the assistant div being streamed has class "streaming", and when the
// stream ends it gets data-finish-reason and loses "streaming"; errors appear as div.message.error.
#pragma once
#include <string_view>

namespace baichuan::server {

std::string_view chat_page_html();

}  // namespace baichuan::server
