#pragma once

// A Kubernetes API client: reads (GET), plus POST for reviews such as TokenReview; HTTPS with
// libcurl, bearer tokens or client certificates, paged lists, retries with backoff on 429
// (honouring Retry-After) and 5xx, and errors that say what to fix (401: the credentials; 403: the
// permission, named as verb, resource and group).
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kspm/collector/k8s/object.h"
#include "kspm/collector/k8s/resources.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::k8s {

// A client-go credential plugin (a kubeconfig user's `exec`): a command that prints an
// ExecCredential with a bearer token or a client certificate and key, as EKS (`aws eks
// get-token`), GKE (`gke-gcloud-auth-plugin`) and AKS (`kubelogin`) kubeconfigs use. The client
// runs it when it first needs credentials, again when they expire, and once more after a 401.
struct ExecPlugin {
  std::string command;  // a bare name is searched in PATH; a relative path is resolved at load
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // added to the collector's environment
  std::string api_version;  // client.authentication.k8s.io/v1 or v1beta1
  std::string install_hint;
  bool provide_cluster_info = false;  // KUBERNETES_EXEC_INFO carries spec.cluster
  std::string description;            // `kubeconfig PATH: user NAME`, for messages
};

// What a plugin printed.
struct ExecCredential {
  std::string token;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::optional<std::chrono::system_clock::time_point> expires;  // none: valid until a 401
};

// Where the API server is and how to authenticate. Filled from a kubeconfig or from the pod's
// service account; constructors of the client do no I/O beyond reading `token_file`.
struct Connection {
  std::string server;  // https://host:port
  std::string ca_pem;  // CA bundle; empty: the system's trust store
  bool insecure_skip_tls_verify = false;
  std::string token;       // bearer token
  std::string token_file;  // read before each request (bound tokens rotate about hourly)
  std::string client_cert_pem;
  std::string client_key_pem;
  std::optional<ExecPlugin> exec;  // credentials from a plugin instead of the fields above
  std::string description;         // for messages: `kubeconfig /root/.kube/config (context prod)`
};

// Runs `plugin` once without a terminal (stdin is /dev/null) and reads its ExecCredential.
// Errors name the plugin: not found (with its install hint), a non-zero exit (with the end of
// its stderr), no answer within `timeout` (it is killed), or an answer that is not an
// ExecCredential of the plugin's apiVersion with a token or a certificate and key.
[[nodiscard]] absl::StatusOr<ExecCredential> RunExecPlugin(const ExecPlugin& plugin,
                                                           const Connection& cluster,
                                                           std::chrono::milliseconds timeout);

// The current context (or `context`) of a kubeconfig: server, CA (file or inline data),
// insecure-skip-tls-verify, client certificate and key (files or inline data), token or
// tokenFile, or an exec credential plugin (not run here). Relative file names are resolved
// against the kubeconfig's folder. The legacy auth-provider plugins (removed from kubectl in
// 1.26) and exec plugins that insist on a terminal are refused with a message.
[[nodiscard]] absl::StatusOr<Connection> LoadKubeconfig(const std::string& path,
                                                        const std::string& context = "");

// In-cluster: KUBERNETES_SERVICE_HOST/PORT and the service account's token and CA under
// `account_dir` (normally /var/run/secrets/kubernetes.io/serviceaccount). Unavailable when the
// variables are not set.
[[nodiscard]] absl::StatusOr<Connection> InClusterConnection(
    const std::string& account_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

struct ClientOptions {
  std::chrono::milliseconds timeout{30000};          // a whole request
  std::chrono::milliseconds connect_timeout{10000};  // TCP and TLS set-up
  int page_size = 500;                               // `limit` of each list request
  int max_attempts = 5;                              // per request, retries included
  std::chrono::milliseconds backoff{250};            // first retry; doubles, with jitter
  std::chrono::milliseconds max_backoff{8000};
  std::chrono::seconds max_retry_after{60};       // a longer Retry-After is cut to this
  std::chrono::milliseconds exec_timeout{60000};  // a credential plugin's run
  // Sleeps between attempts; tests replace it to record the delays.
  std::function<void(std::chrono::milliseconds)> sleep;
};

// `metadata.resourceVersion` of an object or list, or "" when absent.
std::string ResourceVersionOf(const nlohmann::json& object);
struct ListPage;
// The same of a list page.
std::string PageVersion(const ListPage& page);

// One page of a list as the API sent it: its text, and its own `metadata` (resourceVersion,
// continue), already read.
struct ListPage {
  std::string_view body;
  nlohmann::json metadata;
};

// Adds the objects of one page to `out`, as AddDocument does for the parsed page: items are read
// by the fast List reader (list_reader.h), anything else by nlohmann. InvalidArgument names the
// items that could not be added; Internal means the page is not JSON.
[[nodiscard]] absl::Status AddListPage(const ListPage& page, const std::string& origin,
                                       Snapshot& out, size_t* added = nullptr,
                                       std::string_view default_kind = {});

// One change a watch saw.
struct WatchEvent {
  std::string type;  // ADDED, MODIFIED, DELETED or BOOKMARK
  nlohmann::json object;
};

// The seam between the cluster checks and the API. Implementations are not thread-safe; use
// one per scan.
class ApiClient {
 public:
  virtual ~ApiClient() = default;
  // Every object of `type` in every namespace, one page at a time (limit/continue). `page` gets
  // each page (its text is parsed by the caller: AddListPage); an error it returns stops the
  // listing. A page whose structure is not JSON is Internal. A 410 (the continue token expired)
  // restarts the list once from the beginning, after `restart` is called to drop what was seen.
  [[nodiscard]] virtual absl::Status List(const ResourceType& type,
                                          const std::function<absl::Status(const ListPage&)>& page,
                                          const std::function<void()>& restart) = 0;
  // Changes of `type` after `resource_version` (a list's metadata.resourceVersion, or the last
  // event's or bookmark's), bookmarks included, handed to `handle` as they arrive (GET
  // ?watch=1&allowWatchBookmarks=true). OK when the server ends the stream (about `timeout`
  // later), when `handle` returns false, or when `stop` becomes true (checked about once a
  // second). Aborted ("410 Gone") when the version is too old and the caller must list again;
  // Unavailable for a broken stream or a server error; PermissionDenied, Unauthenticated and
  // NotFound as for List. No retries here: the caller backs off.
  [[nodiscard]] virtual absl::Status Watch(const ResourceType& type,
                                           const std::string& resource_version,
                                           std::chrono::seconds timeout,
                                           const std::function<bool(WatchEvent&&)>& handle,
                                           const std::atomic<bool>& stop) = 0;
  // The server's version (`gitVersion` of GET /version).
  [[nodiscard]] virtual absl::StatusOr<std::string> ServerVersion() = 0;
  // One object (GET `path`); NotFound on 404. `what` names it in errors.
  [[nodiscard]] virtual absl::StatusOr<nlohmann::json> GetObject(const std::string& path,
                                                                 const std::string& what) = 0;
  // POST `body` to `path` (a create, or a review such as TokenReview) and the object answered.
  [[nodiscard]] virtual absl::StatusOr<nlohmann::json> Create(const std::string& path,
                                                              const nlohmann::json& body,
                                                              const std::string& what) = 0;
  virtual const std::string& description() const = 0;
};

// The libcurl implementation.
[[nodiscard]] absl::StatusOr<std::unique_ptr<ApiClient>> MakeApiClient(Connection connection,
                                                                       ClientOptions options = {});

// What a fetch read, for logs and output.
struct FetchStats {
  size_t objects = 0;
  size_t kinds_tried = 0;  // kinds listed (custom kinds only where discovery found them)
  std::string server_version;
  // Each kind served, with its list's resourceVersion (empty when the list failed): where a
  // watch of it starts.
  std::vector<std::pair<ResourceType, std::string>> listed;
};

// Lists every resource of ReadResources() into `out`. A resource the server does not serve
// (404) stays empty; a refused or failing resource (403, retries exhausted) is marked failed
// in the snapshot with the message, so the checks that read it report ERROR. Only when nothing
// at all could be read (unreachable, 401) is the result an error.
[[nodiscard]] absl::StatusOr<FetchStats> FetchSnapshot(ApiClient& client, Snapshot& out);

}  // namespace kspm::collector::k8s
