// baichuan_cpp._native: the Model and TextStream classes of the Python package (pipeline() is Python,
// in baichuan_cpp/__init__.py); Model is ModelHandle (model_handle.h). Every model computation runs
// with the GIL released. The loaded model is read-only and shared; each call runs in a session of its
// own (scratch, threads, KV cache), so calls from several Python threads compute at the same time
// without a lock around the model.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "conversions.h"
#include "core/error.h"
#include "core/version.h"
#include "generate/decoding.h"
#include "model_handle.h"

namespace baichuan::python {
namespace {

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
