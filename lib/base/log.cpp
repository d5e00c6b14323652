#include "lib/base/log.h"

#include <spdlog/cfg/env.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <array>
#include <memory>
#include <mutex>

namespace syncd::log {
namespace {

constexpr std::array<std::string_view, static_cast<size_t>(Module::count_)> kNames = {
    "base", "codec", "delta", "protocol", "apply", "store", "watch", "engine", "transport", "runtime",
    "config", "main"};

std::array<std::shared_ptr<spdlog::logger>, static_cast<size_t>(Module::count_)> g_loggers;
std::once_flag g_once;

void do_init() {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  sink->set_pattern("[%l] [%n] %v");
  for (size_t i = 0; i < kNames.size(); ++i) {
    auto lg = std::make_shared<spdlog::logger>(std::string(kNames[i]), sink);
    lg->set_level(spdlog::level::info);
    lg->flush_on(spdlog::level::err);
    spdlog::register_logger(lg);
    g_loggers[i] = std::move(lg);
  }
  spdlog::cfg::load_env_levels();
}

}  // namespace

std::string_view name(Module m) noexcept { return kNames[static_cast<size_t>(m)]; }

void init() { std::call_once(g_once, do_init); }

std::string add_file_sink(const std::string& path) {
  init();
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
    sink->set_pattern("%a %b %d %H:%M:%S %Y [%l] [%n] %v");
    for (auto& lg : g_loggers) {
      lg->sinks().push_back(sink);
      lg->flush_on(spdlog::level::trace);  // each line reaches the file at once (tail -f, crashes)
    }
  } catch (const spdlog::spdlog_ex& e) {
    return e.what();
  }
  return {};
}

spdlog::logger& get(Module m) {
  init();
  return *g_loggers[static_cast<size_t>(m)];
}

std::string escape(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size());
  size_t i = 0;
  auto hex = [&](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  while (i < raw.size()) {
    auto c = static_cast<unsigned char>(raw[i]);
    if (c < 0x20 || c == 0x7f || c == '\\') {
      if (c == '\\') {
        out += "\\\\";
      } else {
        hex(c);
      }
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Validate one UTF-8 sequence; anything malformed is escaped byte by byte.
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool valid = len != 0 && i + len <= raw.size() && c >= 0xC2 && c <= 0xF4;
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(raw[i + k]) & 0xC0) == 0x80;
    }
    if (valid) {
      out.append(raw.substr(i, len));
      i += len;
    } else {
      hex(c);
      ++i;
    }
  }
  return out;
}

}  // namespace syncd::log
