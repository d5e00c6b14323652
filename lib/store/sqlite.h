// File: lib/store/sqlite.h
//
// Thin RAII over the SQLite C API for the index: Db owns a connection, Stmt a prepared statement
// (reset and rebound for reuse). Errors become Error values carrying sqlite3_errmsg and the SQL.
// Db::prepare caches statements by their SQL text: parsing and planning cost more than running
// the index's one-row statements (measured: a third of the index's CPU per synced file). A
// cached Stmt is reset and returned to the cache when it goes out of scope; a statement already
// in use (a nested use of the same SQL) gets a fresh, uncached one.
// Thread affinity: one Db per thread (SQLite's serialized mode is not relied on).
//
//   SYNCD_TRY_ASSIGN(db, Db::open("/var/lib/syncd/x/index.db"));
//   SYNCD_TRY(db.exec("PRAGMA journal_mode=WAL"));
//   SYNCD_TRY_ASSIGN(st, db.prepare("SELECT v FROM meta WHERE k = ?"));
//   st.bind_text(1, "node_id"); SYNCD_TRY_ASSIGN(row, st.step()); if (row) st.column_int64(0);
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "lib/base/bytes.h"
#include "lib/base/result.h"

namespace syncd::store {

class Stmt {
 public:
  Stmt() = default;
  // `in_use`: the cache's flag for a borrowed statement (cleared, and the statement reset, when
  // this Stmt dies); nullptr: this Stmt owns and finalizes it.
  Stmt(sqlite3_stmt* s, sqlite3* db, bool* in_use = nullptr) : s_(s, Release{in_use}), db_(db) {}
  void bind_int64(int i, int64_t v) { sqlite3_bind_int64(s_.get(), i, v); }
  void bind_text(int i, std::string_view v) {
    sqlite3_bind_text(s_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_blob(int i, ByteSpan v) {
    sqlite3_bind_blob(s_.get(), i, v.empty() ? "" : static_cast<const void*>(v.data()),
                      static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // true: a row is available; false: done. Resets automatically when done or on error.
  Result<bool> step();
  int64_t column_int64(int i) { return sqlite3_column_int64(s_.get(), i); }
  ByteSpan column_blob(int i) {
    const void* p = sqlite3_column_blob(s_.get(), i);
    const int n = sqlite3_column_bytes(s_.get(), i);
    return {static_cast<const uint8_t*>(p), static_cast<size_t>(n)};
  }
  void reset() {
    sqlite3_reset(s_.get());
    sqlite3_clear_bindings(s_.get());
  }

 private:
  struct Release {
    bool* in_use = nullptr;
    void operator()(sqlite3_stmt* s) const noexcept {
      if (in_use == nullptr) {
        sqlite3_finalize(s);
        return;
      }
      sqlite3_reset(s);
      sqlite3_clear_bindings(s);
      *in_use = false;
    }
  };
  std::unique_ptr<sqlite3_stmt, Release> s_;
  sqlite3* db_ = nullptr;
};

class Db {
 public:
  static Result<Db> open(const std::string& path);
  Status exec(const char* sql);
  Result<Stmt> prepare(const char* sql);
  sqlite3* get() const noexcept { return db_.get(); }

 private:
  struct Close {
    void operator()(sqlite3* d) const noexcept { sqlite3_close_v2(d); }
  };
  struct Cached {
    struct Finalize {
      void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
    };
    std::unique_ptr<sqlite3_stmt, Finalize> stmt;
    bool in_use = false;
  };
  // Declared after db_: destroyed first, so statements are finalized before the close.
  std::unique_ptr<sqlite3, Close> db_;
  std::unordered_map<std::string, std::unique_ptr<Cached>> cache_;
};

Error sqlite_error(sqlite3* db, const std::string& what);

}  // namespace syncd::store
