// MindSpore checkpoints: a concatenation of serialized `Checkpoint` protobuf messages
//   message Checkpoint { message Value { required string tag = 1; required TensorProto tensor = 2; }
//                        repeated Value value = 1; }
//   message TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
//                         required bytes tensor_content = 3; }
// A parameter larger than 512 MiB is split along axis 0 into several Values with the same tag, to be
// concatenated in order. Read with a bounds-checked wire-format parser over a memory map (protobuf's
// own parser would copy every tensor and cannot take messages over 2 GiB).
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace baichuan::formats {

std::vector<Tensor> read_mindspore_ckpt(const std::string& path);

}  // namespace baichuan::formats
