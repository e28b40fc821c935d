#include "train/mindrecord_index.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace baichuan::train::mindrecord {

namespace {

// The table definitions of MindSpore's ShardIndexGenerator (no index fields).
constexpr const char* kCreateIndexes =
    "CREATE TABLE INDEXES(  ROW_ID               INT  NOT NULL, PAGE_ID_RAW          INT  NOT NULL"
    ", PAGE_OFFSET_RAW      INT  NOT NULL, PAGE_OFFSET_RAW_END  INT  NOT NULL"
    ", ROW_GROUP_ID         INT  NOT NULL, PAGE_ID_BLOB         INT  NOT NULL"
    ", PAGE_OFFSET_BLOB     INT  NOT NULL, PAGE_OFFSET_BLOB_END INT  NOT NULL"
    ", PRIMARY KEY(ROW_ID));";
constexpr const char* kCreateShardName = "CREATE TABLE SHARD_NAME(NAME TEXT NOT NULL);";

void sync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    fail(path, ": cannot finish writing: ", std::strerror(err));
  }
  ::close(fd);
}

// A read-only connection and one statement, closed on every path.
struct ReadConnection {
  sqlite3* db = nullptr;
  sqlite3_stmt* stmt = nullptr;
  ~ReadConnection() {
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
};

}  // namespace

IndexWriter::IndexWriter(std::string db_path, const std::string& shard_name)
    : path_(std::move(db_path)), tmp_path_(path_ + ".tmp" + std::to_string(getpid())) {
  std::remove(tmp_path_.c_str());  // left by a killed run with the same pid: never reuse its tables
  if (sqlite3_open_v2(tmp_path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
    sqlite_fail("cannot create");
  // The database is a temporary file until the rename: no journal, no syncs until finish().
  exec("PRAGMA journal_mode=OFF;");
  exec("PRAGMA synchronous=OFF;");
  exec("BEGIN;");
  exec(kCreateShardName);
  exec(kCreateIndexes);
  sqlite3_stmt* name = nullptr;
  if (sqlite3_prepare_v2(db_, "INSERT INTO SHARD_NAME (NAME) VALUES (?);", -1, &name, nullptr) != SQLITE_OK)
    sqlite_fail("cannot prepare");
  sqlite3_bind_text(name, 1, shard_name.c_str(), static_cast<int>(shard_name.size()), SQLITE_TRANSIENT);
  const int rc = sqlite3_step(name);
  sqlite3_finalize(name);
  if (rc != SQLITE_DONE) sqlite_fail("cannot insert the shard name");
  if (sqlite3_prepare_v2(db_,
                         "INSERT INTO INDEXES (ROW_ID, PAGE_ID_RAW, PAGE_OFFSET_RAW, PAGE_OFFSET_RAW_END, ROW_GROUP_ID,"
                         " PAGE_ID_BLOB, PAGE_OFFSET_BLOB, PAGE_OFFSET_BLOB_END) VALUES (?, ?, ?, ?, ?, ?, ?, ?);",
                         -1, &insert_, nullptr) != SQLITE_OK)
    sqlite_fail("cannot prepare");
}

IndexWriter::~IndexWriter() {
  sqlite3_finalize(insert_);
  sqlite3_close(db_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void IndexWriter::sqlite_fail(const std::string& doing) {
  fail(path_, ": ", doing, ": ", db_ ? sqlite3_errmsg(db_) : "out of memory");
}

void IndexWriter::exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) sqlite_fail(cat("cannot run '", sql, "'"));
}

void IndexWriter::add(const IndexRow& r) {
  const int64_t values[] = {r.row_id,       r.page_id_raw,  r.page_offset_raw,  r.page_offset_raw_end,
                            r.row_group_id, r.page_id_blob, r.page_offset_blob, r.page_offset_blob_end};
  for (int i = 0; i < 8; ++i) sqlite3_bind_int64(insert_, i + 1, values[i]);
  if (sqlite3_step(insert_) != SQLITE_DONE) sqlite_fail(cat("cannot insert row ", r.row_id));
  sqlite3_reset(insert_);
}

void IndexWriter::shift_raw_pages(int64_t first_raw_page) {
  exec(cat("UPDATE INDEXES SET PAGE_ID_RAW = PAGE_ID_RAW + ", first_raw_page, ";").c_str());
}

void IndexWriter::finish() {
  sqlite3_finalize(insert_);
  insert_ = nullptr;
  exec("COMMIT;");
  if (sqlite3_close(db_) != SQLITE_OK) sqlite_fail("cannot close");
  db_ = nullptr;
  sync_file(tmp_path_);
  finished_ = true;
}

void IndexWriter::commit() {
  if (!finished_) finish();
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) fail(path_, ": cannot finish writing: ", std::strerror(errno));
  committed_ = true;
}

std::vector<IndexRow> read_index(const std::string& db_path, const std::string& shard_name) {
  if (!file_exists(db_path)) fail(db_path, ": missing (a MindRecord data file needs its .db index beside it)");
  ReadConnection c;
  auto check = [&](int rc, const char* doing) {
    if (rc != SQLITE_OK) fail(db_path, ": ", doing, ": ", c.db ? sqlite3_errmsg(c.db) : "out of memory");
  };
  check(sqlite3_open_v2(db_path.c_str(), &c.db, SQLITE_OPEN_READONLY, nullptr), "cannot open");
  check(sqlite3_prepare_v2(c.db, "SELECT NAME FROM SHARD_NAME;", -1, &c.stmt, nullptr), "not a MindRecord index");
  if (sqlite3_step(c.stmt) != SQLITE_ROW) fail(db_path, ": SHARD_NAME is empty");
  const auto* name = reinterpret_cast<const char*>(sqlite3_column_text(c.stmt, 0));
  if (!name || shard_name != name)
    fail(db_path, ": SHARD_NAME is '", name ? name : "", "', the data file is '", shard_name,
         "' (MindRecord files cannot be renamed)");
  sqlite3_finalize(c.stmt);
  c.stmt = nullptr;
  check(sqlite3_prepare_v2(c.db,
                           "SELECT ROW_ID, PAGE_ID_RAW, PAGE_OFFSET_RAW, PAGE_OFFSET_RAW_END, ROW_GROUP_ID, PAGE_ID_BLOB,"
                           " PAGE_OFFSET_BLOB, PAGE_OFFSET_BLOB_END FROM INDEXES ORDER BY ROW_ID;",
                           -1, &c.stmt, nullptr),
        "not a MindRecord index");
  std::vector<IndexRow> rows;
  int rc;
  while ((rc = sqlite3_step(c.stmt)) == SQLITE_ROW) {
    IndexRow r;
    int64_t* fields[] = {&r.row_id,       &r.page_id_raw,  &r.page_offset_raw,  &r.page_offset_raw_end,
                         &r.row_group_id, &r.page_id_blob, &r.page_offset_blob, &r.page_offset_blob_end};
    for (int i = 0; i < 8; ++i) *fields[i] = sqlite3_column_int64(c.stmt, i);
    rows.push_back(r);
  }
  if (rc != SQLITE_DONE) fail(db_path, ": reading INDEXES: ", sqlite3_errmsg(c.db));
  return rows;
}

}  // namespace baichuan::train::mindrecord
