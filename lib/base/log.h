// File: lib/base/log.h
//
// One named spdlog logger per module, created once by log::init() (or lazily on first use),
// fetched with log::get(Module) without touching spdlog's registry lock on hot paths.
// Levels can be set from the environment: SPDLOG_LEVEL=transport=debug,info.
// Thread affinity: any thread (spdlog loggers are thread-safe).
//
//   log::get(log::Module::apply).warn("kept old file path={} err={}", path, err.message());
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace syncd::log {

enum class Module { base, codec, delta, protocol, apply, store, watch, engine, transport, runtime, config, main, count_ };

std::string_view name(Module m) noexcept;
spdlog::logger& get(Module m);
// Sets up the loggers with a stderr sink and reads SPDLOG_LEVEL. Idempotent.
void init();
// Also appends every message to `path` (lsyncd's logfile), flushed per message, in lsyncd's
// logfile format: ctime() + " " + Category + ": " + message ("Sat Nov 21 22:42:24 2026 Normal:
// --- Startup ---"; Category is Normal, Warn, Error or Debug). Call after init() and before other
// threads log. Returns an empty string, or why the file cannot be opened.
std::string add_file_sink(const std::string& path);
// The daemon's console in lsyncd's format: "22:43:50 Normal: message", errors on stderr, the rest
// on stdout. (Without it — `attach`, whose stdout is the protocol — everything goes to stderr.)
void use_lsyncd_console();
// Daemon without a logfile: syslog(ident, facility) as lsyncd ("Normal, message"), instead of
// the console. Returns an empty string, or why (an unknown facility name).
std::string use_syslog(const std::string& ident, const std::string& facility);
// Escapes control bytes and invalid UTF-8 in a path for log output (SECURITY.md §2.4 rule 5).
std::string escape(std::string_view raw);
// escape() of a path too long to print whole: about `keep` bytes of it, its start and its end
// (the name), as "start...end (N bytes)".
std::string escape_long(std::string_view raw, size_t keep = 120);
// Length of the well-formed UTF-8 sequence at raw[i] (1 for ASCII), or 0 if there is none.
size_t utf8_length(std::string_view raw, size_t i) noexcept;

}  // namespace syncd::log
