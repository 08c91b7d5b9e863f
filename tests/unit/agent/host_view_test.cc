#include "kspm/agent/host/host_view.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "fixtures/host_builder.h"

namespace kspm::agent::host {
namespace {

using kspm::testing::BuildHostRoot;
using kspm::testing::TempDir;

TEST(JoinUnderRoot, DotDotCannotEscapeTheRoot) {
  EXPECT_EQ(JoinUnderRoot("/host", "/../../etc/shadow"), "/host/etc/shadow");
  EXPECT_EQ(JoinUnderRoot("/", "/etc/kubernetes"), "/etc/kubernetes");
  EXPECT_EQ(JoinUnderRoot("/host/", "etc//x/./y"), "/host/etc/x/y");
}

TEST(FsHostView, AbsoluteSymlinksResolveInsideTheHostRoot) {
  TempDir dir;
  bool owners = false;
  ASSERT_TRUE(BuildHostRoot(R"(
entries:
  - {path: /etc/kubernetes/real/kubelet.conf, mode: "0600", content: "x"}
  - {path: /etc/kubernetes/kubelet.conf, type: symlink, target: /etc/kubernetes/real/kubelet.conf}
  - {path: /var/run, type: symlink, target: ../run}
  - {path: /run/app.sock, type: socket, mode: "0660"}
)",
                            dir.path(), &owners)
                  .ok());
  auto host = MakeFsHostView(dir.path());
  ASSERT_TRUE(host.ok());
  auto info = (*host)->Stat("/etc/kubernetes/kubelet.conf");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->is_symlink);
  EXPECT_EQ(info->resolved_path, "/etc/kubernetes/real/kubelet.conf");
  EXPECT_EQ(info->mode, 0600u);
  // A directory symlink on the way (/var/run -> ../run) is followed too.
  auto sock = (*host)->Stat("/var/run/app.sock");
  ASSERT_TRUE(sock.ok()) << sock.status();
  EXPECT_TRUE(sock->IsSocket());
  EXPECT_EQ(sock->resolved_path, "/run/app.sock");
}

TEST(FsHostView, MissingFileIsNotFound) {
  TempDir dir;
  auto host = MakeFsHostView(dir.path());
  ASSERT_TRUE(host.ok());
  EXPECT_EQ((*host)->Stat("/etc/nothing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*host)->ReadFile("/etc/nothing").status().code(), absl::StatusCode::kNotFound);
}

TEST(FsHostView, OwnerNamesComeFromTheHostsPasswdNotTheAgents) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown fixture files";
  TempDir dir;
  bool owners = false;
  // uid 2379 has no name on this machine; on the fixture host it is etcd.
  ASSERT_TRUE(BuildHostRoot(R"(
users: [{name: etcd, uid: 2379}]
groups: [{name: etcd, gid: 2379}]
entries:
  - {path: /var/lib/etcd, type: dir, mode: "0700", owner: etcd:etcd}
  - {path: /etc/odd, mode: "0600", owner: "4242:4242"}
)",
                            dir.path(), &owners)
                  .ok());
  auto host = MakeFsHostView(dir.path());
  ASSERT_TRUE(host.ok());
  auto info = (*host)->Stat("/var/lib/etcd");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->Owner(), "etcd:etcd");
  EXPECT_EQ(info->uid, 2379u);
  auto odd = (*host)->Stat("/etc/odd");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->Owner(), "4242:4242");  // unknown ids are shown as numbers
}

TEST(FsHostView, ListsFakeProcessesAndDetectsTruncatedCmdline) {
  TempDir dir;
  bool owners = false;
  ASSERT_TRUE(BuildHostRoot(R"(
processes:
  - {pid: 812, comm: kubelet, argv: [/usr/bin/kubelet, --config=/c.yaml], env: [A=1, B=2]}
  - {pid: 900, comm: kube-apiserver, argv: [kube-apiserver, --profil], truncated: true}
)",
                            dir.path(), &owners)
                  .ok());
  auto host = MakeFsHostView(dir.path());
  ASSERT_TRUE(host.ok());
  auto procs = (*host)->ListProcesses();
  ASSERT_TRUE(procs.ok());
  ASSERT_EQ(procs->size(), 2u);
  EXPECT_EQ((*procs)[0].pid, 812);
  EXPECT_EQ((*procs)[0].argv, (std::vector<std::string>{"/usr/bin/kubelet", "--config=/c.yaml"}));
  EXPECT_FALSE((*procs)[0].cmdline_truncated);
  EXPECT_TRUE((*procs)[1].cmdline_truncated);
  EXPECT_EQ((*procs)[1].argv.back(), "--profil");
  auto env = (*host)->ProcessEnviron(812);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(*env, (std::vector<std::string>{"A=1", "B=2"}));
}

TEST(FsHostView, HostRootMustBeADirectory) {
  auto host = MakeFsHostView("/nonexistent/kspm-root");
  ASSERT_FALSE(host.ok());
  EXPECT_NE(std::string(host.status().message()).find("/nonexistent/kspm-root"), std::string::npos);
}

}  // namespace
}  // namespace kspm::agent::host
