// The SQLite index beside each MindRecord data file (<file>.db), as MindSpore's ShardIndexGenerator
// writes it for a schema without index fields:
//   CREATE TABLE INDEXES(ROW_ID, PAGE_ID_RAW, PAGE_OFFSET_RAW, PAGE_OFFSET_RAW_END, ROW_GROUP_ID,
//                        PAGE_ID_BLOB, PAGE_OFFSET_BLOB, PAGE_OFFSET_BLOB_END, PRIMARY KEY(ROW_ID))
//   CREATE TABLE SHARD_NAME(NAME)   -- one row: the data file's base name
// Offsets are relative to the page start and point at a record's 8-byte length prefix; the _END
// offsets are after the record. MindSpore refuses a .db whose SHARD_NAME is not the data file's name.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace baichuan::train::mindrecord {

struct IndexRow {
  int64_t row_id = 0;
  int64_t page_id_raw = 0, page_offset_raw = 0, page_offset_raw_end = 0;
  int64_t row_group_id = 0;
  int64_t page_id_blob = 0, page_offset_blob = 0, page_offset_blob_end = 0;
};

// Builds <file>.db under a temporary name, rows inserted as they come in one transaction; renamed
// into place by commit(). Without commit() the temporary database is removed.
class IndexWriter {
 public:
  IndexWriter(std::string db_path, const std::string& shard_name);
  ~IndexWriter();
  IndexWriter(const IndexWriter&) = delete;
  IndexWriter& operator=(const IndexWriter&) = delete;

  void add(const IndexRow& row);
  // Adds `first_raw_page` to PAGE_ID_RAW of every row: rows are added with their raw page counted
  // among the raw pages only, which follow all blob pages, whose number is known at the end.
  void shift_raw_pages(int64_t first_raw_page);
  void finish();  // ends the transaction and closes the database (the file is synced)
  void commit();  // after finish(): renames it into place

 private:
  void exec(const char* sql);
  [[noreturn]] void sqlite_fail(const std::string& doing);

  std::string path_, tmp_path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  bool finished_ = false, committed_ = false;
};

// Reads every INDEXES row of a .db, ordered by ROW_ID, after checking that SHARD_NAME is
// `shard_name` as MindSpore does. Throws Error naming the path.
std::vector<IndexRow> read_index(const std::string& db_path, const std::string& shard_name);

}  // namespace baichuan::train::mindrecord
