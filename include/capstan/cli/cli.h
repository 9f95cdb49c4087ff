#pragma once

// `kubectl capstan`: the command line for Releases, Environments, approvals and secret
// rotation. The `capstan` binary runs it when started as `kubectl-capstan` (kubectl finds
// plugins by that name on PATH; `make install` links it). It talks to the cluster with the
// operator's own client (capstan/kube) and reads kubeconfig like kubectl: --kubeconfig,
// $KUBECONFIG (a ':' list), ~/.kube/config, --context, -n/--namespace, -A.
//
// Exit codes: 0 done; 1 an error (message on stderr) or, for `status`, the revision
// failed or rolled back; 2 `status` timed out; for `diff`, 1 means there are differences.

#include <iosfwd>
#include <string>
#include <vector>

namespace capstan::cli {

// Runs one command line (args without the program name). Writes results to `out`,
// messages and errors to `err`.
int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// The program names that start the plugin instead of the operator's commands.
bool IsPluginName(const std::string& argv0);

}  // namespace capstan::cli
