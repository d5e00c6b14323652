#include "lib/config/lua_state.h"

#include <lua.hpp>

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace syncd::config::detail {

LuaState::LuaState() : L_(luaL_newstate()) {
  if (L_ == nullptr) throw std::bad_alloc();
  luaL_openlibs(L_);
}

LuaState::~LuaState() { lua_close(L_); }

namespace {
std::string pop_message(lua_State* L) {
  std::string m = lua_isstring(L, -1) ? lua_tostring(L, -1) : std::string("(error object is not a string)");
  lua_pop(L, 1);
  return m;
}
}  // namespace

std::optional<std::string> LuaState::run_chunk(std::string_view code, const std::string& name) {
  if (luaL_loadbuffer(L_, code.data(), code.size(), name.c_str()) != LUA_OK) return pop_message(L_);
  if (lua_pcall(L_, 0, 0, 0) != LUA_OK) return pop_message(L_);
  return std::nullopt;
}

std::optional<LuaState::FileError> LuaState::run_file(const std::string& path) {
  if (luaL_loadfile(L_, path.c_str()) != LUA_OK) return FileError{true, pop_message(L_)};
  if (lua_pcall(L_, 0, 0, 0) != LUA_OK) return FileError{false, pop_message(L_)};
  return std::nullopt;
}

std::optional<std::string> LuaState::call_global(const char* fn, int nresults) {
  lua_getglobal(L_, fn);
  if (lua_pcall(L_, 0, nresults, 0) != LUA_OK) return pop_message(L_);
  return std::nullopt;
}

std::string to_text(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TBOOLEAN) return lua_toboolean(L, idx) ? "true" : "false";
  if (lua_isinteger(L, idx)) return std::to_string(lua_tointeger(L, idx));
  if (lua_type(L, idx) == LUA_TNUMBER) {
    const double d = lua_tonumber(L, idx);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.14g", d);
    return buf;
  }
  if (lua_type(L, idx) == LUA_TSTRING) return lua_tostring(L, idx);
  return luaL_typename(L, idx);
}

std::optional<std::string> field_string(lua_State* L, int t, const char* key) {
  lua_getfield(L, t, key);
  std::optional<std::string> r;
  if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) r = to_text(L, -1);
  lua_pop(L, 1);
  return r;
}

std::optional<double> field_number(lua_State* L, int t, const char* key) {
  lua_getfield(L, t, key);
  std::optional<double> r;
  if (lua_type(L, -1) == LUA_TNUMBER) r = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return r;
}

std::optional<bool> field_bool(lua_State* L, int t, const char* key) {
  lua_getfield(L, t, key);
  std::optional<bool> r;
  if (lua_type(L, -1) == LUA_TBOOLEAN) r = lua_toboolean(L, -1) != 0;
  lua_pop(L, 1);
  return r;
}

std::string field_type(lua_State* L, int t, const char* key) {
  lua_getfield(L, t, key);
  std::string r = luaL_typename(L, -1);
  lua_pop(L, 1);
  return r;
}

std::optional<std::vector<std::string>> field_strings(lua_State* L, int t, const char* key, bool& bad) {
  bad = false;
  lua_getfield(L, t, key);
  std::optional<std::vector<std::string>> r;
  if (lua_type(L, -1) == LUA_TSTRING) {
    r = std::vector<std::string>{lua_tostring(L, -1)};
  } else if (lua_type(L, -1) == LUA_TTABLE) {
    r.emplace();
    const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, -1));
    for (lua_Integer i = 1; i <= n; ++i) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
        r->push_back(to_text(L, -1));
      } else {
        bad = true;
      }
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    bad = true;
  }
  lua_pop(L, 1);
  return r;
}

}  // namespace syncd::config::detail
