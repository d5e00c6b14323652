#include "lib/store/sqlite.h"

#include <cerrno>
#include <mutex>

namespace syncd::store {

Error sqlite_error(sqlite3* db, const std::string& what) {
  const int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : "sqlite error");
  // Which database: an operator with several syncs needs the state directory that is full.
  const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
  if (file != nullptr && *file != '\0' && what.find(file) == std::string::npos) msg = std::string(file) + ": " + msg;
  // Disk full and I/O errors need an operator; a lock is transient; anything else is a bug or
  // corruption.
  if ((code & 0xff) == SQLITE_FULL) return Error::from_errno(std::move(msg), ENOSPC);
  if ((code & 0xff) == SQLITE_IOERR || (code & 0xff) == SQLITE_CANTOPEN) {
    return Error::from_errno(std::move(msg), EIO);
  }
  if ((code & 0xff) == SQLITE_READONLY) return Error::from_errno(std::move(msg), EROFS);
  // Another process holds the database (a second syncd, an sqlite3 shell): not corruption.
  if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) return Error::from_errno(std::move(msg), EBUSY);
  return Error::make(errc::corrupt, std::move(msg));
}

Result<bool> Stmt::step() {
  const int rc = sqlite3_step(s_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) {
    reset();
    return false;
  }
  Error e = sqlite_error(db_, std::string("step ") + sqlite3_sql(s_.get()));
  reset();
  return e;
}

Result<Db> Db::open(const std::string& path) {
  // SQLite's global allocation statistics take a process-wide mutex on every malloc; with a
  // sender and a receiver index on two threads that mutex was the most contended lock in syncd.
  // Must precede sqlite3_initialize (a later call fails harmlessly with SQLITE_MISUSE).
  static std::once_flag once;
  std::call_once(once, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  Db db;
  db.db_.reset(raw);
  if (rc != SQLITE_OK) return sqlite_error(raw, "open index " + path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 5000);
  return db;
}

Status Db::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    return sqlite_error(db_.get(), std::string("exec ") + sql);
  }
  return {};
}

Result<Stmt> Db::prepare(const char* sql) {
  auto& slot = cache_[sql];
  if (!slot) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
      cache_.erase(sql);
      return sqlite_error(db_.get(), std::string("prepare ") + sql);
    }
    slot = std::make_unique<Cached>();
    slot->stmt.reset(s);
  }
  if (!slot->in_use) {
    slot->in_use = true;
    return Stmt(slot->stmt.get(), db_.get(), &slot->in_use);
  }
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
    return sqlite_error(db_.get(), std::string("prepare ") + sql);
  }
  return Stmt(s, db_.get());
}

}  // namespace syncd::store
