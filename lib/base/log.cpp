#include "lib/base/log.h"

#include <spdlog/cfg/env.h>
#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/ansicolor_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

#include <cstdlib>
#include <cstring>

#include <array>
#include <memory>
#include <mutex>

namespace syncd::log {
namespace {

// lsyncd opens its logfile for every message, so logrotate may simply move it away. This sink
// keeps the file open but checks, per message, that the path still names the file it has open
// (one stat), and reopens (creates) it when not: a rotated log continues in the new file.
class ReopeningFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopeningFileSink(std::string path) : path_(std::move(path)) { reopen(); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    struct stat st{};
    if (::stat(path_.c_str(), &st) != 0 || st.st_ino != ino_ || st.st_dev != dev_) {
      try {
        reopen();
      } catch (const spdlog::spdlog_ex&) {
        return;  // the directory is gone or unwritable: this line is lost, the next one retries
      }
    }
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    file_.write(buf);
  }
  void flush_() override { file_.flush(); }

 private:
  void reopen() {
    file_.close();
    file_.open(path_, false);  // append; throws spdlog_ex with the errno text
    struct stat st{};
    if (::stat(path_.c_str(), &st) == 0) {
      ino_ = st.st_ino;
      dev_ = st.st_dev;
    }
  }
  std::string path_;
  spdlog::details::file_helper file_;
  ino_t ino_ = 0;
  dev_t dev_ = 0;
};

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

// %* -> lsyncd's category for the level.
class CategoryFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char* c = msg.level >= spdlog::level::err ? "Error" : msg.level == spdlog::level::warn ? "Warn"
                    : msg.level == spdlog::level::info ? "Normal" : "Debug";
    dest.append(c, c + std::strlen(c));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<CategoryFlag>(); }
};

// %& -> ctime() without its newline ("Sat Nov  1 22:42:24 2026": day padded with a space).
class CtimeFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    // The formatter only fills its tm for patterns with built-in time flags: compute it here.
    const std::time_t t = std::chrono::system_clock::to_time_t(msg.time);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char buf[64];
    const size_t n = std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm);
    dest.append(buf, buf + n);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<CtimeFlag>(); }
};

std::unique_ptr<spdlog::formatter> lsyncd_formatter(const std::string& pattern) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<CategoryFlag>('*').add_flag<CtimeFlag>('&').set_pattern(pattern);
  return f;
}

void replace_sinks(const std::vector<spdlog::sink_ptr>& sinks) {
  for (auto& lg : g_loggers) {
    // A file sink added before stays (-logfile); the console ones are replaced.
    std::vector<spdlog::sink_ptr> keep;
    for (auto& s : lg->sinks()) {
      if (std::dynamic_pointer_cast<ReopeningFileSink>(s)) keep.push_back(s);
    }
    keep.insert(keep.end(), sinks.begin(), sinks.end());
    lg->sinks() = keep;
  }
}

}  // namespace

void use_lsyncd_console() {
  init();
  auto out = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  auto err = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  out->set_formatter(lsyncd_formatter("%H:%M:%S %*: %v"));
  err->set_formatter(lsyncd_formatter("%H:%M:%S %*: %v"));
  // Errors to stderr, the rest to stdout, like lsyncd.
  err->set_level(spdlog::level::err);
  class BelowError final : public spdlog::sinks::base_sink<std::mutex> {
   public:
    explicit BelowError(spdlog::sink_ptr s) : s_(std::move(s)) {}
   protected:
    void sink_it_(const spdlog::details::log_msg& m) override {
      if (m.level < spdlog::level::err) s_->log(m);
    }
    void flush_() override { s_->flush(); }
   private:
    spdlog::sink_ptr s_;
  };
  replace_sinks({std::make_shared<BelowError>(out), std::static_pointer_cast<spdlog::sinks::sink>(err)});
  for (auto& lg : g_loggers) lg->flush_on(spdlog::level::trace);
}

std::string use_syslog(const std::string& ident, const std::string& facility) {
  init();
  static const std::pair<const char*, int> kFacilities[] = {
      {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"cron", LOG_CRON},     {"daemon", LOG_DAEMON},
      {"ftp", LOG_FTP},       {"kern", LOG_KERN},         {"lpr", LOG_LPR},       {"mail", LOG_MAIL},
      {"news", LOG_NEWS},     {"syslog", LOG_SYSLOG},     {"user", LOG_USER},     {"uucp", LOG_UUCP},
      {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},     {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
      {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},     {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
  int fac = -1;
  if (!facility.empty() && std::isdigit(static_cast<unsigned char>(facility[0]))) fac = std::atoi(facility.c_str());
  for (const auto& [n, v] : kFacilities) {
    if (::strcasecmp(n, facility.c_str()) == 0) fac = v;
  }
  if (fac < 0) return "Logging facility \"" + facility + "\" unknown.";
  auto sink = std::make_shared<spdlog::sinks::syslog_sink_mt>(ident, 0, fac, true);
  sink->set_formatter(lsyncd_formatter("%*, %v"));
  replace_sinks({sink});
  return {};
}

std::string_view name(Module m) noexcept { return kNames[static_cast<size_t>(m)]; }

void init() { std::call_once(g_once, do_init); }

std::string add_file_sink(const std::string& path) {
  init();
  try {
    auto sink = std::make_shared<ReopeningFileSink>(path);
    sink->set_formatter(lsyncd_formatter("%& %*: %v"));
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

size_t utf8_length(std::string_view raw, size_t i) noexcept {
  if (i >= raw.size()) return 0;
  const auto c = static_cast<unsigned char>(raw[i]);
  if (c < 0x80) return 1;
  const size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || i + len > raw.size() || c < 0xC2 || c > 0xF4) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(raw[i + k]) & 0xC0) != 0x80) return 0;
  }
  return len;
}

std::string escape_long(std::string_view raw, size_t keep) {
  if (raw.size() <= keep) return escape(raw);
  size_t head = keep / 2, tail = raw.size() - keep / 2;
  // Not inside a UTF-8 sequence at either cut.
  while (head > 0 && (static_cast<unsigned char>(raw[head]) & 0xC0) == 0x80) --head;
  while (tail < raw.size() && (static_cast<unsigned char>(raw[tail]) & 0xC0) == 0x80) ++tail;
  return escape(raw.substr(0, head)) + "..." + escape(raw.substr(tail)) + " (" + std::to_string(raw.size()) + " bytes)";
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
    // One UTF-8 sequence; anything malformed is escaped byte by byte.
    if (const size_t len = utf8_length(raw, i); len != 0) {
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
