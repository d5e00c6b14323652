#include "lib/transport/ssh_command.h"

#include <doctest/doctest.h>

using namespace syncd;
using namespace syncd::transport;

TEST_CASE("rsh lines split like a shell - quotes and escapes - no expansion") {
  auto w = split_command_line(R"(ssh -i '/root/my keys/id' -o "ProxyCommand=nc %h \"x\"" a\ b)");
  REQUIRE(w.ok());
  CHECK(*w == std::vector<std::string>{"ssh", "-i", "/root/my keys/id", "-o", "ProxyCommand=nc %h \"x\"", "a b"});
  CHECK_FALSE(split_command_line("ssh 'unterminated").ok());
  CHECK_FALSE(split_command_line("ssh -i $HOME/key").ok());
  CHECK_FALSE(split_command_line("ssh ; rm -rf /").ok());
  CHECK_FALSE(split_command_line("   ").ok());
}

TEST_CASE("the acme2certifier guide's rsh is fully understood") {
  auto c = SshCommand::parse("/usr/bin/ssh -l root -i /root/.ssh/id_lsyncd -o StrictHostKeyChecking=no -p2222 -4");
  REQUIRE(c.ok());
  CHECK(c->login == "root");
  CHECK(c->identities == std::vector<std::string>{"/root/.ssh/id_lsyncd"});
  CHECK(c->port == 2222);
  CHECK(c->family == 4);
  CHECK(c->option("stricthostkeychecking") == "no");
  CHECK(c->option("StrictHostKeyChecking") == "no");
  CHECK_FALSE(c->needs_openssh);
}

TEST_CASE("what only the OpenSSH client can do is recognised with the reason") {
  auto wrapper = SshCommand::parse("sshpass -p secret ssh");
  REQUIRE(wrapper.ok());
  CHECK(wrapper->needs_openssh);
  CHECK(wrapper->needs_openssh_why.find("sshpass") != std::string::npos);
  auto jump = SshCommand::parse("ssh -J bastion");
  REQUIRE(jump.ok());
  CHECK(jump->needs_openssh);
  auto cm = SshCommand::parse("ssh -o ControlMaster=auto -o ControlPersist=60");
  REQUIRE(cm.ok());
  CHECK(cm->needs_openssh);
  CHECK(cm->needs_openssh_why.find("ControlMaster") != std::string::npos);
  CHECK_FALSE(SshCommand::parse("ssh -p").ok());
  CHECK_FALSE(SshCommand::parse("ssh -p 99999").ok());
  CHECK_FALSE(SshCommand::parse("ssh node2").ok());  // the host is syncd's to add
}

TEST_CASE("argv for a host puts syncd's safety options first and quotes the remote command") {
  auto c = SshCommand::parse("ssh -p 2222");
  REQUIRE(c.ok());
  const auto argv = c->argv_for("root@node2", remote_command({"syncd", "attach", "/opt/a b", "it's"}));
  REQUIRE(argv.size() >= 5);
  CHECK(argv[0] == "ssh");
  CHECK(argv[1] == "-o");
  CHECK(argv[2] == "BatchMode=yes");
  CHECK(argv[argv.size() - 2] == "root@node2");
  CHECK(argv.back() == "syncd attach '/opt/a b' 'it'\\''s'");
  CHECK(shell_quote("/plain/path-1.2") == "/plain/path-1.2");
  CHECK(shell_quote("") == "''");
}
