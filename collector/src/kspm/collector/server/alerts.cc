#include "kspm/collector/server/alerts.h"

#include <curl/curl.h>
#include <unistd.h>

#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace kspm::collector::server {
namespace {

using Json = nlohmann::json;

std::string StatusText(v1::Status s) {
  return s == v1::STATUS_UNSPECIFIED ? "" : std::string(common::StatusName(s));
}

// The URL without its path, query and user info (a Slack webhook's path is its secret; a URL may
// carry user:password@).
std::string Origin(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t host = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t path = url.find_first_of("/?#", host);
  std::string authority = url.substr(host, path == std::string::npos ? path : path - host);
  if (const size_t at = authority.rfind('@'); at != std::string::npos) {
    authority = authority.substr(at + 1);
  }
  return url.substr(0, host) + authority;
}

// Alerts per POST: one commit can change thousands of verdicts (a catalogue upgrade, a cluster
// scan after an RBAC change); receivers refuse large bodies (Slack: 40,000 characters of text).
constexpr size_t kAlertsPerPost = 100;
// Bytes of alerts waiting per webhook; past it the oldest batches are dead letters.
constexpr size_t kMaxQueuedBytes = 64u << 20;

Json VerdictAlert(const store::VerdictChange& c, const char* kind) {
  const v1::CheckResult& r = c.result;
  Json j = {{"kind", kind},
            {"cluster", c.cluster},
            {"node", c.node},
            {"check_id", r.check_id()},
            {"benchmark", r.benchmark()},
            {"id", r.benchmark_id()},
            {"title", r.title()},
            {"severity", common::SeverityName(r.severity())},
            {"status", StatusText(r.status())},
            {"previous_status", StatusText(c.old_status)},
            {"object", common::ResourceKey(r.resource())},
            {"reason", r.reason()},
            {"expected", r.expected()},
            {"remediation", r.remediation()},
            {"scan_id", c.scan_id}};
  Json evidence = Json::array();
  for (const auto& e : r.evidence()) {
    evidence.push_back({{"key", e.key()}, {"value", e.value()}, {"source", e.source()}});
  }
  j["evidence"] = std::move(evidence);
  return j;
}

Json DriftAlert(const v1::DriftRecord& d) {
  const v1::DriftEvent& e = d.event();
  Json changes = Json::array();
  for (const auto& c : e.changes()) {
    changes.push_back({{"check_id", c.check_id()},
                       {"previous_status", StatusText(c.old_status())},
                       {"status", StatusText(c.new_status())}});
  }
  return {{"kind", "drift"},
          {"cluster", d.cluster()},
          {"node", e.node_name()},
          {"event_id", e.event_id()},
          {"source", e.source()},
          {"operation", e.operation()},
          {"path", e.path()},
          {"process", {{"pid", e.pid()}, {"comm", e.comm()}, {"uid", e.uid()}}},
          {"caused_by", std::vector<std::string>(e.caused_by().begin(), e.caused_by().end())},
          {"observed_at", common::FormatRfc3339(common::FromProto(e.observed_at()))},
          {"changes", std::move(changes)}};
}

// Slack's mrkdwn treats &, < and > as markup.
std::string SlackEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else {
      out += c;
    }
  }
  return out;
}

std::string SlackLine(const Json& a) {
  const std::string kind = a.value("kind", "");
  auto s = [&](const char* key) { return SlackEscape(a.value(key, "")); };
  const std::string where = (a.value("object", "").empty() ? "node " + s("node") : s("object")) +
                            " (cluster " + s("cluster") + ")";
  if (kind == "failing" || kind == "resolved") {
    return std::string(kind == "failing" ? ":rotating_light: *FAIL*"
                                         : ":white_check_mark: *resolved*") +
           " [" + s("severity") + "] " + s("benchmark") + " " + s("id") + " " + s("title") + " — " +
           where + (kind == "failing" && !s("reason").empty() ? ": " + s("reason") : "");
  }
  if (kind == "drift") {
    return ":warning: *drift* on " + s("node") + " (cluster " + s("cluster") +
           "): " + s("operation") + " " + s("path") + " (" + s("source") + "), " +
           std::to_string(a["changes"].size()) + " verdict(s) changed";
  }
  return ":hourglass: *stale* node " + s("node") + " (cluster " + s("cluster") +
         "): no report since " + s("last_seen");
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

}  // namespace

absl::StatusOr<AlertOptions> MakeAlertOptions(const std::vector<std::string>& urls,
                                              const std::string& min_severity,
                                              const std::string& format) {
  AlertOptions out;
  const auto severity = common::ParseSeverity(min_severity);
  if (!severity) {
    return absl::InvalidArgumentError("--alert-min-severity '" + min_severity +
                                      "': expected info, low, medium, high or critical");
  }
  if (format != "json" && format != "slack") {
    return absl::InvalidArgumentError("--alert-format '" + format + "': expected json or slack");
  }
  for (const auto& url : urls) {
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
      return absl::InvalidArgumentError("--alert-webhook '" + Origin(url) +
                                        "': only http:// and https:// URLs");
    }
    out.webhooks.push_back({url, *severity, format});
  }
  char host[256] = {};
  out.collector = ::gethostname(host, sizeof host - 1) == 0 ? host : "kspm-collector";
  return out;
}

Alerter::Alerter(AlertOptions options, store::Store& store)
    : options_(std::move(options)), store_(store) {
  for (const auto& hook : options_.webhooks) {
    auto t = std::make_unique<Target>();
    t->hook = hook;
    t->label = std::to_string(targets_.size()) + " " + Origin(hook.url);
    targets_.push_back(std::move(t));
  }
}

void Alerter::Start() {
  std::lock_guard lock(mu_);
  if (started_ || targets_.empty()) return;
  started_ = true;
  for (auto& t : targets_) t->thread = std::thread([this, raw = t.get()] { Deliver(*raw); });
  stale_thread_ = std::thread([this] { WatchStale(); });
}

void Alerter::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_.exchange(true)) return;
  }
  cv_.notify_all();
  for (auto& t : targets_) {
    { std::lock_guard lock(t->mu); }
    t->cv.notify_all();
    if (t->thread.joinable()) t->thread.join();
    if (!t->queue.empty()) {
      size_t alerts = 0;
      for (const auto& b : t->queue) alerts += b.size();
      spdlog::warn("alerts for {}: {} alerts still queued at shutdown are not sent", t->label,
                   alerts);
    }
  }
  if (stale_thread_.joinable()) stale_thread_.join();
}

void Alerter::OnCommit(const store::CommitNews& news) {
  if (stopping_.load()) return;
  for (auto& t : targets_) {
    std::vector<std::string> batch;
    for (const auto& c : news.changes) {
      const v1::CheckResult& r = c.result;
      if (r.has_accepted() || r.severity() < t->hook.min_severity) continue;
      if (r.status() == v1::STATUS_FAIL && c.old_status != v1::STATUS_FAIL) {
        batch.push_back(VerdictAlert(c, "failing").dump());
      } else if (r.status() == v1::STATUS_PASS && c.old_status == v1::STATUS_FAIL) {
        batch.push_back(VerdictAlert(c, "resolved").dump());
      }
    }
    for (const auto& d : news.drift) {
      // Only drift that changed a verdict this webhook cares about.
      bool relevant = false;
      for (const auto& c : d.event().changes()) {
        const bool known = c.has_result();
        if (known && c.result().has_accepted()) continue;
        if (!known || c.result().severity() >= t->hook.min_severity) relevant = true;
      }
      if (relevant) batch.push_back(DriftAlert(d).dump());
    }
    if (!batch.empty()) Queue(*t, std::move(batch));
  }
}

void Alerter::Queue(Target& t, std::vector<std::string> batch) {
  t.alerts += batch.size();
  {
    std::lock_guard lock(t.mu);
    for (size_t first = 0; first < batch.size(); first += kAlertsPerPost) {
      std::vector<std::string> part;
      size_t bytes = 0;
      for (size_t i = first; i < batch.size() && i < first + kAlertsPerPost; ++i) {
        bytes += batch[i].size();
        part.push_back(std::move(batch[i]));
      }
      while (!t.queue.empty() &&
             (t.queue.size() >= options_.max_queue || t.queued_bytes + bytes > kMaxQueuedBytes)) {
        for (const auto& a : t.queue.front()) t.queued_bytes -= a.size();
        t.queue.pop_front();
        t.dead++;
        spdlog::warn("alerts for {}: queue full ({} batches, {} bytes), the oldest dropped",
                     t.label, t.queue.size() + 1, t.queued_bytes + bytes);
      }
      t.queued_bytes += bytes;
      t.queue.push_back(std::move(part));
    }
  }
  t.cv.notify_one();
}

std::string Alerter::Payload(const AlertWebhook& hook, const std::string& collector,
                             const std::vector<std::string>& alerts) {
  if (hook.format == "slack") {
    std::string text = "kspm (" + SlackEscape(collector) + "): " + std::to_string(alerts.size()) +
                       " alert" + (alerts.size() == 1 ? "" : "s");
    constexpr size_t kLines = 20;
    for (size_t i = 0; i < alerts.size() && i < kLines; ++i) {
      text += "\n" + SlackLine(Json::parse(alerts[i]));
    }
    if (alerts.size() > kLines)
      text += "\n… and " + std::to_string(alerts.size() - kLines) + " more";
    return Json{{"text", text}}.dump();
  }
  std::string body = R"({"version":"kspm.alerts/v1","collector":)" + Json(collector).dump() +
                     R"(,"sent_at":")" + common::FormatRfc3339(common::Clock::now()) +
                     R"(","alerts":[)";
  for (size_t i = 0; i < alerts.size(); ++i) body += (i ? "," : "") + alerts[i];
  return body + "]}";
}

absl::Status Alerter::Post(const Target& t, const std::string& body, bool* retry) const {
  *retry = true;
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers(
      curl_slist_append(nullptr, "Content-Type: application/json"), curl_slist_free_all);
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, t.hook.url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "kspm-collector/" KSPM_VERSION);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  // Stop ends a POST in progress at once rather than after its timeout.
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &stopping_);
  curl_easy_setopt(
      c, CURLOPT_XFERINFOFUNCTION,
      +[](void* stopping, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
        return static_cast<const std::atomic<bool>*>(stopping)->load() ? 1 : 0;
      });
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    // A URL curl cannot use stays unusable; the network and the receiver may come back.
    *retry = rc != CURLE_URL_MALFORMAT && rc != CURLE_UNSUPPORTED_PROTOCOL &&
             rc != CURLE_ABORTED_BY_CALLBACK;
    return absl::UnavailableError(curl_easy_strerror(rc));
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) return absl::OkStatus();
  // A request the receiver refuses as such will be refused again; overload and outages pass.
  // Redirects are not followed (a webhook that moved is a configuration to fix).
  *retry = code == 408 || code == 429 || code >= 500;
  return absl::UnavailableError("HTTP " + std::to_string(code));
}

void Alerter::Deliver(Target& t) {
  for (;;) {
    std::vector<std::string> batch;
    {
      std::unique_lock lock(t.mu);
      t.cv.wait(lock, [&] { return !t.queue.empty() || stopping_.load(); });
      if (stopping_) return;
      batch = std::move(t.queue.front());
      t.queue.pop_front();
      for (const auto& a : batch) t.queued_bytes -= a.size();
    }
    const std::string body = Payload(t.hook, options_.collector, batch);
    auto wait = options_.retry_min;
    for (int attempt = 1;; ++attempt) {
      bool retry = false;
      const absl::Status s = Post(t, body, &retry);
      if (stopping_.load()) return;
      if (s.ok()) {
        t.delivered++;
        break;
      }
      t.failures++;
      if (!retry || attempt >= options_.attempts) {
        t.dead++;
        spdlog::error("alerts for {}: {} alerts not delivered after {} attempts ({}); dropped",
                      t.label, batch.size(), attempt, std::string(s.message()));
        break;
      }
      spdlog::warn("alerts for {}: attempt {} failed ({}); again in {} ms", t.label, attempt,
                   std::string(s.message()), wait.count());
      std::unique_lock lock(t.mu);
      if (t.cv.wait_for(lock, wait, [&] { return stopping_.load(); })) return;
      wait = std::min(wait * 2, options_.retry_max);
    }
  }
}

void Alerter::WatchStale() {
  bool first = true;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    auto nodes = store_.Nodes("", common::Clock::now());
    lock.lock();
    if (!nodes.ok()) {
      spdlog::warn("alerts: reading nodes for staleness: {}", nodes.status().ToString());
    } else {
      std::vector<std::string> batch;
      std::set<std::string> now_stale;
      for (const auto& n : *nodes) {
        if (!n.stale()) continue;
        const std::string key = n.identity().cluster() + "/" + n.identity().node_name();
        now_stale.insert(key);
        // Nodes already stale when the collector starts were alerted by the one before it.
        if (first || stale_.contains(key)) continue;
        Json a = {{"kind", "stale"},
                  {"cluster", n.identity().cluster()},
                  {"node", n.identity().node_name()},
                  {"last_seen", common::FormatRfc3339(common::FromProto(n.last_seen()))},
                  {"scan_interval_seconds", n.scan_interval_seconds()}};
        batch.push_back(a.dump());
      }
      stale_ = std::move(now_stale);
      first = false;
      if (!batch.empty()) {
        lock.unlock();
        for (auto& t : targets_) Queue(*t, batch);
        lock.lock();
      }
    }
    cv_.wait_for(lock, options_.stale_every, [this] { return stopping_.load(); });
  }
}

void Alerter::FillMetrics(common::metrics::Families& out) const {
  for (const auto& t : targets_) {
    const common::metrics::Labels l = {{"webhook", t->label}};
    size_t queued = 0;
    {
      std::lock_guard lock(t->mu);
      queued = t->queue.size();
    }
    out.Counter("kspm_alerts_total", "Alerts queued for a webhook", l, t->alerts.load());
    out.Counter("kspm_alert_batches_delivered_total", "Alert batches a webhook accepted (2xx)", l,
                t->delivered.load());
    out.Counter("kspm_alert_delivery_failures_total",
                "Failed delivery attempts (each retry counts)", l, t->failures.load());
    out.Counter("kspm_alert_dead_letters_total",
                "Alert batches given up: retries exhausted, refused (4xx) or pushed out of a full "
                "queue",
                l, t->dead.load());
    out.Gauge("kspm_alert_queue_batches", "Alert batches waiting for delivery", l,
              static_cast<double>(queued));
  }
}

}  // namespace kspm::collector::server
