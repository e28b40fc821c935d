// Reads the input_ids / labels rows of a MindRecord data set (every shard), through the .db index as
// MindSpore does: a file written by our writer, by MindFormers' belle_preprocess.py, or by any
// MindSpore FileWriter with int32/int64 array fields of those names.
#pragma once
#include <string>

#include "train/dataset_rows.h"

namespace baichuan::train {

// Whether the file starts like a MindRecord data file ([uint64 LE n]{"header_size":...).
bool is_mindrecord_file(const std::string& path);

// Rows of every shard listed in the opened file's header (resolved beside it), shard by shard in
// ROW_ID order. Throws Error naming the file and what does not fit: a missing or renamed .db, an
// index pointing outside its page, a column that does not decode, rows of different lengths.
TokenRows read_mindrecord_dataset(const std::string& path);

}  // namespace baichuan::train
