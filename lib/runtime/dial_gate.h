// File: lib/runtime/dial_gate.h
//
// DialGate: at most N SSH sessions of one daemon being set up at a time to one sshd (host:port);
// the others wait their turn, first come first served. sshd's MaxStartups (default 10:30:100)
// drops unauthenticated connections at random once 10 are pending, so a config of 100 syncs to
// one host started 100 handshakes at once and most of them failed ("Failed getting banner") and
// backed off. A session holds its ticket from the dial until the peer's HELLO arrived or the
// session failed. Thread affinity: the loop thread of the pushes that share it.
//
//   auto gate = std::make_shared<DialGate>();          // one per daemon, shared by its pushes
//   auto t = gate->enter("node2:22", [&] { retry.start(0); });
//   if (!t->admitted()) return;                          // called back when it is
//   ...dial...; t.reset() once the peer answered or the dial failed
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace syncd::runtime {

class DialGate {
 public:
  // sshd lets 10 unauthenticated connections wait before it starts dropping: stay below it, so
  // other clients of that sshd (a peer's own sessions, an operator's ssh) still get in.
  static constexpr size_t kDefaultPerHost = 8;

  class Ticket;
  explicit DialGate(size_t per_host = kDefaultPerHost);
  ~DialGate();
  DialGate(const DialGate&) = delete;
  DialGate& operator=(const DialGate&) = delete;

  // A place in `key`'s line. Admitted at once when a slot is free; otherwise `on_admitted` runs
  // once a slot frees (from inside another ticket's release: it should only schedule the dial).
  // Destroying the ticket frees its slot or leaves the line.
  std::unique_ptr<Ticket> enter(const std::string& key, std::function<void()> on_admitted);

  size_t in_flight(const std::string& key) const;
  size_t waiting(const std::string& key) const;

 private:
  struct Line {
    size_t in_flight = 0;
    std::deque<Ticket*> waiting;
  };
  struct State {
    size_t per_host;
    std::map<std::string, Line> lines;
  };
  std::shared_ptr<State> state_;  // tickets keep it: a ticket may outlive the gate's owner
};

class DialGate::Ticket {
 public:
  ~Ticket();
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  bool admitted() const noexcept { return admitted_; }

 private:
  friend class DialGate;
  Ticket(std::shared_ptr<State> state, std::string key, std::function<void()> on_admitted)
      : state_(std::move(state)), key_(std::move(key)), on_admitted_(std::move(on_admitted)) {}
  std::shared_ptr<State> state_;
  std::string key_;
  std::function<void()> on_admitted_;
  bool admitted_ = false;
};

}  // namespace syncd::runtime
