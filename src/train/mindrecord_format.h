// MindRecord (MindSpore's dataset file format) as MindFormers' belle_preprocess.py writes it: the
// constants and the integer-column compression shared by our writer and reader. The layout is
// documented in ../shared/specs/finetune-formats.md ("MindRecord, enough to write it without
// MindSpore"); in short, per shard:
//   data file  [uint64 LE n][n bytes of header JSON] ... zeros up to header_size, then page k at
//              header_size + k * page_size. BLOB_DATA pages hold [uint64 LE len][row blob] records;
//              RAW_DATA pages hold [uint64 LE 5][msgpack {"id": 0}] per row (all fields are blobs).
//   <file>.db  SQLite: INDEXES (one row per sample: where its raw and blob records are) and SHARD_NAME.
// A row blob is, per blob field in sorted name order, [8-byte BE length][compressed column].
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace baichuan::train::mindrecord {

inline constexpr const char* kVersion = "3.0";
inline constexpr uint64_t kMinHeaderSize = 1 << 14, kMaxHeaderSize = 1 << 27;
inline constexpr uint64_t kMinPageSize = 1 << 15, kMaxPageSize = 1 << 28;
inline constexpr int kMaxShards = 1000;
// The raw record of a row when every field is a blob: length 5, then msgpack of {"id": 0}.
inline constexpr unsigned char kDummyRawRecord[13] = {5, 0, 0, 0, 0, 0, 0, 0, 0x81, 0xa2, 0x69, 0x64, 0x00};

// Appends ShardColumn::CompressInt of `values`: a 4-byte BE element count, a bitmap with 2 bits per
// element (byte i/4, shift 2 * (3 - i%4); 0 int8, 1 int16, 2 int32, 3 int64: the narrowest type
// that holds the value), then each value little-endian in its width.
void append_compressed_ints(std::string& out, std::span<const int32_t> values);
// The bytes append_compressed_ints writes for values of one width at least (all int8): the smallest
// a column of n values can be.
uint64_t min_compressed_size(uint64_t n);

// Reads a compressed column of [p, p + n) into `out` (appended); throws Error naming `what` when the
// payload is inconsistent or a value does not fit int32.
void read_compressed_ints(const unsigned char* p, uint64_t n, std::vector<int32_t>& out, const std::string& what);

void append_be64(std::string& out, uint64_t v);
uint64_t read_be64(const unsigned char* p);
uint64_t read_le64(const unsigned char* p);

// The shard file names FileWriter(file_name, shard_num) uses: file_name itself for one shard, else
// file_name0 ... file_nameK-1 with the suffix zero-padded to the digits of K-1.
std::vector<std::string> shard_paths(const std::string& file_name, int shards);

}  // namespace baichuan::train::mindrecord
