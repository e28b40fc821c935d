#include "model_handle.h"

#include <pybind11/stl.h>

#include <chrono>
#include <filesystem>

#include "conversions.h"
#include "core/error.h"
#include "generate/chat_prompt.h"
#include "generate/generation_defaults.h"
#include "kernels/cpu.h"
#include "kernels/matmul_precision.h"
#include "model/lora_option.h"
#include "tokenizer/chat_template.h"

namespace baichuan::python {

ModelHandle::ModelHandle(const std::string& path, std::optional<int> threads, std::optional<int64_t> context,
                         const std::string& kv_type, std::optional<std::string> config_path,
                         std::optional<std::string> tokenizer_path, std::optional<std::string> position,
                         py::handle lora) {
  // Arguments first: a typo should not cost a model load. The kernel environment variables are
  // checked here as the CLI checks them at start-up, so that a misspelled one is not silently ignored.
  try {
    kernels::check_backend_request();
    kernels::check_matmul_precision_request();
  } catch (const Error& e) {
    raise(PyExc_ValueError, e.what());
  }
  if (threads && *threads <= 0) raise(PyExc_ValueError, cat("threads must be > 0, got ", *threads));
  try {
    threads_ = ThreadPool::threads_for_request(threads.value_or(0));
  } catch (const Error& e) {
    raise(PyExc_ValueError, e.what());
  }
  if (context && *context <= 0) raise(PyExc_ValueError, cat("context must be > 0, got ", *context));
  kv_type_ = parse_kv_type(kv_type);
  LoadOptions options;
  options.config_path = config_path;
  options.tokenizer_path = tokenizer_path;
  if (position) {
    options.position = parse_position_encoding(*position);
    if (!options.position) raise(PyExc_ValueError, cat("position must be 'rope' or 'alibi', got '", *position, "'"));
  }
  std::vector<std::string> loras;  // lora=: one "ADAPTER[:SCALE]" or a list of them
  if (py::isinstance<py::str>(lora)) {
    loras.push_back(lora.cast<std::string>());
  } else if (!lora.is_none()) {
    try {
      loras = lora.cast<std::vector<std::string>>();
    } catch (const py::cast_error&) {
      raise(PyExc_TypeError, "lora must be 'ADAPTER[:SCALE]' or a list of them");
    }
  }
  if (!std::filesystem::exists(path)) raise(PyExc_FileNotFoundError, cat(path, ": no such file or directory"));
  try {
    py::gil_scoped_release nogil;
    ThreadPool pool(threads_);  // prepares the weights (head norms, packing)
    std::unique_ptr<Model> model = load_model(path, options, &pool);
    // Adapters applied unmerged, exactly as the CLI's --lora ADAPTER[:SCALE] (one parser for both).
    const auto adapters = read_lora_options(loras, model->config());
    if (!adapters.empty())
      model->attach_lora(std::make_shared<const LoraDeltas>(adapters, model->config(), model->checkpoint().qk_interleaved));
    model_ = std::move(model);
  } catch (const Error& e) {
    raise(PyExc_OSError, e.what());  // the checkpoint cannot be used as it is
  }
  path_ = path;
  loras_ = loras;
  context_ = context ? *context : default_context(model_->config());  // as the CLI
  idle_.push_back(new_session(kv_type_));  // checks the KV type against the model
}

py::object ModelHandle::last_result() {
  std::optional<GenerateResult> last;
  {
    py::gil_scoped_release nogil;
    std::lock_guard lock(mutex_);
    last = last_;
  }
  return last ? py::object(result_dict(*last)) : py::none();
}

void ModelHandle::set_last_result(const GenerateResult& r) {
  std::lock_guard lock(mutex_);
  last_ = r;
}

std::string ModelHandle::kv_type() {
  py::gil_scoped_release nogil;
  std::lock_guard lock(mutex_);
  return std::string(dtype_name(kv_type_));
}

void ModelHandle::set_kv_type(const std::string& name) {
  const DType type = parse_kv_type(name);
  py::gil_scoped_release nogil;
  KvCache probe(model_->config(), 1, type);  // a type this model cannot use leaves everything as it was
  std::lock_guard lock(mutex_);
  kv_type_ = type;
  ++epoch_;
  idle_.clear();  // sessions in use are dropped when they come back
}

void ModelHandle::reset() {
  py::gil_scoped_release nogil;
  std::lock_guard lock(mutex_);
  ++epoch_;  // sessions in use forget their cache when they come back
  for (auto& s : idle_) forget(*s);
}

SessionLease ModelHandle::take_session(std::span<const int32_t> prompt) {
  py::gil_scoped_release nogil;
  DType kv_type;
  {
    std::lock_guard lock(mutex_);
    auto best = idle_.end();
    size_t best_shared = 0;
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      const size_t shared = (*it)->sequence.shared_prefix(prompt);
      if (best == idle_.end() || shared > best_shared) best = it, best_shared = shared;
    }
    if (best != idle_.end()) {
      auto session = std::move(*best);
      idle_.erase(best);
      return SessionLease(*this, std::move(session));
    }
    kv_type = kv_type_;
  }
  return SessionLease(*this, new_session(kv_type));
}

void ModelHandle::give_back(std::unique_ptr<Session> session) {
  std::lock_guard lock(mutex_);
  if (session->epoch != epoch_) {
    if (session->sequence.cache.type() != kv_type_) return;  // the KV type changed meanwhile
    forget(*session);
  }
  idle_.push_back(std::move(session));
}

std::vector<int32_t> ModelHandle::ids_of(py::handle prompt) const {
  if (py::isinstance<py::str>(prompt)) {
    auto text = prompt.cast<std::string>();
    py::gil_scoped_release nogil;
    return model_->tokenizer().encode(text);
  }
  return keyword<std::vector<int32_t>>("the prompt", prompt, "a str or a list of token ids");
}

std::vector<int32_t> ModelHandle::chat_ids(py::handle messages, const GenerateOptions& options) const {
  if (py::isinstance<py::str>(messages) || !py::isinstance<py::sequence>(messages))
    raise(PyExc_TypeError, "messages must be a list of {'role': ..., 'content': ...} dicts");
  std::vector<ChatMessage> conversation;
  for (py::handle m : messages) {
    if (!py::isinstance<py::dict>(m) || !m.contains("role") || !m.contains("content"))
      raise(PyExc_ValueError, cat("messages[", conversation.size(), "] must be a dict with 'role' and 'content'"));
    conversation.push_back({keyword<std::string>("role", m["role"], "a str"),
                            keyword<std::string>("content", m["content"], "a str")});
  }
  // The official chat(): build_chat_input with the generation's max_new_tokens.
  ChatTemplateConfig t = chat_template_config(*model_);
  t.max_new_tokens = options.max_new_tokens;
  py::gil_scoped_release nogil;
  return build_chat_input(model_->tokenizer(), conversation, t);
}

GenerateOptions ModelHandle::options(const py::kwargs& kwargs) const {
  const GenerationConfig& g = model_->generation();
  GenerateOptions o;
  o.max_new_tokens = g.max_new_tokens;
  o.sampling = SamplingParams::from(g);
  std::optional<bool> do_sample;
  std::optional<float> penalty;
  std::optional<uint64_t> seed;
  for (auto [key, value] : kwargs) {
    const auto k = key.cast<std::string>();
    if (value.is_none()) continue;
    if (k == "max_new_tokens") o.max_new_tokens = keyword<int64_t>(k, value, "an int");
    else if (k == "do_sample") do_sample = keyword<bool>(k, value, "a bool");
    else if (k == "temperature") o.sampling.temperature = keyword<float>(k, value, "a float");
    else if (k == "top_k") o.sampling.top_k = keyword<int64_t>(k, value, "an int");
    else if (k == "top_p") o.sampling.top_p = keyword<float>(k, value, "a float");
    else if (k == "repetition_penalty") penalty = keyword<float>(k, value, "a float");
    else if (k == "seed") seed = keyword<uint64_t>(k, value, "a non-negative int");
    else if (k == "ignore_eos") o.ignore_eos = keyword<bool>(k, value, "a bool");
    else if (k == "stop")
      o.stop = py::isinstance<py::str>(value) ? std::vector<std::string>{value.cast<std::string>()}
                                              : keyword<std::vector<std::string>>(k, value, "a str or a list of str");
    else raise(PyExc_TypeError, cat("unexpected keyword argument '", k, "'"));
  }
  if (do_sample && *do_sample)
    o.sampling.greedy = false;
  else if (do_sample)
    use_greedy(o.sampling);  // the plain arg-max unless a penalty is asked for (as the CLI's --greedy)
  if (penalty) o.sampling.repetition_penalty = *penalty;
  o.sampling.seed = seed ? *seed : random_seed();
  return o;
}

GenerateResult ModelHandle::run(const std::vector<int32_t>& prompt, const GenerateOptions& options) {
  SessionLease session = take_session(prompt);
  py::gil_scoped_release nogil;
  Decoding decoding(*model_, session->sequence, prompt, options);
  auto checked = std::chrono::steady_clock::now();
  while (!decoding.done()) {
    decoding.step(session->context, session->pool, {});
    // Let Ctrl-C through now and then: the whole generation runs without the GIL.
    if (std::chrono::steady_clock::now() - checked > std::chrono::milliseconds(100)) {
      checked = std::chrono::steady_clock::now();
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
  }
  set_last_result(decoding.result());
  return decoding.result();
}

std::vector<float> ModelHandle::logits(const std::vector<int32_t>& ids) {
  if (ids.empty()) raise(PyExc_ValueError, "logits() needs at least one token");
  if (static_cast<int64_t>(ids.size()) > context_)
    raise(PyExc_ValueError, cat("the prompt has ", ids.size(), " tokens, more than the context of ", context_,
                                " (Model(..., context=N))"));
  SessionLease session = take_session({});
  py::gil_scoped_release nogil;
  // A cache of its own: the session's cache stays as it is.
  KvCache cache(model_->config(), static_cast<int64_t>(ids.size()), session->sequence.cache.type());
  return model_->forward_last(session->context, cache, ids, session->pool);
}

std::unique_ptr<Session> ModelHandle::new_session(DType kv_type) const {
  auto session = std::make_unique<Session>(*model_, context_, kv_type, threads_);
  std::lock_guard lock(mutex_);
  session->epoch = epoch_;
  return session;
}

void ModelHandle::forget(Session& s) const {
  s.sequence.cache.clear();
  s.sequence.ids.clear();
  s.epoch = epoch_;
}

SessionLease::~SessionLease() {
  if (session_) handle_->give_back(std::move(session_));
}

}  // namespace baichuan::python
