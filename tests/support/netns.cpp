#include "tests/support/netns.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "tests/support/tmpdir.h"

namespace syncd::test {
namespace {

void must(const std::string& cmd) {
  if (run(cmd) != 0) {
    std::fprintf(stderr, "netns fixture: '%s' failed\n", cmd.c_str());
    std::abort();
  }
}

}  // namespace

NetnsPair::NetnsPair() {
  if (::access("/usr/sbin/ip", X_OK) != 0) {
    std::fprintf(stderr, "SKIP: iproute2 (ip) is not installed\n");
    std::exit(77);
  }
  std::random_device rd;
  const unsigned r = rd() % 200 + 20;
  const std::string tag = std::to_string(::getpid() % 100000);
  a_ = "syncd-a-" + tag;
  b_ = "syncd-b-" + tag;
  veth_a_ = "sva" + tag;
  veth_b_ = "svb" + tag;
  addr_a_ = "10." + std::to_string(r) + ".77.1";
  addr_b_ = "10." + std::to_string(r) + ".77.2";
  (void)run("ip netns del " + a_ + " 2>/dev/null; ip netns del " + b_ + " 2>/dev/null");
  must("ip netns add " + a_);
  must("ip netns add " + b_);
  must("ip link add " + veth_a_ + " type veth peer name " + veth_b_);
  must("ip link set " + veth_a_ + " netns " + a_);
  must("ip link set " + veth_b_ + " netns " + b_);
  must("ip -n " + a_ + " addr add " + addr_a_ + "/24 dev " + veth_a_);
  must("ip -n " + b_ + " addr add " + addr_b_ + "/24 dev " + veth_b_);
  for (const auto& [ns, dev] : {std::pair{a_, veth_a_}, std::pair{b_, veth_b_}}) {
    must("ip -n " + ns + " link set lo up");
    must("ip -n " + ns + " link set " + dev + " up");
  }
}

NetnsPair::~NetnsPair() {
  // Deleting a namespace removes its end of the veth pair, and with it the other end.
  (void)run("ip netns del " + a_ + " 2>/dev/null");
  (void)run("ip netns del " + b_ + " 2>/dev/null");
}

void NetnsPair::set_link(bool up) {
  must("ip -n " + a_ + " link set " + veth_a_ + (up ? " up" : " down"));
}

}  // namespace syncd::test
