// The bounded virtual machine behind read_torch_pickle (formats/torch_pickle.h): the pickle opcodes,
// the value arena, the stack with its marks, and the memo. What a GLOBAL may name, what REDUCE and
// BINPERSID build and how the final dict becomes tensor records are torch's rules: those member
// functions are defined in torch_pickle.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/byte_reader.h"
#include "core/error.h"
#include "formats/torch_pickle.h"

namespace baichuan::formats::pickle {

// Limits for untrusted input. A real state dict of a 13B model needs a few thousand values and a
// stack of ten; these are orders of magnitude above that and keep memory linear in the input.
constexpr size_t kMaxStack = 1 << 20;
constexpr size_t kMaxMemo = 1 << 20;
constexpr size_t kMaxValues = 1 << 20;
constexpr size_t kMaxGlobalName = 256;

enum class Kind : uint8_t { None, Bool, Int, String, Tuple, List, Dict, Global, Storage, Tensor };

std::string_view kind_name(Kind k);
std::string_view opcode_name(uint8_t op);

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

class PickleMachine {
 public:
  PickleMachine(std::string_view pickle, const std::string& what, std::vector<TorchQuantState>* quant_states)
      : in_(reinterpret_cast<const std::byte*>(pickle.data()), pickle.size(), what + ": data.pkl"), what_(what),
        quant_states_(quant_states) {}

  // Runs the opcodes up to STOP and returns the state dict the pickle built.
  std::vector<TorchTensorRecord> run();

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

  // The machine (pickle_machine.cpp).
  uint32_t make(Value v);
  uint32_t make(Kind kind, int64_t i = 0);
  uint32_t make_tuple(std::vector<uint32_t> items);
  uint32_t make_string(std::string_view s);
  void push(uint32_t v);
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  uint32_t pop();
  uint32_t top() const;
  std::vector<uint32_t> pop_mark();  // everything pushed since the last MARK, which is removed
  const Value& expect(uint32_t v, Kind kind, std::string_view role) const;
  int64_t expect_int(uint32_t v, std::string_view role) const { return expect(v, Kind::Int, role).i; }
  void memo_put(uint32_t key);
  void memo_get(uint32_t key);
  std::string_view read_line(std::string_view reading);
  int64_t read_long1();
  void setitems(uint32_t dict, const std::vector<uint32_t>& kv);
  void step();

  // Torch's rules (torch_pickle.cpp).
  uint32_t make_global(std::string_view module, std::string_view name);
  uint32_t reduce(uint32_t callable, uint32_t args_index);
  uint32_t persistent_load(uint32_t pid);
  std::vector<int64_t> int_tuple(uint32_t v, std::string_view role) const;
  std::vector<TorchTensorRecord> state_dict(uint32_t root);
  TorchTensorRecord record(const std::string& name, const Value& tensor) const;
  TorchQuantState quant_state(const std::string& key, uint32_t list) const;
};

}  // namespace baichuan::formats::pickle
