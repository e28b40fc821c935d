#include "formats/torch_pickle.h"

#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "core/byte_reader.h"
#include "core/error.h"

namespace baichuan::formats {

namespace {

// Limits for untrusted input. A real state dict of a 13B model needs a few thousand values and a
// stack of ten; these are orders of magnitude above that and keep memory linear in the input.
constexpr size_t kMaxStack = 1 << 20;
constexpr size_t kMaxMemo = 1 << 20;
constexpr size_t kMaxValues = 1 << 20;
constexpr size_t kMaxGlobalName = 256;
constexpr size_t kMaxStorageKey = 4096;
constexpr size_t kMaxRank = 64;

enum class Kind : uint8_t { None, Bool, Int, String, Tuple, List, Dict, Global, Storage, Tensor };

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::String: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

// The globals a state dict may name; every other module.name is refused.
// Size and DTypeConstant appear in bitsandbytes quant_state lists: torch.Size((out, in)) is a tuple;
// torch.float16 etc. are values that cannot be called.
enum class Callable : uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType, Size, DTypeConstant };

// Values live in an arena and refer to each other by index: no recursive ownership, so a hostile
// pickle cannot build reference cycles that leak or nesting that overflows the stack on destruction.
struct Value {
  Kind kind = Kind::None;
  Callable callable = Callable::OrderedDict;  // Global
  DType dtype = DType::F32;                   // Global (storage type), Storage
  int64_t i = 0;                              // Int, Bool; Storage: numel; Tensor: index into tensors_
  std::string s;                              // String; Global: "module.name"
  std::vector<uint32_t> items;                // Tuple/List elements; Dict keys and values alternating;
                                              // Storage: {key string}
};

struct RebuiltTensor {
  uint32_t storage;  // a Storage value
  int64_t offset;
  std::vector<int64_t> size, stride;
};

std::string_view opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
  }
  return "unknown";
}

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

class PickleMachine {
 public:
  PickleMachine(std::string_view pickle, const std::string& what, std::vector<TorchQuantState>* quant_states)
      : in_(reinterpret_cast<const std::byte*>(pickle.data()), pickle.size(), what + ": data.pkl"), what_(what),
        quant_states_(quant_states) {}

  std::vector<TorchTensorRecord> run() {
    for (;;) {
      op_offset_ = in_.pos();
      op_ = in_.read<uint8_t>("an opcode");
      if (op_ == '.') break;
      step();
    }
    return state_dict(pop());
  }

 private:
  ByteReader in_;
  const std::string& what_;
  std::vector<TorchQuantState>* quant_states_;
  size_t op_offset_ = 0;
  uint8_t op_ = 0;
  std::vector<Value> values_;
  std::vector<RebuiltTensor> tensors_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;  // stack heights at each MARK
  std::unordered_map<uint32_t, uint32_t> memo_;

  template <typename... Args>
  [[noreturn]] void error(const Args&... args) const {
    const char* hex = "0123456789abcdef";
    fail(what_, ": data.pkl: opcode ", opcode_name(op_), " (0x", hex[op_ >> 4], hex[op_ & 15], ") at offset ",
         op_offset_, ": ", args...);
  }

  uint32_t make(Value v) {
    if (values_.size() >= kMaxValues) error("more than ", kMaxValues, " values");
    values_.push_back(std::move(v));
    return static_cast<uint32_t>(values_.size() - 1);
  }
  uint32_t make(Kind kind, int64_t i = 0) {
    Value v;
    v.kind = kind;
    v.i = i;
    return make(std::move(v));
  }

  void push(uint32_t v) {
    if (stack_.size() >= kMaxStack) error("stack deeper than ", kMaxStack);
    stack_.push_back(v);
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  uint32_t pop() {
    if (stack_.size() <= floor()) error("stack underflow");
    uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  uint32_t top() const {
    if (stack_.size() <= floor()) error("stack underflow");
    return stack_.back();
  }
  // Everything pushed since the last MARK, which is removed.
  std::vector<uint32_t> pop_mark() {
    if (marks_.empty()) error("no MARK on the stack");
    size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }

  const Value& expect(uint32_t v, Kind kind, std::string_view role) const {
    if (values_[v].kind != kind) error(role, " must be a ", kind_name(kind), ", not a ", kind_name(values_[v].kind));
    return values_[v];
  }
  int64_t expect_int(uint32_t v, std::string_view role) const { return expect(v, Kind::Int, role).i; }

  uint32_t make_tuple(std::vector<uint32_t> items) {
    Value v;
    v.kind = Kind::Tuple;
    v.items = std::move(items);
    return make(std::move(v));
  }
  uint32_t make_string(std::string_view s) {
    Value v;
    v.kind = Kind::String;
    v.s = s;
    return make(std::move(v));
  }

  void memo_put(uint32_t key) {
    if (memo_.size() >= kMaxMemo && !memo_.count(key)) error("memo larger than ", kMaxMemo, " entries");
    memo_[key] = top();
  }
  void memo_get(uint32_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) error("memo key ", key, " was never stored");
    push(it->second);
  }

  std::string_view read_line(std::string_view reading) {
    size_t n = 0;
    const char* p = reinterpret_cast<const char*>(in_.here());
    while (n < in_.remaining() && n <= kMaxGlobalName && p[n] != '\n') ++n;
    if (n > kMaxGlobalName || n >= in_.remaining() || p[n] != '\n')
      error(reading, " is not a newline-terminated name of at most ", kMaxGlobalName, " bytes");
    auto s = in_.read_bytes(n, reading);
    in_.skip(1, "a newline");
    return s;
  }

  uint32_t make_global(std::string_view module, std::string_view name) {
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

  int64_t read_long1() {
    auto n = in_.read<uint8_t>("the LONG1 length");
    if (n > 8) error("integer of ", static_cast<int>(n), " bytes does not fit in 64 bits");
    auto bytes = in_.read_bytes(n, "the LONG1 value");
    uint64_t u = 0;
    for (size_t k = 0; k < n; ++k) u |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[k])) << (8 * k);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
    return static_cast<int64_t>(u);
  }

  void setitems(uint32_t dict, const std::vector<uint32_t>& kv) {
    if (values_[dict].kind != Kind::Dict) error("target must be a dict, not a ", kind_name(values_[dict].kind));
    if (kv.size() % 2 != 0) error("odd number of keys and values");
    auto& items = values_[dict].items;
    items.insert(items.end(), kv.begin(), kv.end());
  }

  std::vector<int64_t> int_tuple(uint32_t v, std::string_view role) const {
    const Value& t = expect(v, Kind::Tuple, role);
    if (t.items.size() > kMaxRank) error(role, " has ", t.items.size(), " dimensions, more than ", kMaxRank);
    std::vector<int64_t> out;
    for (uint32_t x : t.items) out.push_back(expect_int(x, role));
    return out;
  }

  uint32_t reduce(uint32_t callable, uint32_t args_index) {
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
  uint32_t persistent_load(uint32_t pid) {
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

  void step() {
    switch (op_) {
      case 0x80: {  // PROTO
        auto version = in_.read<uint8_t>("the protocol version");
        if (version < 2 || version > 5) error("unsupported pickle protocol ", static_cast<int>(version));
        return;
      }
      case 0x95: in_.skip(8, "the frame length"); return;  // FRAME: framing is irrelevant in memory
      case '}': push(make(Kind::Dict)); return;
      case ']': push(make(Kind::List)); return;
      case ')': push(make_tuple({})); return;
      case 'N': push(make(Kind::None)); return;
      case 0x88: push(make(Kind::Bool, 1)); return;
      case 0x89: push(make(Kind::Bool, 0)); return;
      case '(':
        if (marks_.size() >= kMaxStack) error("more than ", kMaxStack, " marks");
        marks_.push_back(stack_.size());
        return;
      case 'q': memo_put(in_.read<uint8_t>("the memo key")); return;
      case 'r': memo_put(in_.read<uint32_t>("the memo key")); return;
      case 0x94: memo_put(static_cast<uint32_t>(memo_.size())); return;  // MEMOIZE
      case 'h': memo_get(in_.read<uint8_t>("the memo key")); return;
      case 'j': memo_get(in_.read<uint32_t>("the memo key")); return;
      case 'J': push(make(Kind::Int, in_.read<int32_t>("the integer"))); return;
      case 'K': push(make(Kind::Int, in_.read<uint8_t>("the integer"))); return;
      case 'M': push(make(Kind::Int, in_.read<uint16_t>("the integer"))); return;
      case 0x8a: push(make(Kind::Int, read_long1())); return;
      case 'X': {
        auto n = in_.read<uint32_t>("the string length");
        push(make_string(in_.read_bytes(n, "the string")));  // read_bytes checks n against what is left
        return;
      }
      case 0x8c: {  // SHORT_BINUNICODE
        auto n = in_.read<uint8_t>("the string length");
        push(make_string(in_.read_bytes(n, "the string")));
        return;
      }
      case 'c': {
        auto module = read_line("the global's module");
        auto name = read_line("the global's name");
        push(make_global(module, name));
        return;
      }
      case 0x93: {  // STACK_GLOBAL
        uint32_t name = pop(), module = pop();
        push(make_global(expect(module, Kind::String, "the module").s, expect(name, Kind::String, "the name").s));
        return;
      }
      case 't': push(make_tuple(pop_mark())); return;
      case 0x85: {
        uint32_t a = pop();
        push(make_tuple({a}));
        return;
      }
      case 0x86: {
        uint32_t b = pop(), a = pop();
        push(make_tuple({a, b}));
        return;
      }
      case 0x87: {
        uint32_t c = pop(), b = pop(), a = pop();
        push(make_tuple({a, b, c}));
        return;
      }
      case 'Q': push(persistent_load(pop())); return;
      case 'R': {
        uint32_t args = pop(), callable = pop();
        push(reduce(callable, args));
        return;
      }
      case 's': {
        uint32_t value = pop(), key = pop();
        setitems(top(), {key, value});
        return;
      }
      case 'u': {
        auto kv = pop_mark();
        setitems(top(), kv);
        return;
      }
      case 'a': {
        uint32_t item = pop();
        uint32_t list = top();
        if (values_[list].kind != Kind::List) error("target must be a list, not a ", kind_name(values_[list].kind));
        values_[list].items.push_back(item);
        return;
      }
      case 'e': {
        auto items = pop_mark();
        uint32_t list = top();
        if (values_[list].kind != Kind::List) error("target must be a list, not a ", kind_name(values_[list].kind));
        values_[list].items.insert(values_[list].items.end(), items.begin(), items.end());
        return;
      }
      case 'b': {
        // An OrderedDict's state is its attributes (a state dict's `_metadata`): irrelevant here.
        pop();
        const Kind kind = values_[top()].kind;
        if (kind != Kind::Dict) error("only a dict's state can be set, not a ", kind_name(kind));
        return;
      }
      default:
        error("not supported in a torch state dict");
    }
  }

  std::vector<TorchTensorRecord> state_dict(uint32_t root) {
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

  TorchTensorRecord record(const std::string& name, const Value& tensor) const {
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
  TorchQuantState quant_state(const std::string& key, uint32_t list) const {
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
};

}  // namespace

std::vector<TorchTensorRecord> read_torch_pickle(std::string_view pickle, const std::string& what,
                                                 std::vector<TorchQuantState>* quant_states) {
  return PickleMachine(pickle, what, quant_states).run();
}

}  // namespace baichuan::formats
