#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kspm/agent/discovery/discovery.h"

// Components embedded in another process (k3s runs the API server, kubelet, etcd... inside
// `k3s server`): their command line is built from the host's options as it reads them.
namespace kspm::agent::discovery::internal {

// The last component of a path (`/usr/bin/kubelet` -> `kubelet`).
std::string Basename(std::string_view path);

// A command line rewritten by setproctitle (k3s): one argument holding `/usr/local/bin/k3s server`
// with spaces, the real flags gone.
bool TitleOnly(const std::vector<std::string>& argv);

// The index of the first flag when `argv` runs `pattern` (`kubelet`, `hyperkube kubelet`). With
// `title_ok` (hosts known to rewrite their title: k3s), a title-only command line is matched by
// its words (and has no flags: the index is past its end); any other component is matched by
// its real argv only, so a process merely titled like one is not taken for it.
std::optional<size_t> MatchProcess(const std::vector<std::string>& argv,
                                   const std::vector<std::string>& pattern, bool title_ok = false);

// Builds the command line of a component embedded in another process (k3s): the host's
// built-in and conditional arguments, then the `arg_flag` list of its options. Leaves `c`
// absent when no embedding process runs it.
void FindEmbedded(const host::HostView& host, const checks::ComponentSpec& spec,
                  const std::vector<host::ProcessInfo>& processes, Component& c);

}  // namespace kspm::agent::discovery::internal
