#include "kspm/collector/k8s/api_client.h"

#include <curl/curl.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "kspm/collector/k8s/list_reader.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace kspm::collector::k8s {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError("cannot read " + what + " " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string Scalar(const YAML::Node& node, const char* key) {
  const YAML::Node v = node[key];
  return v && v.IsScalar() ? v.Scalar() : "";
}

// `key` of the entry named `name` of a kubeconfig list (clusters, users, contexts), when it
// is a map.
std::optional<YAML::Node> Named(const YAML::Node& list, const std::string& name, const char* key) {
  if (!list || !list.IsSequence()) return std::nullopt;
  for (const auto& item : list) {
    if (!item.IsMap() || Scalar(item, "name") != name) continue;
    const YAML::Node v = item[key];
    if (v && v.IsMap()) return v;
    return std::nullopt;
  }
  return std::nullopt;
}

// `*-data` (base64) inline, else the file named by the plain key (relative to `base`).
absl::StatusOr<std::string> DataOrFile(const YAML::Node& node, const char* data_key,
                                       const char* file_key, const fs::path& base,
                                       const std::string& what) {
  const std::string data = Scalar(node, data_key);
  if (!data.empty()) {
    std::string out;
    if (!absl::Base64Unescape(data, &out)) {
      return absl::InvalidArgumentError(what + ": " + data_key + " is not valid base64");
    }
    return out;
  }
  std::string file = Scalar(node, file_key);
  if (file.empty()) return std::string();
  if (fs::path(file).is_relative()) file = (base / file).string();
  return ReadFile(file, what + " " + file_key);
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Curl = std::unique_ptr<CURL, CurlDeleter>;
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// Keeps the Retry-After header of the last response.
size_t ReadHeader(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string lower = line.substr(0, kName.size());
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == kName) {
      std::string value = line.substr(kName.size());
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of(" \t\r\n") + 1);
      *static_cast<std::string*>(user) = value;
    }
  }
  return size * n;
}

std::string UrlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The `message` of a metav1.Status body, or the body's start.
std::string StatusMessage(const std::string& body) {
  try {
    const auto j = nlohmann::json::parse(body);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) {
      return j["message"].get<std::string>();
    }
  } catch (const nlohmann::json::exception&) {
  }
  return body.substr(0, 200);
}

struct Response {
  long code = 0;
  std::string body;
  std::string retry_after;
};

// A streamed answer (a watch): a 2xx body is cut into lines for `line`; any other body is kept
// in `error_body` for the message.
struct Stream {
  CURL* curl = nullptr;
  std::chrono::milliseconds timeout{0};
  const std::function<bool(std::string_view)>* line = nullptr;
  const std::atomic<bool>* stop = nullptr;
  std::string pending;  // a line not ended yet
  std::string error_body;
  bool ended_by_reader = false;
  std::string failure;  // why the reader gave up, when it did
};

// A watch event is one JSON document per line; a line longer than this is not one.
constexpr size_t kMaxWatchLine = 64u << 20;

size_t WriteStream(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Stream*>(user);
  long code = 0;
  curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code >= 300) {
    if (s->error_body.size() < 65536) s->error_body.append(data, size * n);
    return size * n;
  }
  s->pending.append(data, size * n);
  size_t start = 0;
  for (size_t nl; (nl = s->pending.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string_view line = std::string_view(s->pending).substr(start, nl - start);
    if (!line.empty() && !(*s->line)(line)) {
      s->ended_by_reader = true;
      return 0;  // ends the transfer
    }
  }
  s->pending.erase(0, start);
  if (s->pending.size() > kMaxWatchLine) {
    s->failure = "a watch event longer than 64 MiB";
    return 0;
  }
  return size * n;
}

int StreamProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* s = static_cast<const Stream*>(user);
  return s->stop->load() ? 1 : 0;
}

class CurlApiClient final : public ApiClient {
 public:
  CurlApiClient(Connection c, ClientOptions o) : conn_(std::move(c)), options_(std::move(o)) {
    if (!options_.sleep) {
      options_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    }
  }

  const std::string& description() const override { return conn_.description; }

  absl::StatusOr<std::string> ServerVersion() override {
    auto r = Get("/version", "get", "the server version (/version)");
    if (!r.ok()) return r.status();
    try {
      const auto j = nlohmann::json::parse(r->body);
      return j.value("gitVersion", std::string());
    } catch (const nlohmann::json::exception& e) {
      return absl::InternalError(conn_.server + "/version: not JSON: " + e.what());
    }
  }

  absl::Status List(const ResourceType& type,
                    const std::function<absl::Status(const ListPage&)>& page,
                    const std::function<void()>& restart) override {
    bool restarted = false;
    std::string token;
    for (;;) {
      std::string path = type.Path() + "?limit=" + std::to_string(options_.page_size);
      if (!token.empty()) path += "&continue=" + UrlEncode(token);
      auto r = Get(path, "list", type.Qualified());
      if (!r.ok()) {
        // 410 Gone: the continue token outlived the server's compaction window. Start over once.
        if (absl::IsAborted(r.status()) && !token.empty() && !restarted) {
          restarted = true;
          token.clear();
          if (restart) restart();
          continue;
        }
        return r.status();
      }
      // Only the page's structure and metadata are read here; its items by the caller.
      ListPage listed{r->body, nullptr};
      TextInput input(r->body);
      auto scanned = ScanJsonList(input);
      if (scanned.outcome == ListRead::Outcome::kDone) {
        listed.metadata = std::move(scanned.metadata);
      } else {
        try {
          const auto doc = nlohmann::json::parse(r->body);
          if (doc.is_object() && doc.contains("metadata")) listed.metadata = doc["metadata"];
        } catch (const nlohmann::json::exception& e) {
          return absl::InternalError(type.Qualified() + ": the answer is not JSON: " + e.what());
        }
      }
      token.clear();
      if (listed.metadata.is_object()) {
        const auto it = listed.metadata.find("continue");
        if (it != listed.metadata.end() && it->is_string()) token = it->get<std::string>();
      }
      if (auto s = page(listed); !s.ok()) return s;
      if (token.empty()) return absl::OkStatus();
    }
  }

  absl::Status Watch(const ResourceType& type, const std::string& resource_version,
                     std::chrono::seconds timeout, const std::function<bool(WatchEvent&&)>& handle,
                     const std::atomic<bool>& stop) override {
    const std::string what = type.Qualified();
    std::string path = type.Path() + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=" +
                       std::to_string(timeout.count());
    if (!resource_version.empty()) path += "&resourceVersion=" + UrlEncode(resource_version);
    absl::Status failed;
    const std::function<bool(std::string_view)> line = [&](std::string_view text) {
      WatchEvent event;
      try {
        auto doc = nlohmann::json::parse(text);
        if (!doc.is_object() || !doc.contains("type") || !doc["type"].is_string()) {
          failed = absl::UnavailableError(what + " watch: an event without a type");
          return false;
        }
        event.type = doc["type"].get<std::string>();
        event.object = std::move(doc["object"]);
      } catch (const nlohmann::json::exception& e) {
        failed = absl::UnavailableError(what + " watch: an event that is not JSON: " + e.what());
        return false;
      }
      if (event.type == "ERROR") {
        // A metav1.Status: 410 when the version was compacted away (or the watch cache lost it).
        const long code = event.object.is_object() ? event.object.value("code", 0L) : 0L;
        const std::string message = StatusMessage(event.object.dump());
        failed = code == 410 ? absl::AbortedError(what + " watch: 410 Gone (" + message + ")")
                             : absl::UnavailableError(what + " watch: error " +
                                                      std::to_string(code) + ": " + message);
        return false;
      }
      return handle(std::move(event));
    };
    Stream stream;
    stream.timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(timeout) + std::chrono::seconds(30);
    stream.line = &line;
    stream.stop = &stop;
    auto r = Once(path, nullptr, &stream);
    if (!r.ok()) return r.status();
    if (!failed.ok()) return failed;
    if (!stream.failure.empty()) return absl::UnavailableError(what + " watch: " + stream.failure);
    if (r->code >= 200 && r->code < 300) return absl::OkStatus();
    const std::string message = StatusMessage(stream.error_body);
    switch (r->code) {
      case 401:
        return absl::UnauthenticatedError(conn_.server + " refused the credentials of " +
                                          conn_.description + " (401 Unauthorized: " + message +
                                          ")");
      case 403:
        return absl::PermissionDeniedError("forbidden: kspm needs 'watch' on " + what +
                                           " in all namespaces; grant it in the collector's "
                                           "ClusterRole (403: " +
                                           message + ")");
      case 404:
        return absl::NotFoundError(what + " is not served by " + conn_.server);
      case 410:
        return absl::AbortedError(what + " watch: 410 Gone (" + message + ")");
      default:
        return absl::UnavailableError(what + " watch: HTTP " + std::to_string(r->code) + ": " +
                                      message);
    }
  }

  absl::StatusOr<nlohmann::json> GetObject(const std::string& path,
                                           const std::string& what) override {
    auto r = Get(path, "get", what);
    if (!r.ok()) return r.status();
    return ParseBody(*r, what);
  }

  absl::StatusOr<nlohmann::json> Create(const std::string& path, const nlohmann::json& body,
                                        const std::string& what) override {
    const std::string text = body.dump();
    auto r = Get(path, "create", what, &text);
    if (!r.ok()) return r.status();
    return ParseBody(*r, what);
  }

  size_t requests() const { return requests_; }

 private:
  absl::StatusOr<nlohmann::json> ParseBody(const Response& r, const std::string& what) {
    try {
      return nlohmann::json::parse(r.body);
    } catch (const nlohmann::json::exception& e) {
      return absl::InternalError(what + ": the answer is not JSON: " + e.what());
    }
  }

  // One request with retries: GET, or POST of `body` when given. `verb` and `what` name the
  // permission for 403 messages.
  absl::StatusOr<Response> Get(const std::string& path, const char* verb, const std::string& what,
                               const std::string* body = nullptr) {
    std::string last_error;
    bool refreshed = false;
    for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
      auto r = Once(path, body);
      std::chrono::milliseconds wait = Backoff(attempt);
      if (!r.ok()) {
        // Could not connect, TLS failure or timeout: retried, since an API server restarting
        // behind a load balancer looks like this for a few seconds.
        last_error = std::string(r.status().message());
        // TLS set-up and credential plugins: not transient.
        if (absl::IsInvalidArgument(r.status()) || absl::IsUnauthenticated(r.status())) {
          return r.status();
        }
      } else if (r->code >= 200 && r->code < 300) {
        return r;
      } else if (r->code == 401 && conn_.exec && exec_credential_ && !refreshed) {
        // The plugin's credential was revoked or expired early: ask the plugin again, once.
        refreshed = true;
        exec_credential_.reset();
        last_error = "401 Unauthorized with the exec plugin's credential";
        --attempt;  // the retry with a fresh credential is not one of the transient retries
        continue;
      } else if (r->code == 401) {
        return absl::UnauthenticatedError(
            conn_.server + " refused the credentials of " + conn_.description +
            " (401 Unauthorized: " + StatusMessage(r->body) +
            "); the token may have expired or the client certificate is not trusted");
      } else if (r->code == 403) {
        return absl::PermissionDeniedError(
            "forbidden: kspm needs '" + std::string(verb) + "' on " + what +
            (std::string(verb) == "list" ? " in all namespaces" : "") +
            "; grant it in the collector's ClusterRole (403: " + StatusMessage(r->body) + ")");
      } else if (r->code == 404) {
        return absl::NotFoundError(what + " is not served by " + conn_.server);
      } else if (r->code == 410) {
        return absl::AbortedError(what + ": 410 Gone (" + StatusMessage(r->body) + ")");
      } else if (r->code == 429 || r->code >= 500) {
        last_error = "HTTP " + std::to_string(r->code) + ": " + StatusMessage(r->body);
        if (r->code == 429 && !r->retry_after.empty()) {
          char* end = nullptr;
          const long seconds = std::strtol(r->retry_after.c_str(), &end, 10);
          if (end != r->retry_after.c_str() && seconds >= 0) {
            wait = std::min(std::chrono::milliseconds(std::chrono::seconds(seconds)),
                            std::chrono::milliseconds(options_.max_retry_after));
          }
        }
      } else {
        return absl::InternalError(what + ": HTTP " + std::to_string(r->code) + " from " +
                                   conn_.server + ": " + StatusMessage(r->body));
      }
      if (attempt < options_.max_attempts) {
        spdlog::debug("GET {}: {}; retrying in {} ms", path, last_error, wait.count());
        options_.sleep(wait);
      }
    }
    return absl::UnavailableError(what + ": gave up after " +
                                  std::to_string(options_.max_attempts) +
                                  " attempts; last: " + last_error);
  }

  std::chrono::milliseconds Backoff(int attempt) {
    auto d = options_.backoff * (1 << std::min(attempt - 1, 10));
    d = std::min(d, options_.max_backoff);
    std::uniform_int_distribution<long> jitter(0, d.count() / 4);
    return d + std::chrono::milliseconds(jitter(rng_));
  }

  // One request. With `stream`, a GET whose answer is handed over line by line as it arrives.
  absl::StatusOr<Response> Once(const std::string& path, const std::string* body,
                                Stream* stream = nullptr) {
    ++requests_;
    Curl curl(curl_easy_init());
    if (!curl) return absl::InternalError("curl_easy_init failed");
    Response out;
    std::string token = conn_.token;
    const std::string* cert_pem = &conn_.client_cert_pem;
    const std::string* key_pem = &conn_.client_key_pem;
    if (conn_.exec) {
      // A plugin's credential is reused until it expires (a minute early) or the server says 401.
      const auto now = std::chrono::system_clock::now();
      if (!exec_credential_ || (exec_credential_->expires &&
                                now + std::chrono::minutes(1) >= *exec_credential_->expires)) {
        auto credential = RunExecPlugin(*conn_.exec, conn_, options_.exec_timeout);
        // No credentials: the whole fetch stops (as on a 401), rather than running a failing
        // plugin again for every kind. The message says what the plugin did.
        if (!credential.ok()) {
          return absl::UnauthenticatedError(std::string(credential.status().message()));
        }
        exec_credential_ = *std::move(credential);
      }
      token = exec_credential_->token;
      cert_pem = &exec_credential_->client_cert_pem;
      key_pem = &exec_credential_->client_key_pem;
    }
    if (!conn_.token_file.empty()) {
      auto t = ReadFile(conn_.token_file, "token file");
      if (!t.ok()) return absl::InvalidArgumentError(std::string(t.status().message()));
      token = *t;
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    }
    curl_slist* raw = curl_slist_append(nullptr, "Accept: application/json");
    Slist headers(raw);
    std::string auth;
    if (!token.empty()) {
      auth = "Authorization: Bearer " + token;
      headers.reset(curl_slist_append(headers.release(), auth.c_str()));
    }
    const std::string url = conn_.server + path;
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    if (body != nullptr) {
      headers.reset(curl_slist_append(headers.release(), "Content-Type: application/json"));
      curl_easy_setopt(c, CURLOPT_POST, 1L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    } else {
      curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kspm-collector/" KSPM_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(
        c, CURLOPT_TIMEOUT_MS,
        static_cast<long>(stream ? stream->timeout.count() : options_.timeout.count()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip when the server offers it
    if (stream) {
      stream->curl = c;
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteStream);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, stream);
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, StreamProgress);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, stream);
    } else {
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, &out.body);
    }
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ReadHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out.retry_after);
    curl_blob ca{const_cast<char*>(conn_.ca_pem.data()), conn_.ca_pem.size(), CURL_BLOB_NOCOPY};
    if (!conn_.ca_pem.empty()) curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
    if (conn_.insecure_skip_tls_verify) {
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_blob cert{const_cast<char*>(cert_pem->data()), cert_pem->size(), CURL_BLOB_NOCOPY};
    curl_blob key{const_cast<char*>(key_pem->data()), key_pem->size(), CURL_BLOB_NOCOPY};
    if (!cert_pem->empty()) {
      curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert);
      curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key);
      curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    }
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    const CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.code);
    // A stream ends by our choice (the reader had enough, or stop), or at its time limit: the
    // server's timeoutSeconds is shorter, so reaching ours means the stream went quiet.
    if (stream && !stream->failure.empty()) {
      return absl::UnavailableError("GET " + url + ": " + stream->failure);
    }
    // A server that ignores timeoutSeconds is cut at ours: an end like any other.
    if (stream && out.code >= 200 && out.code < 300 &&
        ((rc == CURLE_WRITE_ERROR && stream->ended_by_reader) || rc == CURLE_ABORTED_BY_CALLBACK ||
         rc == CURLE_OPERATION_TIMEDOUT)) {
      return out;
    }
    if (rc != CURLE_OK) {
      const std::string msg = std::string(body != nullptr ? "POST " : "GET ") + url + ": " +
                              (error[0] ? std::string(error) : curl_easy_strerror(rc));
      if (rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE ||
          rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
        return absl::InvalidArgumentError(msg);
      }
      return absl::UnavailableError(msg);
    }
    return out;
  }

  Connection conn_;
  ClientOptions options_;
  std::optional<ExecCredential> exec_credential_;
  size_t requests_ = 0;
  std::mt19937 rng_{std::random_device{}()};
};

absl::StatusOr<Connection> LoadKubeconfigOrThrow(const std::string& path,
                                                 const std::string& context);

}  // namespace

absl::StatusOr<Connection> LoadKubeconfig(const std::string& path, const std::string& context) {
  try {
    return LoadKubeconfigOrThrow(path, context);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(path + ": line " + std::to_string(e.mark.line + 1) + ": " +
                                      e.msg);
  }
}

namespace {

// A kubeconfig user's `exec` section. `what` is `PATH: user NAME`.
absl::StatusOr<ExecPlugin> ParseExecPlugin(const YAML::Node& exec, const fs::path& base,
                                           const std::string& what) {
  if (!exec.IsMap()) return absl::InvalidArgumentError(what + ": exec must be a map");
  ExecPlugin p;
  p.description = what;
  p.command = Scalar(exec, "command");
  if (p.command.empty()) return absl::InvalidArgumentError(what + ": exec has no command");
  // As kubectl does: a path with a slash is relative to the kubeconfig, a bare name is in PATH.
  if (p.command.find('/') != std::string::npos && fs::path(p.command).is_relative()) {
    p.command = (base / p.command).string();
  }
  p.api_version = Scalar(exec, "apiVersion");
  if (p.api_version != "client.authentication.k8s.io/v1" &&
      p.api_version != "client.authentication.k8s.io/v1beta1") {
    return absl::InvalidArgumentError(
        what + ": exec apiVersion '" + p.api_version +
        "' is not client.authentication.k8s.io/v1 or v1beta1 (v1alpha1 was removed in 1.24)");
  }
  if (Scalar(exec, "interactiveMode") == "Always") {
    return absl::InvalidArgumentError(
        what +
        ": the exec plugin needs a terminal (interactiveMode: Always) and kspm runs "
        "unattended; use a plugin mode or a credential that needs no prompt");
  }
  if (const YAML::Node args = exec["args"]; args && args.IsSequence()) {
    for (const auto& a : args) p.args.push_back(a.as<std::string>(""));
  }
  if (const YAML::Node env = exec["env"]; env && env.IsSequence()) {
    for (const auto& e : env) {
      if (!e.IsMap() || Scalar(e, "name").empty()) {
        return absl::InvalidArgumentError(what + ": exec env entries need a name and a value");
      }
      p.env.emplace_back(Scalar(e, "name"), Scalar(e, "value"));
    }
  }
  p.install_hint = Scalar(exec, "installHint");
  p.provide_cluster_info = Scalar(exec, "provideClusterInfo") == "true";
  return p;
}

// yaml-cpp reports shape errors by throwing; LoadKubeconfig turns them into a Status.
absl::StatusOr<Connection> LoadKubeconfigOrThrow(const std::string& path,
                                                 const std::string& context) {
  auto text = ReadFile(path, "kubeconfig");
  if (!text.ok()) return text.status();
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(path + ": line " + std::to_string(e.mark.line + 1) + ": " +
                                      e.msg);
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(path + ": not a kubeconfig");
  const std::string ctx_name = context.empty() ? Scalar(root, "current-context") : context;
  if (ctx_name.empty()) {
    return absl::InvalidArgumentError(path + ": no current-context; pass --context");
  }
  const auto ctx = Named(root["contexts"], ctx_name, "context");
  if (!ctx) return absl::InvalidArgumentError(path + ": no context named '" + ctx_name + "'");
  const std::string cluster_name = Scalar(*ctx, "cluster");
  const std::string user_name = Scalar(*ctx, "user");
  const auto cluster_entry = Named(root["clusters"], cluster_name, "cluster");
  if (!cluster_entry) {
    return absl::InvalidArgumentError(path + ": context '" + ctx_name + "' names cluster '" +
                                      cluster_name + "', which is not defined");
  }
  const YAML::Node& cluster = *cluster_entry;
  const fs::path base = fs::path(path).parent_path();
  Connection c;
  c.description = "kubeconfig " + path + " (context " + ctx_name + ")";
  c.server = Scalar(cluster, "server");
  while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
  if (c.server.empty()) return absl::InvalidArgumentError(path + ": cluster has no server");
  c.insecure_skip_tls_verify = Scalar(cluster, "insecure-skip-tls-verify") == "true";
  auto ca = DataOrFile(cluster, "certificate-authority-data", "certificate-authority", base,
                       path + ": cluster " + cluster_name);
  if (!ca.ok()) return ca.status();
  c.ca_pem = *ca;
  if (!user_name.empty()) {
    const auto user_entry = Named(root["users"], user_name, "user");
    if (!user_entry) {
      return absl::InvalidArgumentError(path + ": context '" + ctx_name + "' names user '" +
                                        user_name + "', which is not defined");
    }
    const YAML::Node& user = *user_entry;
    if (user["auth-provider"]) {
      return absl::InvalidArgumentError(
          path + ": user '" + user_name +
          "' uses an auth-provider plugin, which Kubernetes removed in 1.26; use the provider's "
          "exec plugin (gke-gcloud-auth-plugin, kubelogin), a token or a client certificate");
    }
    if (const YAML::Node exec = user["exec"]) {
      auto plugin = ParseExecPlugin(exec, base, path + ": user " + user_name);
      if (!plugin.ok()) return plugin.status();
      c.exec = *std::move(plugin);
    }
    auto cert = DataOrFile(user, "client-certificate-data", "client-certificate", base,
                           path + ": user " + user_name);
    if (!cert.ok()) return cert.status();
    auto key =
        DataOrFile(user, "client-key-data", "client-key", base, path + ": user " + user_name);
    if (!key.ok()) return key.status();
    c.client_cert_pem = *cert;
    c.client_key_pem = *key;
    if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
      return absl::InvalidArgumentError(path + ": user '" + user_name +
                                        "' has a client certificate without a key or a key "
                                        "without a certificate");
    }
    c.token = Scalar(user, "token");
    std::string token_file = Scalar(user, "tokenFile");
    if (!token_file.empty() && fs::path(token_file).is_relative()) {
      token_file = (base / token_file).string();
    }
    c.token_file = token_file;
  }
  return c;
}

}  // namespace

absl::StatusOr<Connection> InClusterConnection(const std::string& account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0') {
    return absl::UnavailableError("KUBERNETES_SERVICE_HOST is not set: not running in a pod");
  }
  Connection c;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 service address
  c.server = "https://" + h + ":" + (port && *port ? port : "443");
  auto ca = ReadFile(account_dir + "/ca.crt", "service account CA");
  if (!ca.ok()) return ca.status();
  c.ca_pem = *ca;
  c.token_file = account_dir + "/token";
  if (auto t = ReadFile(c.token_file, "service account token"); !t.ok()) return t.status();
  c.description = "in-cluster service account (" + account_dir + ")";
  return c;
}

absl::StatusOr<std::unique_ptr<ApiClient>> MakeApiClient(Connection connection,
                                                         ClientOptions options) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (!connection.server.starts_with("https://") && !connection.server.starts_with("http://")) {
    return absl::InvalidArgumentError("API server address '" + connection.server +
                                      "' must start with https://");
  }
  if (connection.insecure_skip_tls_verify) {
    spdlog::warn("{}: insecure-skip-tls-verify is set; the API server's identity is not checked",
                 connection.description);
  }
  return std::unique_ptr<ApiClient>(new CurlApiClient(std::move(connection), std::move(options)));
}

std::string ResourceVersionOf(const nlohmann::json& object) {
  if (!object.is_object()) return "";
  const auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  const auto rv = meta->find("resourceVersion");
  return rv != meta->end() && rv->is_string() ? rv->get<std::string>() : "";
}

std::string PageVersion(const ListPage& page) {
  const auto& meta = page.metadata;
  if (!meta.is_object()) return "";
  const auto rv = meta.find("resourceVersion");
  return rv != meta.end() && rv->is_string() ? rv->get<std::string>() : "";
}

absl::Status AddListPage(const ListPage& page, const std::string& origin, Snapshot& out,
                         size_t* added, std::string_view default_kind) {
  if (added) *added = 0;
  TextInput input(page.body);
  const auto read = ReadJsonList(input, origin, out, default_kind);
  switch (read.outcome) {
    case ListRead::Outcome::kDone:
      if (added) *added = read.added;
      return ItemProblems(origin, read.problems);
    case ListRead::Outcome::kNotAList:
      break;
    case ListRead::Outcome::kSyntaxError:
    case ListRead::Outcome::kReadError:
      return absl::InternalError(origin + ": the answer is not JSON at byte " +
                                 std::to_string(read.byte));
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(page.body);
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(origin + ": the answer is not JSON: " + e.what());
  }
  return AddDocument(std::move(doc), origin, out, added, default_kind);
}

absl::StatusOr<FetchStats> FetchSnapshot(ApiClient& client, Snapshot& out) {
  FetchStats stats;
  auto version = client.ServerVersion();
  if (!version.ok()) {
    // Nothing will work: unreachable, or the credentials are refused.
    if (!absl::IsPermissionDenied(version.status())) return version.status();
    spdlog::warn("{}", std::string(version.status().message()));
  } else {
    stats.server_version = *version;
  }
  // Discovery: which group versions this server serves, so that custom kinds (Cilium, Calico,
  // AdminNetworkPolicy) are listed only where installed. Without an answer every custom kind is
  // tried and a 404 means absent.
  std::optional<std::set<std::string>> served;
  if (auto groups = client.GetObject("/apis", "API discovery (/apis)"); groups.ok()) {
    served.emplace();
    if (const auto it = groups->find("groups"); it != groups->end() && it->is_array()) {
      for (const auto& g : *it) {
        const auto versions = g.find("versions");
        if (!g.is_object() || versions == g.end() || !versions->is_array()) continue;
        for (const auto& v : *versions) {
          if (v.is_object() && v.contains("groupVersion") && v["groupVersion"].is_string()) {
            served->insert(v["groupVersion"].get<std::string>());
          }
        }
      }
    }
  } else {
    spdlog::debug("{}; trying every custom policy kind", std::string(groups.status().message()));
  }
  // Calico's API server serves projectcalico.org/v3 over the crd.projectcalico.org/v1 CRDs: one
  // of the two, not both.
  std::set<std::string> listed_custom;
  size_t failed = 0;
  // One kind: OK when listed, refused (marked failed) or not served; an error stops the fetch.
  const auto list = [&](const ResourceType& type) -> absl::Status {
    if (type.custom) {
      if (served && !served->contains(type.GroupVersion())) return absl::OkStatus();
      if (listed_custom.contains(type.kind)) return absl::OkStatus();
    }
    // Objects are added as pages arrive and pruned at once, so memory holds one raw page.
    Snapshot scratch;
    scratch.set_inspect_config_data(out.inspect_config_data());
    scratch.set_live(out.live());  // a watched snapshot keeps every replica's spec its owner lacks
    std::string version;
    std::string unreadable;  // the first page's message about objects that could not be read
    const auto page = [&](const ListPage& p) -> absl::Status {
      if (auto rv = PageVersion(p); !rv.empty()) version = std::move(rv);
      size_t added = 0;
      const auto s = AddListPage(p, "API", scratch, &added, type.kind);
      if (absl::IsInternal(s)) return s;  // not JSON: the kind could not be listed
      if (!s.ok()) {
        out.AddError(std::string(s.message()));
        if (unreadable.empty()) unreadable = std::string(s.message());
      }
      return absl::OkStatus();
    };
    const auto restart = [&] {
      scratch = Snapshot();
      scratch.set_inspect_config_data(out.inspect_config_data());
      scratch.set_live(out.live());
      unreadable.clear();
    };
    ++stats.kinds_tried;
    const auto s = client.List(type, page, restart);
    if (absl::IsNotFound(s)) return absl::OkStatus();  // not served by this server version
    if (absl::IsUnauthenticated(s)) return s;
    if (type.custom) listed_custom.insert(type.kind);
    stats.listed.emplace_back(type, s.ok() ? version : "");
    if (!s.ok()) {
      ++failed;
      out.MarkFailed(type.kind, std::string(s.message()));
      out.AddError(std::string(s.message()));
      return absl::OkStatus();
    }
    stats.objects += scratch.size();
    out.Absorb(std::move(scratch));
    // Checks that read the kind cannot pass on what is left: the objects they would fail may be
    // the unreadable ones (as with a snapshot file that does not parse).
    if (!unreadable.empty()) {
      out.MarkFailed(type.kind, "objects the API listed could not be read: " + unreadable);
    }
    return absl::OkStatus();
  };
  for (const auto& type : ReadResources()) {
    if (auto s = list(type); !s.ok()) return s;
  }
  // Opt-in: ConfigMaps only when their contents are to be judged (a role of its own grants them).
  if (out.inspect_config_data()) {
    if (auto s = list(ConfigMapResource()); !s.ok()) return s;
  }
  if (failed > 0 && failed == stats.kinds_tried) {
    return absl::UnavailableError("could not list anything from " + client.description() + ": " +
                                  out.errors().back());
  }
  return stats;
}

}  // namespace kspm::collector::k8s
