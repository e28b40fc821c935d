#include "conversions.h"

namespace baichuan::python {

py::str to_str(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

[[noreturn]] void raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw py::error_already_set();
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

}  // namespace baichuan::python
