#include "server/answer_channel.h"

namespace baichuan::server {

using nlohmann::json;

RequestEvents AnswerChannel::events(const std::shared_ptr<AnswerChannel>& channel) {
  RequestEvents e;
  e.on_token = [channel](int32_t, std::string_view text) {
    if (!text.empty()) {
      std::lock_guard lock(channel->mutex);
      channel->pieces.push_back({std::string(text), std::move(channel->pending)});
      channel->pending.clear();
    }
    channel->changed.notify_all();
    return !channel->abandoned.load();
  };
  e.on_done = [channel](const GenerateResult& r) {
    {
      std::lock_guard lock(channel->mutex);
      if (!channel->pending.empty()) channel->pieces.push_back({"", std::move(channel->pending)});
      channel->result = r;
      channel->done = true;
    }
    channel->changed.notify_all();
  };
  return e;
}

std::function<void(const TokenLogprobs&, bool)> AnswerChannel::logprobs_hook(
    const std::shared_ptr<AnswerChannel>& channel) {
  return [channel](const TokenLogprobs& l, bool prompt) {
    std::lock_guard lock(channel->mutex);
    (prompt ? channel->prompt_scores : channel->pending).push_back(l);
  };
}

void record_usage(int64_t prompt_tokens, int64_t completion_tokens) {
  if (ClientConnection* c = ClientConnection::current()) c->set_usage(prompt_tokens, completion_tokens);
}

ApiError generation_failure(const GenerateResult& r) {
  if (r.finish_reason == FinishReason::Cancelled)
    return ApiError(503, "the generation was cancelled: the server is shutting down", {}, "server_shutting_down",
                    "server_error");
  return ApiError(500, cat("the generation failed: ", r.text), {}, {}, "server_error");
}

std::optional<GenerateResult> wait_for_whole_answer(AnswerChannel& channel, const ClientConnection* client) {
  for (;;) {
    {
      std::unique_lock lock(channel.mutex);
      if (channel.changed.wait_for(lock, kAnswerPollInterval, [&] { return channel.done; })) return channel.result;
    }
    if (client && client->peer_gone()) return std::nullopt;
  }
}

json whole_answer_json(AnswerState& answer, const GenerateResult& result) {
  if (result.finish_reason != FinishReason::Stop && result.finish_reason != FinishReason::Length)
    throw generation_failure(result);
  json logprobs = nullptr;
  if (answer.logprobs) {
    if (answer.echo_pending) {
      LogprobsWriter::append(logprobs, answer.logprobs->unscored(answer.first_prompt_id));
      LogprobsWriter::append(logprobs, answer.logprobs->piece(result.prompt_logprobs));
    }
    LogprobsWriter::append(logprobs, answer.logprobs->piece(result.logprobs));
  }
  return completion_json(answer.endpoint, answer.meta, answer.echo + result.text,
                         finish_reason_name(result.finish_reason), answer.prompt_tokens,
                         static_cast<int64_t>(result.tokens.size()), logprobs);
}

bool provide_stream_chunk(AnswerState& st, AnswerChannel& channel, const std::function<void()>& abandon,
                          httplib::DataSink& sink) {
  auto write = [&](const std::string& s) {
    if (sink.write(s.data(), s.size())) return true;
    abandon();
    return false;
  };
  auto chunk = [&](const std::optional<std::string>& content, const json& logprobs) {
    return sse_event(chunk_json(st.endpoint, st.meta, std::nullopt, content, "", st.include_usage, logprobs));
  };
  if (!st.role_sent) {  // OpenAI's first chat chunk names the role, before any token exists
    st.role_sent = true;
    return write(sse_event(chunk_json(st.endpoint, st.meta, "assistant", "", "", st.include_usage)));
  }
  std::deque<AnswerChannel::Piece> pieces;
  std::vector<TokenLogprobs> prompt_scores;
  bool done = false;
  GenerateResult result;
  {
    std::unique_lock lock(channel.mutex);
    channel.changed.wait_for(lock, kAnswerPollInterval, [&] { return channel.done || !channel.pieces.empty(); });
    pieces.swap(channel.pieces);
    done = channel.done;  // on_done follows every on_token, so no piece is left behind
    if (done) result = channel.result;
    if (st.echo_pending) prompt_scores = channel.prompt_scores;
  }
  // The echoed prompt goes first; with logprobs, once every prompt token is scored (before any
  // token is generated).
  if (st.echo_pending && (!st.logprobs || done || !pieces.empty())) {
    st.echo_pending = false;
    json logprobs = nullptr;
    if (st.logprobs) {
      LogprobsWriter::append(logprobs, st.logprobs->unscored(st.first_prompt_id));
      LogprobsWriter::append(logprobs, st.logprobs->piece(prompt_scores));
    }
    if (!write(chunk(st.echo, logprobs))) return false;
  }
  for (const auto& piece : pieces) {
    const json logprobs = st.logprobs ? st.logprobs->piece(piece.logprobs) : json(nullptr);
    if (!write(chunk(piece.text, logprobs))) return false;
  }
  if (!done) {
    if (pieces.empty() && !sink.is_writable()) {
      abandon();
      return false;
    }
    return true;
  }
  record_usage(st.prompt_tokens, static_cast<int64_t>(result.tokens.size()));
  std::string tail;
  if (result.finish_reason == FinishReason::Stop || result.finish_reason == FinishReason::Length) {
    tail = sse_event(
        chunk_json(st.endpoint, st.meta, std::nullopt, std::nullopt, finish_reason_name(result.finish_reason),
                   st.include_usage));
    if (st.include_usage)
      tail += sse_event(
          usage_chunk_json(st.endpoint, st.meta, st.prompt_tokens, static_cast<int64_t>(result.tokens.size())));
  } else {
    tail = sse_event(error_body(generation_failure(result)));
  }
  tail += kSseDone;
  if (!write(tail)) return false;
  sink.done();
  return true;
}


}  // namespace baichuan::server
