#include "formats/pickle_machine.h"

namespace baichuan::formats::pickle {

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

std::vector<TorchTensorRecord> PickleMachine::run() {
  for (;;) {
    op_offset_ = in_.pos();
    op_ = in_.read<uint8_t>("an opcode");
    if (op_ == '.') break;
    step();
  }
  return state_dict(pop());
}

uint32_t PickleMachine::make(Value v) {
  if (values_.size() >= kMaxValues) error("more than ", kMaxValues, " values");
  values_.push_back(std::move(v));
  return static_cast<uint32_t>(values_.size() - 1);
}
uint32_t PickleMachine::make(Kind kind, int64_t i) {
  Value v;
  v.kind = kind;
  v.i = i;
  return make(std::move(v));
}

uint32_t PickleMachine::make_tuple(std::vector<uint32_t> items) {
  Value v;
  v.kind = Kind::Tuple;
  v.items = std::move(items);
  return make(std::move(v));
}
uint32_t PickleMachine::make_string(std::string_view s) {
  Value v;
  v.kind = Kind::String;
  v.s = s;
  return make(std::move(v));
}

void PickleMachine::push(uint32_t v) {
  if (stack_.size() >= kMaxStack) error("stack deeper than ", kMaxStack);
  stack_.push_back(v);
}
uint32_t PickleMachine::pop() {
  if (stack_.size() <= floor()) error("stack underflow");
  uint32_t v = stack_.back();
  stack_.pop_back();
  return v;
}
uint32_t PickleMachine::top() const {
  if (stack_.size() <= floor()) error("stack underflow");
  return stack_.back();
}

std::vector<uint32_t> PickleMachine::pop_mark() {
  if (marks_.empty()) error("no MARK on the stack");
  size_t mark = marks_.back();
  marks_.pop_back();
  std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
  stack_.resize(mark);
  return items;
}

const Value& PickleMachine::expect(uint32_t v, Kind kind, std::string_view role) const {
  if (values_[v].kind != kind) error(role, " must be a ", kind_name(kind), ", not a ", kind_name(values_[v].kind));
  return values_[v];
}

void PickleMachine::memo_put(uint32_t key) {
  if (memo_.size() >= kMaxMemo && !memo_.count(key)) error("memo larger than ", kMaxMemo, " entries");
  memo_[key] = top();
}
void PickleMachine::memo_get(uint32_t key) {
  auto it = memo_.find(key);
  if (it == memo_.end()) error("memo key ", key, " was never stored");
  push(it->second);
}

std::string_view PickleMachine::read_line(std::string_view reading) {
  size_t n = 0;
  const char* p = reinterpret_cast<const char*>(in_.here());
  while (n < in_.remaining() && n <= kMaxGlobalName && p[n] != '\n') ++n;
  if (n > kMaxGlobalName || n >= in_.remaining() || p[n] != '\n')
    error(reading, " is not a newline-terminated name of at most ", kMaxGlobalName, " bytes");
  auto s = in_.read_bytes(n, reading);
  in_.skip(1, "a newline");
  return s;
}

int64_t PickleMachine::read_long1() {
  auto n = in_.read<uint8_t>("the LONG1 length");
  if (n > 8) error("integer of ", static_cast<int>(n), " bytes does not fit in 64 bits");
  auto bytes = in_.read_bytes(n, "the LONG1 value");
  uint64_t u = 0;
  for (size_t k = 0; k < n; ++k) u |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[k])) << (8 * k);
  if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
  return static_cast<int64_t>(u);
}

void PickleMachine::setitems(uint32_t dict, const std::vector<uint32_t>& kv) {
  if (values_[dict].kind != Kind::Dict) error("target must be a dict, not a ", kind_name(values_[dict].kind));
  if (kv.size() % 2 != 0) error("odd number of keys and values");
  auto& items = values_[dict].items;
  items.insert(items.end(), kv.begin(), kv.end());
}

void PickleMachine::step() {
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

}  // namespace baichuan::formats::pickle
