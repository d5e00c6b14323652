// File: tests/support/netns.h
//
// Two "hosts" on this machine: network namespaces A and B joined by a veth pair (10.R.R.1 and
// 10.R.R.2 for a random R), created by the constructor and deleted by the destructor, so a failing
// test leaves none behind. set_link(false/true) cuts and restores the wire. The filesystem is
// shared; only the network is separate.
#pragma once

#include <string>

namespace syncd::test {

class NetnsPair {
 public:
  NetnsPair();
  ~NetnsPair();
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;
  const std::string& a() const noexcept { return a_; }
  const std::string& b() const noexcept { return b_; }
  const std::string& addr_a() const noexcept { return addr_a_; }
  const std::string& addr_b() const noexcept { return addr_b_; }
  void set_link(bool up);

 private:
  std::string a_, b_, veth_a_, veth_b_, addr_a_, addr_b_;
};

}  // namespace syncd::test
