// File: lib/config/lua_state.h (private to lib/config)
//
// A Lua 5.4 state with the whole standard library (configs are trusted programs, as under
// lsyncd), owned RAII-style, plus the few reads config.cpp needs from Lua tables. Lua is linked
// as its C++ build, so a Lua error raised inside a protected call unwinds C++ frames properly.
// Thread affinity: one thread per state.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct lua_State;

namespace syncd::config::detail {

class LuaState {
 public:
  LuaState();
  ~LuaState();
  LuaState(const LuaState&) = delete;
  LuaState& operator=(const LuaState&) = delete;
  lua_State* get() const noexcept { return L_; }

  // Compiles and runs `code` (chunk name `name`); the Lua error message on failure.
  std::optional<std::string> run_chunk(std::string_view code, const std::string& name);
  // luaL_loadfile + pcall: the chunk's source is "@path", as lsyncd loads configs.
  struct FileError {
    bool loading;  // true: the file did not compile (or could not be read)
    std::string message;
  };
  std::optional<FileError> run_file(const std::string& path);
  // Calls global function `fn` with no arguments; leaves `nresults` results on the stack.
  std::optional<std::string> call_global(const char* fn, int nresults);

 private:
  lua_State* L_;
};

// Reads from the table at stack index `t` (absolute index). Values of other types are
// converted the way lsyncd's messages would show them.
std::optional<std::string> field_string(lua_State* L, int t, const char* key);
std::optional<double> field_number(lua_State* L, int t, const char* key);
std::optional<bool> field_bool(lua_State* L, int t, const char* key);
// "string", "number", "boolean", "table", "function", "nil", ...
std::string field_type(lua_State* L, int t, const char* key);
// A string, or an array of strings (anything else: nullopt, with `bad` set).
std::optional<std::vector<std::string>> field_strings(lua_State* L, int t, const char* key, bool& bad);
// Value at the top of the stack shown as text: strings as-is, numbers without a needless ".0".
std::string to_text(lua_State* L, int idx);

}  // namespace syncd::config::detail
