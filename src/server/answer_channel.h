// One generation's answer on its way from the scheduler to the client: the channel the scheduler's
// callbacks fill (on the scheduler's thread), and the handler thread's side that waits on it and
// writes the answer whole or as server-sent events. A slow or vanished client never holds up the
// batch: the handler only waits for pieces, and cancels the generation when its client is gone.
#pragma once
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "generate/decoding.h"
#include "server/api_error.h"
#include "server/client_connection.h"
#include "server/openai_response.h"
#include "server/scheduler.h"

namespace baichuan::server {

// How often a waiting answer checks its client.
inline constexpr auto kAnswerPollInterval = std::chrono::milliseconds(100);

// One request's events handed from the scheduler's thread to the handler thread waiting for them.
// Shared by both sides, so it outlives whichever lets go first.
struct AnswerChannel {
  struct Piece {
    std::string text;
    std::vector<TokenLogprobs> logprobs;  // of the tokens whose text this piece completes
  };
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Piece> pieces;
  std::vector<TokenLogprobs> pending;        // logprobs of tokens whose text is still held back
  std::vector<TokenLogprobs> prompt_scores;  // echo: the prompt tokens' logprobs
  bool done = false;
  GenerateResult result;
  std::atomic<bool> abandoned{false};  // the client is gone: the next token ends the generation

  static RequestEvents events(const std::shared_ptr<AnswerChannel>& channel);
  // For GenerateOptions::on_logprobs of a streamed answer.
  static std::function<void(const TokenLogprobs&, bool)> logprobs_hook(const std::shared_ptr<AnswerChannel>& channel);
};

// What an answer carries besides the generated text; for a stream, from one call of its content
// provider to the next.
struct AnswerState {
  Endpoint endpoint = Endpoint::ChatCompletions;
  ResponseMeta meta;
  bool include_usage = false;
  int64_t prompt_tokens = 0;
  bool role_sent = false;
  std::optional<LogprobsWriter> logprobs;  // when the request asked for them
  bool echo_pending = false;               // completions with echo: the prompt is the first chunk
  std::string echo;
  int32_t first_prompt_id = -1;
};

// Token counts for the request log line of the connection being served (completion -1: not yet known).
void record_usage(int64_t prompt_tokens, int64_t completion_tokens);

// The error answer of a generation that ended neither by "stop" nor by "length".
ApiError generation_failure(const GenerateResult& result);

// Waits for the whole answer, looking at `client`'s socket between waits: nullopt once the client has
// closed the connection (the caller cancels the generation, so the slot is free by the next step
// instead of when the answer would have been written to nobody).
std::optional<GenerateResult> wait_for_whole_answer(AnswerChannel& channel, const ClientConnection* client);

// The body of a whole answer; throws generation_failure() for one that did not end by stop or length.
nlohmann::json whole_answer_json(AnswerState& answer, const GenerateResult& result);

// One call of a stream's content provider: waits up to kAnswerPollInterval for pieces, writes them as
// chunks, and checks that the client is still there (calling `abandon` when it is not). Returns false
// to end the response.
bool provide_stream_chunk(AnswerState& st, AnswerChannel& channel, const std::function<void()>& abandon,
                          httplib::DataSink& sink);

}  // namespace baichuan::server
