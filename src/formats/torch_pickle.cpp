#include "formats/torch_pickle.h"

#include <unordered_set>

#include "formats/pickle_machine.h"

namespace baichuan::formats {

namespace pickle {

// Limits for untrusted input, as in pickle_machine.h.
constexpr size_t kMaxStorageKey = 4096;
constexpr size_t kMaxRank = 64;

namespace {

bool storage_dtype(std::string_view name, DType& out) {
  static const std::pair<std::string_view, DType> kTypes[] = {
      {"FloatStorage", DType::F32}, {"HalfStorage", DType::F16},   {"BFloat16Storage", DType::BF16},
      {"DoubleStorage", DType::F64}, {"LongStorage", DType::I64},  {"IntStorage", DType::I32},
      {"ShortStorage", DType::I16},  {"CharStorage", DType::I8},   {"ByteStorage", DType::U8},
      {"BoolStorage", DType::Bool},
  };
  for (auto& [n, t] : kTypes)
    if (n == name) {
      out = t;
      return true;
    }
  return false;
}

bool dtype_constant(std::string_view name, DType& out) {
  static const std::pair<std::string_view, DType> kTypes[] = {
      {"float16", DType::F16}, {"bfloat16", DType::BF16}, {"float32", DType::F32}, {"uint8", DType::U8}};
  for (auto& [n, t] : kTypes)
    if (n == name) {
      out = t;
      return true;
    }
  return false;
}

}  // namespace

uint32_t PickleMachine::make_global(std::string_view module, std::string_view name) {
  Value v;
  v.kind = Kind::Global;
  v.s = cat(module, ".", name);
  if (module == "collections" && name == "OrderedDict") {
    v.callable = Callable::OrderedDict;
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    v.callable = Callable::RebuildTensorV2;
  } else if (module == "torch._utils" && name == "_rebuild_parameter") {
    v.callable = Callable::RebuildParameter;
  } else if (module == "torch" && storage_dtype(name, v.dtype)) {
    v.callable = Callable::StorageType;
  } else if (module == "torch" && name == "Size") {
    v.callable = Callable::Size;
  } else if (module == "torch" && dtype_constant(name, v.dtype)) {
    v.callable = Callable::DTypeConstant;
  } else {
    error("global '", v.s, "' is not allowed (only OrderedDict, torch tensor rebuilding, torch storage types, "
          "torch.Size and torch dtypes)");
  }
  return make(std::move(v));
}

std::vector<int64_t> PickleMachine::int_tuple(uint32_t v, std::string_view role) const {
  const Value& t = expect(v, Kind::Tuple, role);
  if (t.items.size() > kMaxRank) error(role, " has ", t.items.size(), " dimensions, more than ", kMaxRank);
  std::vector<int64_t> out;
  for (uint32_t x : t.items) out.push_back(expect_int(x, role));
  return out;
}

uint32_t PickleMachine::reduce(uint32_t callable, uint32_t args_index) {
  const Value& f = expect(callable, Kind::Global, "the callable");
  const std::vector<uint32_t> args = expect(args_index, Kind::Tuple, "the arguments").items;
  switch (f.callable) {
    case Callable::OrderedDict:
      if (!args.empty()) error("OrderedDict must be called without arguments");
      return make(Kind::Dict);
    case Callable::RebuildTensorV2: {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.size() != 6 && args.size() != 7)
        error("_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.size());
      expect(args[0], Kind::Storage, "the storage");
      RebuiltTensor t{args[0], expect_int(args[1], "the storage offset"), int_tuple(args[2], "the size"),
                      int_tuple(args[3], "the stride")};
      if (t.size.size() != t.stride.size())
        error("size has ", t.size.size(), " dimensions but stride has ", t.stride.size());
      tensors_.push_back(std::move(t));
      return make(Kind::Tensor, static_cast<int64_t>(tensors_.size() - 1));
    }
    case Callable::RebuildParameter:
      // (data, requires_grad, backward_hooks): a Parameter is just its tensor for inference.
      if (args.size() != 3) error("_rebuild_parameter takes 3 arguments, got ", args.size());
      expect(args[0], Kind::Tensor, "the parameter data");
      return args[0];
    case Callable::Size: {
      // torch.Size((d0, d1, ...)): the shape, a tuple of ints.
      if (args.size() != 1) error("torch.Size takes 1 argument, got ", args.size());
      std::vector<int64_t> dims = int_tuple(args[0], "the torch.Size dimensions");
      std::vector<uint32_t> items;
      for (int64_t d : dims) items.push_back(make(Kind::Int, d));
      return make_tuple(std::move(items));
    }
    case Callable::StorageType:
    case Callable::DTypeConstant:
      break;
  }
  error("'", f.s, "' cannot be called");
}

// BINPERSID's id: ('storage', torch.<Type>Storage, key, location, numel).
uint32_t PickleMachine::persistent_load(uint32_t pid) {
  const std::vector<uint32_t> t = expect(pid, Kind::Tuple, "the persistent id").items;
  if (t.size() != 5) error("persistent id must have 5 fields, got ", t.size());
  if (expect(t[0], Kind::String, "the persistent id tag").s != "storage")
    error("persistent id tag must be 'storage'");
  const Value& type = expect(t[1], Kind::Global, "the storage type");
  if (type.callable != Callable::StorageType) error("'", type.s, "' is not a storage type");
  const Value& key = expect(t[2], Kind::String, "the storage key");
  if (key.s.size() > kMaxStorageKey) error("storage key longer than ", kMaxStorageKey, " bytes");
  expect(t[3], Kind::String, "the storage location");
  int64_t numel = expect_int(t[4], "the storage size");
  if (numel < 0) error("negative storage size ", numel);
  Value v;
  v.kind = Kind::Storage;
  v.dtype = type.dtype;
  v.i = numel;
  v.items = {t[2]};
  return make(std::move(v));
}

std::vector<TorchTensorRecord> PickleMachine::state_dict(uint32_t root) {
  const Value& dict = values_[root];
  if (dict.kind != Kind::Dict)
    fail(what_, ": data.pkl: the pickle holds a ", kind_name(dict.kind), ", not a state dict");
  std::vector<TorchTensorRecord> out;
  std::unordered_set<std::string_view> seen;
  for (size_t k = 0; k + 1 < dict.items.size(); k += 2) {
    const Value& key = values_[dict.items[k]];
    const Value& value = values_[dict.items[k + 1]];
    if (key.kind != Kind::String)
      fail(what_, ": data.pkl: a state dict key is a ", kind_name(key.kind), ", not a str");
    if (!seen.insert(key.s).second) fail(what_, ": data.pkl: tensor '", key.s, "' appears twice");
    if (quant_states_ && value.kind == Kind::List && key.s.ends_with(".quant_state")) {
      quant_states_->push_back(quant_state(key.s, dict.items[k + 1]));
      continue;
    }
    if (value.kind != Kind::Tensor)
      fail(what_, ": data.pkl: entry '", key.s, "' is a ", kind_name(value.kind), ", not a tensor");
    out.push_back(record(key.s, value));
  }
  return out;
}

TorchTensorRecord PickleMachine::record(const std::string& name, const Value& tensor) const {
  const RebuiltTensor& t = tensors_[static_cast<size_t>(tensor.i)];
  const Value& storage = values_[t.storage];
  TorchTensorRecord r;
  r.name = name;
  r.dtype = storage.dtype;
  r.storage_key = values_[storage.items[0]].s;
  r.storage_numel = storage.i;
  r.storage_offset = t.offset;
  r.size = t.size;
  r.stride = t.stride;
  return r;
}

// [absmax, Size, dtype, blocksize, [offset, [absmax2, code2, blocksize2, False, dtype2, None, None]],
//  quant_type, code], checked element by element.
TorchQuantState PickleMachine::quant_state(const std::string& key, uint32_t list) const {
  auto bad = [&](const std::string& element, std::string_view should, uint32_t v) {
    fail(what_, ": data.pkl: '", key, "'", element, " must be ", should, ", not a ", kind_name(values_[v].kind),
         " (expected the bitsandbytes 0.41 quant_state layout [absmax, torch.Size, dtype, blocksize, "
         "[offset, state2], quant_type, code])");
  };
  auto items = [&](uint32_t v, size_t n, const std::string& element) {
    const Value& l = values_[v];
    if (l.kind != Kind::List) bad(element, "a list", v);
    if (l.items.size() != n)
      fail(what_, ": data.pkl: '", key, "'", element, " has ", l.items.size(), " elements, expected ", n,
           " (the bitsandbytes 0.41 quant_state layout)");
    return l.items;
  };
  auto tensor = [&](uint32_t v, const std::string& element) {
    if (values_[v].kind != Kind::Tensor) bad(element, "a tensor", v);
    return record(key + element, values_[v]);
  };
  auto integer = [&](uint32_t v, const std::string& element) {
    if (values_[v].kind != Kind::Int) bad(element, "an int", v);
    return values_[v].i;
  };
  auto dtype = [&](uint32_t v, const std::string& element) {
    if (values_[v].kind != Kind::Global || values_[v].callable != Callable::DTypeConstant)
      bad(element, "a torch dtype", v);
    return values_[v].dtype;
  };
  const auto top = items(list, 7, "");
  TorchQuantState q;
  q.name = key;
  q.absmax = tensor(top[0], "[0]");
  const Value& shape = values_[top[1]];
  if (shape.kind != Kind::Tuple) bad("[1]", "a torch.Size", top[1]);
  for (uint32_t d : shape.items) q.shape.push_back(integer(d, "[1]"));
  q.dtype = dtype(top[2], "[2]");
  q.blocksize = integer(top[3], "[3]");
  const auto nested = items(top[4], 2, "[4]");
  q.offset = tensor(nested[0], "[4][0]");
  const auto state2 = items(nested[1], 7, "[4][1]");
  q.absmax2 = tensor(state2[0], "[4][1][0]");
  q.code2 = tensor(state2[1], "[4][1][1]");
  q.blocksize2 = integer(state2[2], "[4][1][2]");
  if (values_[state2[3]].kind != Kind::Bool || values_[state2[3]].i != 0)
    bad("[4][1][3]", "False (the scales' scales are not quantized again)", state2[3]);
  q.dtype2 = dtype(state2[4], "[4][1][4]");
  for (size_t i : {5u, 6u})
    if (values_[state2[i]].kind != Kind::None) bad(cat("[4][1][", i, "]"), "None", state2[i]);
  if (values_[top[5]].kind != Kind::String) bad("[5]", "a str (the quant_type)", top[5]);
  q.quant_type = values_[top[5]].s;
  q.code = tensor(top[6], "[6]");
  return q;
}

}  // namespace pickle

std::vector<TorchTensorRecord> read_torch_pickle(std::string_view pickle, const std::string& what,
                                                 std::vector<TorchQuantState>* quant_states) {
  return pickle::PickleMachine(pickle, what, quant_states).run();
}

}  // namespace baichuan::formats
