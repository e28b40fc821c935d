// Between the library's values and Python's: text, errors, keyword arguments, and the dicts of a
// generation's result and of the model's configs.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "core/error.h"
#include "generate/decoding.h"
#include "model/config.h"

namespace baichuan::python {

namespace py = pybind11;

// Generated text is complete UTF-8 by construction; detokenizing arbitrary ids may not be.
py::str to_str(const std::string& s);

// Raises the Python exception `type` with `message`.
[[noreturn]] void raise(PyObject* type, const std::string& message);

// A keyword argument as T, or a TypeError "NAME must be EXPECTED, got TYPE".
template <typename T>
T keyword(const std::string& name, py::handle value, const char* expected) {
  try {
    return value.cast<T>();
  } catch (const py::cast_error&) {
    raise(PyExc_TypeError, cat(name, " must be ", expected, ", got ", std::string(py::str(py::type::of(value).attr("__name__")))));
  }
}

py::dict result_dict(const GenerateResult& r);
py::dict config_dict(const ModelConfig& c);
py::dict generation_dict(const GenerationConfig& g);

}  // namespace baichuan::python
