// baichuan_cpp._native: the Model class of the Python package (pipeline() is Python, in
// baichuan_cpp/__init__.py). Every model computation runs with the GIL released. The loaded model
// is read-only and shared; each call runs in a session of its own (scratch, threads, KV cache), so
// calls from several Python threads compute at the same time without a lock around the model.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "core/version.h"
#include "generate/chat_prompt.h"
#include "generate/decoding.h"
#include "model/lora_option.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"

namespace py = pybind11;

namespace baichuan::python {
namespace {

// Generated text is complete UTF-8 by construction; detokenizing arbitrary ids may not be.
py::str to_str(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

[[noreturn]] void raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw py::error_already_set();
}

template <typename T>
T keyword(const std::string& name, py::handle value, const char* expected) {
  try {
    return value.cast<T>();
  } catch (const py::cast_error&) {
    raise(PyExc_TypeError, cat(name, " must be ", expected, ", got ", std::string(py::str(py::type::of(value).attr("__name__")))));
  }
}

py::dict result_dict(const GenerateResult& r) {
  py::dict d;
  d["tokens"] = r.tokens;
  d["text"] = to_str(r.text);
  d["finish_reason"] = finish_reason_name(r.finish_reason);
  d["prompt_tokens"] = r.prompt_tokens;
  d["reused_prompt_tokens"] = r.reused_prompt_tokens;
  d["prompt_seconds"] = r.prompt_seconds;
  d["generate_seconds"] = r.generate_seconds;
  return d;
}

// One caller's share of a Model: forward scratch, threads, and a KV cache with the ids it holds. A
// call (generate, chat, logits; a stream for its whole life) has a session to itself, so calls from
// several Python threads compute at the same time on the one read-only Model. A ThreadPool runs one
// job at a time, hence one pool per session.
struct Session {
  Session(const Model& model, int64_t context, DType kv_type, int threads)
      : pool(threads), sequence(KvCache(model.config(), context, kv_type)) {}
  ModelContext context;
  ThreadPool pool;
  CachedSequence sequence;
  uint64_t epoch = 0;  // the handle's epoch its cache belongs to (reset() and kv_type changes bump it)
};

class ModelHandle;

// A session taken from a handle; gives it back when destroyed.
class SessionLease {
 public:
  SessionLease(ModelHandle& handle, std::unique_ptr<Session> session) : handle_(&handle), session_(std::move(session)) {}
  SessionLease(SessionLease&&) = default;
  SessionLease& operator=(SessionLease&&) = delete;
  ~SessionLease();
  Session& operator*() const { return *session_; }
  Session* operator->() const { return session_.get(); }

 private:
  ModelHandle* handle_;
  std::unique_ptr<Session> session_;
};

// A loaded model and the sessions its calls have used. Idle sessions are kept for reuse: a call
// takes the one whose cache shares the longest prefix with its prompt, so the next turn of a
// conversation computes only its new tokens. The mutex guards that list and a few fields, never a
// computation, and nothing waits for the GIL while holding it.
class ModelHandle {
 public:
  ModelHandle(const std::string& path, std::optional<int> threads, std::optional<int64_t> context,
              const std::string& kv_type, std::optional<std::string> config_path,
              std::optional<std::string> tokenizer_path, std::optional<std::string> position,
              py::handle lora) {
    // Arguments first: a typo should not cost a model load.
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
    context_ = context ? *context : std::max<int64_t>(model_->config().model_max_length, 4096);  // as the CLI
    idle_.push_back(new_session(kv_type_));  // checks the KV type against the model
  }

  const Model& model() const { return *model_; }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& loras() const { return loras_; }
  int64_t context() const { return context_; }
  int threads() const { return threads_; }
  py::object last_result() {
    std::optional<GenerateResult> last;
    {
      py::gil_scoped_release nogil;
      std::lock_guard lock(mutex_);
      last = last_;
    }
    return last ? py::object(result_dict(*last)) : py::none();
  }
  void set_last_result(const GenerateResult& r) {
    std::lock_guard lock(mutex_);
    last_ = r;
  }

  std::string kv_type() {
    py::gil_scoped_release nogil;
    std::lock_guard lock(mutex_);
    return std::string(dtype_name(kv_type_));
  }
  void set_kv_type(const std::string& name) {
    const DType type = parse_kv_type(name);
    py::gil_scoped_release nogil;
    KvCache probe(model_->config(), 1, type);  // a type this model cannot use leaves everything as it was
    std::lock_guard lock(mutex_);
    kv_type_ = type;
    ++epoch_;
    idle_.clear();  // sessions in use are dropped when they come back
  }

  void reset() {
    py::gil_scoped_release nogil;
    std::lock_guard lock(mutex_);
    ++epoch_;  // sessions in use forget their cache when they come back
    for (auto& s : idle_) forget(*s);
  }

  // The idle session whose cache shares the longest prefix with `prompt`, or a new one.
  SessionLease take_session(std::span<const int32_t> prompt) {
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
  void give_back(std::unique_ptr<Session> session) {
    std::lock_guard lock(mutex_);
    if (session->epoch != epoch_) {
      if (session->sequence.cache.type() != kv_type_) return;  // the KV type changed meanwhile
      forget(*session);
    }
    idle_.push_back(std::move(session));
  }

  std::vector<int32_t> ids_of(py::handle prompt) const {
    if (py::isinstance<py::str>(prompt)) {
      auto text = prompt.cast<std::string>();
      py::gil_scoped_release nogil;
      return model_->tokenizer().encode(text);
    }
    return keyword<std::vector<int32_t>>("the prompt", prompt, "a str or a list of token ids");
  }

  std::vector<int32_t> chat_ids(py::handle messages, const GenerateOptions& options) const {
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

  // Generation keywords, transformers-style: unset or None ones take the model's generation_config.
  GenerateOptions options(const py::kwargs& kwargs) const {
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
    if (do_sample) {
      o.sampling.greedy = !*do_sample;
      // Greedy is the plain arg-max unless a penalty is asked for (as the CLI's --greedy).
      if (o.sampling.greedy) o.sampling.repetition_penalty = 1.0f;
    }
    if (penalty) o.sampling.repetition_penalty = *penalty;
    o.sampling.seed = seed ? *seed : std::random_device{}();
    return o;
  }

  GenerateResult run(const std::vector<int32_t>& prompt, const GenerateOptions& options) {
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

  std::vector<float> logits(const std::vector<int32_t>& ids) {
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

 private:
  std::unique_ptr<Session> new_session(DType kv_type) const {
    auto session = std::make_unique<Session>(*model_, context_, kv_type, threads_);
    std::lock_guard lock(mutex_);
    session->epoch = epoch_;
    return session;
  }
  void forget(Session& s) const {
    s.sequence.cache.clear();
    s.sequence.ids.clear();
    s.epoch = epoch_;
  }

  std::unique_ptr<const Model> model_;
  std::vector<std::string> loras_;
  std::string path_;
  int64_t context_ = 0;
  int threads_ = 1;
  mutable std::mutex mutex_;  // guards what follows
  DType kv_type_ = DType::F16;
  uint64_t epoch_ = 0;
  std::vector<std::unique_ptr<Session>> idle_;
  std::optional<GenerateResult> last_;
};

SessionLease::~SessionLease() {
  if (session_) handle_->give_back(std::move(session_));
}

// The iterator that generate(stream=True) and chat(stream=True) return: one forward step per
// __next__ until the step yields text. It keeps its session until the generation ends, so other
// calls meanwhile run on other sessions and do not disturb it.
class TextStream {
 public:
  TextStream(std::shared_ptr<ModelHandle> model, const std::vector<int32_t>& prompt, const GenerateOptions& options)
      : model_(std::move(model)), session_(model_->take_session(prompt)) {
    decoding_ = std::make_unique<Decoding>(model_->model(), (*session_)->sequence, prompt, options);
    if (decoding_->done()) finish();
  }

  py::str next() {
    std::string text;
    bool over = false;
    {
      py::gil_scoped_release nogil;
      std::lock_guard lock(*mutex_);  // one step at a time if several threads iterate one stream
      while (decoding_ && text.empty()) {
        decoding_->step((*session_)->context, (*session_)->pool, [&text](int32_t, std::string_view piece) {
          text += piece;
          return true;
        });
        if (decoding_->done()) finish();
      }
      over = text.empty();
    }
    if (over) throw py::stop_iteration();
    return to_str(text);
  }
  py::object result() const {
    std::optional<GenerateResult> r;
    {
      py::gil_scoped_release nogil;
      std::lock_guard lock(*mutex_);
      r = result_;
    }
    return r ? py::object(result_dict(*r)) : py::none();
  }

 private:
  // The generation is over: keep its result and give the session back for other calls.
  void finish() {
    result_ = decoding_->result();
    model_->set_last_result(*result_);
    decoding_.reset();
    session_.reset();
  }

  std::shared_ptr<ModelHandle> model_;  // keeps the model alive as long as the stream
  std::optional<SessionLease> session_;
  std::unique_ptr<Decoding> decoding_;  // reads session_'s cache: declared after it
  std::optional<GenerateResult> result_;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // a TextStream is moved into Python
};

py::object generate_or_stream(const std::shared_ptr<ModelHandle>& self, const std::vector<int32_t>& ids, bool stream,
                              const GenerateOptions& options) {
  if (stream) return py::cast(TextStream(self, ids, options));
  return to_str(self->run(ids, options).text);
}

py::dict config_dict(const ModelConfig& c) {
  py::dict d;
  d["family"] = c.family();
  d["position"] = c.position == PositionEncoding::Rope ? "rope" : "alibi";
  d["vocab_size"] = c.vocab_size;
  d["hidden_size"] = c.hidden_size;
  d["intermediate_size"] = c.intermediate_size;
  d["num_attention_heads"] = c.num_heads;
  d["num_hidden_layers"] = c.num_layers;
  d["rms_norm_eps"] = c.rms_norm_eps;
  d["model_max_length"] = c.model_max_length;
  d["bos_token_id"] = c.bos_token_id;
  d["eos_token_id"] = c.eos_token_id;
  d["pad_token_id"] = c.pad_token_id;
  return d;
}

py::dict generation_dict(const GenerationConfig& g) {
  py::dict d;
  d["max_new_tokens"] = g.max_new_tokens;
  d["do_sample"] = g.do_sample;
  d["temperature"] = g.temperature;
  d["top_k"] = g.top_k;
  d["top_p"] = g.top_p;
  d["repetition_penalty"] = g.repetition_penalty;
  d["user_token_id"] = g.user_token_id;
  d["assistant_token_id"] = g.assistant_token_id;
  d["eos_token_id"] = g.eos_token_id;
  return d;
}

}  // namespace
}  // namespace baichuan::python

PYBIND11_MODULE(_native, m) {
  using namespace baichuan;
  using namespace baichuan::python;
  m.doc() = "Baichuan 2 on the CPU (baichuan.cpp): the native part of baichuan_cpp";
  m.attr("__version__") = version();  // CMake's project version (core/version.h)

  // The library's errors are about what the caller passed (arguments, prompts, ids); file problems
  // while loading are turned into OSError where they are caught.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<TextStream>(m, "TextStream", "Iterator over the text pieces of a generation as they are produced")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &TextStream::next)
      .def_property_readonly("result", &TextStream::result, "Like Model.last_result once the stream is over, else None");

  py::class_<ModelHandle, std::shared_ptr<ModelHandle>>(m, "Model", "A Baichuan 2 checkpoint loaded for inference")
      .def(py::init<const std::string&, std::optional<int>, std::optional<int64_t>, const std::string&,
                    std::optional<std::string>, std::optional<std::string>, std::optional<std::string>,
                    py::handle>(),
           py::arg("path"), py::arg("threads") = py::none(), py::arg("context") = py::none(), py::kw_only(),
           py::arg("kv_type") = "f16", py::arg("config_path") = py::none(), py::arg("tokenizer_path") = py::none(),
           py::arg("position") = py::none(), py::arg("lora") = py::none(),
           "Loads a Hugging Face folder, MindSpore .ckpt or .gguf. threads: default all hardware threads; "
           "context: KV cache size in tokens, default max(model_max_length, 4096); kv_type: f16, f32 (exact) or q8_0; "
           "lora: adapters applied unmerged as the CLI's --lora, 'ADAPTER[:SCALE]' or a list of them (a PEFT folder or GGUF LoRA)")
      .def("tokenize", [](const ModelHandle& self, const std::string& text) { return self.ids_of(py::str(text)); },
           py::arg("text"), "Token ids of the text (no BOS), as the official tokenizer")
      .def(
          "detokenize",
          [](const ModelHandle& self, const std::vector<int32_t>& ids) {
            std::string text;
            {
              py::gil_scoped_release nogil;
              text = self.model().tokenizer().decode(ids);
            }
            return to_str(text);
          },
          py::arg("ids"), "Text of token ids (special tokens render as '')")
      .def(
          "logits",
          [](ModelHandle& self, py::handle prompt) {
            std::vector<float> l = self.logits(self.ids_of(prompt));
            py::bytes raw(reinterpret_cast<const char*>(l.data()), l.size() * sizeof(float));
            return py::module_::import("array").attr("array")("f", raw);
          },
          py::arg("prompt"),
          "Logits of the last position after feeding the prompt (str or ids) to a fresh cache: array('f') of vocab_size")
      .def(
          "generate",
          [](const std::shared_ptr<ModelHandle>& self, py::handle prompt, bool stream, const py::kwargs& kwargs) {
            return generate_or_stream(self, self->ids_of(prompt), stream, self->options(kwargs));
          },
          py::arg("prompt"), py::kw_only(), py::arg("stream") = false,
          "Continues the prompt (str or ids, used as is: no template) and returns the new text, or with stream=True "
          "an iterator of text pieces. Keywords: max_new_tokens, do_sample, temperature, top_k, top_p, "
          "repetition_penalty, seed, ignore_eos, stop")
      .def(
          "chat",
          [](const std::shared_ptr<ModelHandle>& self, py::handle messages, bool stream, const py::kwargs& kwargs) {
            GenerateOptions options = self->options(kwargs);
            return generate_or_stream(self, self->chat_ids(messages, options), stream, options);
          },
          py::arg("messages"), py::kw_only(), py::arg("stream") = false,
          "The assistant's answer to a conversation [{'role': 'system'|'user'|'assistant', 'content': ...}, ...], "
          "through the official chat template; keywords as generate()")
      .def(
          "chat_ids",
          [](const ModelHandle& self, py::handle messages, std::optional<int64_t> max_new_tokens) {
            GenerateOptions o;
            o.max_new_tokens = max_new_tokens ? *max_new_tokens : self.model().generation().max_new_tokens;
            return self.chat_ids(messages, o);
          },
          py::arg("messages"), py::arg("max_new_tokens") = py::none(), "The prompt ids chat() would feed")
      .def("reset", &ModelHandle::reset, "Forgets the cached conversation")
      .def_property("kv_type", &ModelHandle::kv_type, &ModelHandle::set_kv_type,
                    "KV cache type: 'F16', 'F32' or 'Q8_0' (setting it clears the cache)")
      .def("set_kv_type", &ModelHandle::set_kv_type, py::arg("kv_type"))
      .def_property_readonly("last_result", &ModelHandle::last_result,
                             "The last finished generation: tokens, text, finish_reason, prompt_tokens, "
                             "reused_prompt_tokens, prompt_seconds, generate_seconds")
      .def_property_readonly("vocab_size", [](const ModelHandle& self) { return self.model().config().vocab_size; })
      .def_property_readonly("context", &ModelHandle::context)
      .def_property_readonly("threads", &ModelHandle::threads)
      .def_property_readonly("path", &ModelHandle::path)
      .def_property_readonly("lora", &ModelHandle::loras, "The adapters applied unmerged, as given")
      .def_property_readonly("description", [](const ModelHandle& self) { return self.model().checkpoint().description; })
      .def_property_readonly("config", [](const ModelHandle& self) { return config_dict(self.model().config()); })
      .def_property_readonly("generation_config",
                             [](const ModelHandle& self) { return generation_dict(self.model().generation()); })
      .def("__repr__", [](const ModelHandle& self) {
        return cat("<baichuan_cpp.Model '", self.path(), "': Baichuan 2 ", self.model().config().family(), ", ",
                   self.model().config().num_layers, " layers, context ", self.context(), ">");
      });
}
