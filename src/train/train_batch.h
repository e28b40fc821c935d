// A batch of padded records made ready for the training pass (train_pass.cpp): checked against the
// model's shape, cut after its last token or label, and written into a TrainContext.
#pragma once
#include <span>

#include "train/train_model.h"

namespace baichuan::train {

// Checks the batch (one length, ids in the vocabulary, labels -100 or ids) and fills ctx's ids, key
// mask and the rows the loss reads; sizes ctx's buffers (the head's gradient and float rows only when
// asked: `head_gradient` when the head is trained, `float_head` unless the head stays stored).
// Throws Error naming the record, field and position at fault.
template <typename T>
void prepare_batch(TrainContext<T>& ctx, const TrainShape& shape, std::span<const Record> batch, bool head_gradient,
                   bool float_head);

}  // namespace baichuan::train
