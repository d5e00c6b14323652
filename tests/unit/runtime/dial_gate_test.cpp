#include "lib/runtime/dial_gate.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

using syncd::runtime::DialGate;

TEST_CASE("dial gate: at most N in flight per host, the rest admitted first come first served") {
  DialGate gate(2);
  std::vector<std::string> admitted;
  auto a = gate.enter("h:22", [&] { admitted.push_back("a"); });
  auto b = gate.enter("h:22", [&] { admitted.push_back("b"); });
  auto c = gate.enter("h:22", [&] { admitted.push_back("c"); });
  auto d = gate.enter("h:22", [&] { admitted.push_back("d"); });
  auto other = gate.enter("g:22", [&] { admitted.push_back("other"); });
  CHECK(a->admitted());
  CHECK(b->admitted());
  CHECK_FALSE(c->admitted());
  CHECK_FALSE(d->admitted());
  CHECK(other->admitted());  // another sshd has its own slots
  CHECK(gate.in_flight("h:22") == 2);
  CHECK(gate.waiting("h:22") == 2);
  b.reset();
  CHECK(admitted == std::vector<std::string>{"c"});
  CHECK(c->admitted());
  CHECK_FALSE(d->admitted());
  // A newcomer queues behind d even though nobody else is waiting ahead of d.
  auto e = gate.enter("h:22", [&] { admitted.push_back("e"); });
  CHECK_FALSE(e->admitted());
  a.reset();
  c.reset();
  CHECK(admitted == std::vector<std::string>{"c", "d", "e"});
  CHECK(gate.in_flight("h:22") == 2);
  d.reset();
  e.reset();
  other.reset();
  CHECK(gate.in_flight("h:22") == 0);
  CHECK(gate.waiting("h:22") == 0);
}

TEST_CASE("dial gate: a waiter that leaves gives up its place - a slot freed inside a callback moves on") {
  DialGate gate(1);
  std::vector<std::string> admitted;
  std::unique_ptr<DialGate::Ticket> b, c;
  auto a = gate.enter("h:22", [] {});
  b = gate.enter("h:22", [&] {
    admitted.push_back("b");
    b.reset();  // a dial that fails at once: its slot goes straight on to c
  });
  c = gate.enter("h:22", [&] { admitted.push_back("c"); });
  auto d = gate.enter("h:22", [&] { admitted.push_back("d"); });
  d.reset();  // left the line before its turn: never called
  a.reset();
  CHECK(admitted == std::vector<std::string>{"b", "c"});
  CHECK(c->admitted());
  CHECK(gate.in_flight("h:22") == 1);
  CHECK(gate.waiting("h:22") == 0);
  c.reset();
  CHECK(gate.in_flight("h:22") == 0);
}

TEST_CASE("dial gate: tickets may outlive the gate") {
  auto gate = std::make_unique<DialGate>(1);
  auto a = gate->enter("h:22", [] {});
  auto b = gate->enter("h:22", [] {});
  gate.reset();
  a.reset();  // admits b without the gate
  CHECK(b->admitted());
}
