// The watched cluster against the local HTTPS server that follows the API's conventions
// (tests/cluster/fake_apiserver.py), which streams watch events, sends bookmarks, answers 410
// after a compaction and takes injected events: the client's watch, and the collector's scan
// kept current by it, into a real sqlite store.
#include "kspm/collector/cluster/watch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "cluster_test_util.h"
#include "fake_apiserver.h"
#include "fixtures/host_builder.h"
#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/k8s/api_client.h"
#include "kspm/collector/k8s/snapshot_dir.h"
#include "kspm/collector/store/store.h"

namespace kspm::cluster_test {
namespace {

using collector::k8s::ClientOptions;
using collector::k8s::Connection;
using namespace std::chrono_literals;

// What a full scan would change in the store now: the results it removes (-) and adds (+),
// each as check, benchmark, object, status and reason. Empty when the store already holds what
// a full scan of the same objects says.
std::string FullScanDiff(collector::store::Store& store,
                         collector::cluster::PeriodicClusterScan& scan,
                         const std::string& cluster) {
  const auto results = [&] {
    collector::store::FindingFilter filter;
    filter.cluster = cluster;
    filter.statuses = {v1::STATUS_PASS,  v1::STATUS_FAIL,           v1::STATUS_WARN,
                       v1::STATUS_ERROR, v1::STATUS_NOT_APPLICABLE, v1::STATUS_MANUAL};
    std::multiset<std::string> out;
    auto findings = store.Findings(filter);
    EXPECT_TRUE(findings.ok());
    if (!findings.ok()) return out;
    for (const auto& f : *findings) {
      const auto& r = f.result();
      out.insert(r.check_id() + " " + r.benchmark() + " " +
                 collector::cluster::DescribeResource(r.resource()) + " " +
                 v1::Status_Name(r.status()) + ": " + r.reason());
    }
    return out;
  };
  // A batch of changes the scan thread is committing (one check at a time) is finished first,
  // so that `before` is what the changes left, not a store half-way through them.
  EXPECT_TRUE(scan.RunChanges().ok());
  const auto before = results();
  EXPECT_TRUE(scan.RunOnce().ok());
  const auto after = results();
  std::string diff;
  for (const auto& r : before) {
    if (!after.contains(r)) diff += "\n  - " + r;
  }
  for (const auto& r : after) {
    if (!before.contains(r)) diff += "\n  + " + r;
  }
  return diff;
}

const collector::k8s::ResourceType& PodsType() {
  for (const auto& t : collector::k8s::ReadResources()) {
    if (t.kind == "Pod") return t;
  }
  std::abort();
}

// A pod as `kubectl apply` leaves it: managedFields name the manager of each change.
nlohmann::json PodObject(const std::string& ns, const std::string& name, bool privileged,
                         const std::string& manager = "kubectl-client-side-apply") {
  nlohmann::json pod = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", name},
        {"namespace", ns},
        {"uid", "4a1c2f0e-" + name},
        {"managedFields",
         {{{"manager", "kube-scheduler"},
           {"operation", "Update"},
           {"time", "2026-12-01T10:00:00Z"}},
          {{"manager", manager}, {"operation", "Update"}, {"time", "2026-12-01T10:00:05Z"}}}}}},
      {"spec",
       {{"automountServiceAccountToken", false},
        {"containers",
         {{{"name", "app"},
           {"image", "registry.example/app@sha256:" + std::string(64, 'a')},
           {"securityContext", {{"privileged", privileged}}}}}}}}};
  return pod;
}

class WatchTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    extra.push_back("--bookmark-seconds");
    extra.push_back("0.2");
    server_ = std::make_unique<FakeApiServer>(dir_.path(), pki_, std::move(extra));
    ASSERT_GT(server_->port(), 0) << "the fake API server did not start";
  }
  Connection TokenConnection() const { return TokenConnectionTo(*server_, pki_); }
  std::unique_ptr<collector::k8s::ApiClient> Client() {
    ClientOptions o;
    o.timeout = 10s;
    auto client = collector::k8s::MakeApiClient(TokenConnection(), o);
    EXPECT_TRUE(client.ok());
    return *std::move(client);
  }
  // Sends one event through the test server (as if someone changed the object).
  void Inject(const std::string& type, const nlohmann::json& object) {
    auto r = Client()->Create("/_test/events", {{"type", type}, {"object", object}}, "event");
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  // Requests the server logged for `resource`: lists (no watch) or watches.
  size_t Requests(const std::string& resource, bool watch) const {
    size_t n = 0;
    for (const auto& r : server_->Requests()) {
      const std::string path = r["path"];
      if (!path.ends_with("/" + resource) || r["method"] != "GET") continue;
      if (r["query"].contains("watch") == watch) ++n;
    }
    return n;
  }

  kspm::testing::TempDir dir_;
  Pki pki_ = MakePki();
  std::unique_ptr<FakeApiServer> server_;
};

TEST_F(WatchTest, TheClientStreamsEventsAndBookmarksAndSaysGoneWhenTheVersionIsCompacted) {
  Start();
  auto client = Client();
  std::string version;
  ASSERT_TRUE(client
                  ->List(
                      PodsType(),
                      [&](const collector::k8s::ListPage& page) {
                        version = collector::k8s::PageVersion(page);
                        return absl::OkStatus();
                      },
                      nullptr)
                  .ok());
  ASSERT_FALSE(version.empty());
  std::thread inject([&] {
    std::this_thread::sleep_for(300ms);
    Inject("ADDED", PodObject("default", "miner", true));
  });
  std::vector<collector::k8s::WatchEvent> seen;
  std::atomic<bool> stop{false};
  const auto s = client->Watch(
      PodsType(), version, 10s,
      [&](collector::k8s::WatchEvent&& e) {
        seen.push_back(std::move(e));
        return seen.back().type != "ADDED";
      },
      stop);
  inject.join();
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().type, "ADDED");
  EXPECT_EQ(seen.back().object["metadata"]["name"], "miner");
  // Bookmarks came while the watch was idle (every 0.2 s), each with a newer version.
  EXPECT_GE(
      std::count_if(seen.begin(), seen.end(), [](const auto& e) { return e.type == "BOOKMARK"; }),
      1);
  // The request asked for bookmarks and started at the list's version.
  bool asked = false;
  for (const auto& r : server_->Requests()) {
    if (r["query"].value("watch", "") == "1") {
      asked = r["query"].value("allowWatchBookmarks", "") == "true" &&
              r["query"].value("resourceVersion", "") == version;
    }
  }
  EXPECT_TRUE(asked);

  // After a compaction the old version is gone: 410, and the caller must list again.
  ASSERT_TRUE(Client()->Create("/_test/compact", nlohmann::json::object(), "compact").ok());
  const auto gone = client->Watch(
      PodsType(), version, 10s, [](collector::k8s::WatchEvent&&) { return true; }, stop);
  EXPECT_TRUE(absl::IsAborted(gone)) << gone;
  EXPECT_NE(gone.message().find("410"), std::string::npos) << gone.message();

  // Stop ends a quiet watch within about a second.
  std::thread stopper([&] {
    std::this_thread::sleep_for(300ms);
    stop = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  const auto stopped = client->Watch(
      PodsType(), "", 60s, [](collector::k8s::WatchEvent&&) { return true; }, stop);
  stopper.join();
  EXPECT_TRUE(stopped.ok()) << stopped;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

// A stream that sends something other than a JSON event (here invalid UTF-8) ends the watch with
// an error naming the resource; nothing of it is applied.
TEST_F(WatchTest, AGarbledEventEndsTheWatchWithAnErrorNamingTheResource) {
  Start({"--watch-garbage", "pods"});
  std::atomic<bool> stop{false};
  size_t handled = 0;
  const auto s = Client()->Watch(
      PodsType(), "1", 5s,
      [&](collector::k8s::WatchEvent&&) {
        ++handled;
        return true;
      },
      stop);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("pods watch: an event that is not JSON"), std::string::npos)
      << s.message();
  EXPECT_EQ(handled, 0u);
}

TEST_F(WatchTest, AForbiddenWatchSaysWhichPermissionIsMissing) {
  Start({"--forbid", "pods"});
  std::atomic<bool> stop{false};
  const auto s = Client()->Watch(
      PodsType(), "1", 5s, [](collector::k8s::WatchEvent&&) { return true; }, stop);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_NE(s.message().find("'watch' on pods"), std::string::npos) << s.message();
}

// The collector's scan of a watched cluster: one list, then every change re-evaluated as it
// comes, with the verdicts that changed committed and the change's manager in the drift event.
class WatchedScanTest : public WatchTest {
 protected:
  void StartScan(collector::cluster::WatchSettings watch = {}) {
    auto store = collector::store::OpenSqliteStore(dir_.path() + "/kspm.db");
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = *std::move(store);
    collector::cluster::ClusterScanSettings settings;
    settings.cluster = "lab";
    settings.interval = 3600s;
    ClientOptions o;
    o.timeout = 10s;
    watch.first_backoff = 50ms;
    auto scan = collector::cluster::PeriodicClusterScan::Create(
        collector::cluster::WatchSource(TokenConnection(), o, watch), settings, *store_);
    ASSERT_TRUE(scan.ok());
    scan_ = *std::move(scan);
    scan_->Start();
    // The first scan, from the first list.
    ASSERT_TRUE(WaitFor([&] {
      auto nodes = store_->Nodes("lab", common::Clock::now());
      return nodes.ok() && !nodes->empty() && (*nodes)[0].counts().pass() > 0;
    }));
  }
  bool WaitFor(const std::function<bool()>& done, std::chrono::seconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return done();
  }
  // The current verdicts of `check` about `object` (`Pod default/miner`), any container.
  std::vector<v1::Status> Verdicts(const std::string& check, const std::string& kind,
                                   const std::string& ns, const std::string& name) {
    collector::store::FindingFilter filter;
    filter.cluster = "lab";
    filter.id = check;
    filter.statuses = {v1::STATUS_PASS, v1::STATUS_FAIL, v1::STATUS_WARN, v1::STATUS_ERROR,
                       v1::STATUS_NOT_APPLICABLE};
    std::vector<v1::Status> out;
    auto findings = store_->Findings(filter);
    EXPECT_TRUE(findings.ok());
    for (const auto& f : *findings) {
      const auto& r = f.result().resource();
      if (r.kind() == kind && r.namespace_() == ns && r.name() == name) {
        out.push_back(f.result().status());
      }
    }
    return out;
  }
  std::string FullScanChanges() { return FullScanDiff(*store_, *scan_, "lab"); }
  void TearDown() override {
    if (scan_) scan_->Stop();
  }

  std::unique_ptr<collector::store::Store> store_;
  std::unique_ptr<collector::cluster::PeriodicClusterScan> scan_;
};

TEST_F(WatchedScanTest, APrivilegedPodFailsAsSoonAsItIsCreatedAndNoListFollows) {
  Start();
  StartScan();
  const size_t lists = Requests("pods", false);
  EXPECT_EQ(lists, 1u) << "the first list";

  const auto created = std::chrono::steady_clock::now();
  Inject("ADDED", PodObject("default", "miner", true));
  ASSERT_TRUE(WaitFor([&] {
    const auto v = Verdicts("pod.privileged", "Pod", "default", "miner");
    return std::count(v.begin(), v.end(), v1::STATUS_FAIL) > 0;
  })) << "the privileged pod never failed";
  const auto took = std::chrono::steady_clock::now() - created;
  EXPECT_LT(took, 10s);  // a generous bound for a loaded CI machine; the bench measures p99

  // The drift event names the pod, the change and who made it (the latest managedFields entry).
  collector::store::DriftFilter drift;
  drift.cluster = "lab";
  auto events = store_->Drift(drift);
  ASSERT_TRUE(events.ok());
  const v1::DriftEvent* found = nullptr;
  for (const auto& e : *events) {
    if (e.event().path().starts_with("Pod default/miner")) found = &e.event();
  }
  ASSERT_NE(found, nullptr) << "no drift event for the pod";
  EXPECT_EQ(found->source(), "watch");
  EXPECT_EQ(found->operation(), "create");
  EXPECT_EQ(found->comm(), "kubectl-client-side-apply");
  ASSERT_GE(found->caused_by_size(), 1);
  EXPECT_EQ(found->caused_by(0), "Pod default/miner (create by kubectl-client-side-apply)");
  bool privileged_change = false;
  for (const auto& c : found->changes()) {
    privileged_change |= c.check_id() == "pod.privileged" && c.new_status() == v1::STATUS_FAIL;
  }
  EXPECT_TRUE(privileged_change);

  // Fixed by its owner: PASS. Deleted: its results go.
  Inject("MODIFIED", PodObject("default", "miner", false, "helm"));
  ASSERT_TRUE(WaitFor([&] {
    const auto v = Verdicts("pod.privileged", "Pod", "default", "miner");
    return !v.empty() && std::count(v.begin(), v.end(), v1::STATUS_FAIL) == 0;
  }));
  Inject("DELETED", PodObject("default", "miner", false));
  ASSERT_TRUE(
      WaitFor([&] { return Verdicts("pod.privileged", "Pod", "default", "miner").empty(); }));

  // The API saw no second list of pods, only watches.
  EXPECT_EQ(Requests("pods", false), 1u);
  EXPECT_GE(Requests("pods", true), 1u);

  // What the changes left in the store is what a full scan of the same objects says: a full
  // scan now changes nothing.
  EXPECT_EQ(FullScanChanges(), "");
}

TEST_F(WatchedScanTest, AWorkloadChangeReEvaluatesOnlyThatWorkloadAndAgreesWithAFullScan) {
  Start();
  StartScan();
  // Two pods in another namespace; then one becomes privileged.
  Inject("ADDED", {{"apiVersion", "v1"},
                   {"kind", "Namespace"},
                   {"metadata", {{"name", "shop"}, {"labels", {{"team", "shop"}}}}}});
  Inject("ADDED", PodObject("shop", "web", false));
  Inject("ADDED", PodObject("shop", "db", false));
  ASSERT_TRUE(WaitFor([&] { return !Verdicts("pod.privileged", "Pod", "shop", "db").empty(); }));
  ASSERT_TRUE(WaitFor([&] { return !Verdicts("pod.privileged", "Pod", "shop", "web").empty(); }));
  Inject("MODIFIED", PodObject("shop", "db", true));
  ASSERT_TRUE(WaitFor([&] {
    const auto v = Verdicts("pod.privileged", "Pod", "shop", "db");
    return std::count(v.begin(), v.end(), v1::STATUS_FAIL) > 0;
  }));
  const auto web = Verdicts("pod.privileged", "Pod", "shop", "web");
  EXPECT_TRUE(!web.empty() && std::count(web.begin(), web.end(), v1::STATUS_FAIL) == 0);
  EXPECT_EQ(FullScanChanges(), "") << "the changes left results a full scan disagrees with";
}

// Pods and their Namespace come on separate watches, in either order. Pods whose Namespace is not
// known yet leave no namespace judged: the namespace-level checks' cluster-wide verdict stays what
// a full scan says (it was removed, leaving those checks with no result at all), and the
// Namespace's arrival then judges it.
TEST_F(WatchedScanTest, PodsBeforeTheirNamespaceLeaveTheVerdictsAFullScanGives) {
  Start();
  StartScan();
  Inject("ADDED", PodObject("cafe", "till", false));
  ASSERT_TRUE(WaitFor([&] { return !Verdicts("pod.privileged", "Pod", "cafe", "till").empty(); }));
  EXPECT_EQ(FullScanChanges(), "") << "with the pod only";
  Inject("ADDED", {{"apiVersion", "v1"},
                   {"kind", "Namespace"},
                   {"metadata", {{"name", "cafe"}, {"labels", {{"team", "cafe"}}}}}});
  ASSERT_TRUE(WaitFor([&] {
    return !Verdicts("admission.privileged", "Namespace", "", "cafe").empty();
  })) << "the namespace was never judged";
  EXPECT_EQ(FullScanChanges(), "") << "with its namespace";
}

// A pod changed into something kspm cannot read (nested past any Kubernetes object) leaves no
// verdict about its old version: the kind is listed again and its checks say they could not read
// everything (ERROR), instead of keeping the old FAIL (or PASS) of an object that changed.
TEST_F(WatchedScanTest, AnObjectChangedIntoSomethingUnreadableLeavesNoStaleVerdict) {
  Start();
  StartScan();
  Inject("ADDED", PodObject("default", "miner", true));
  ASSERT_TRUE(WaitFor([&] {
    const auto v = Verdicts("pod.privileged", "Pod", "default", "miner");
    return std::count(v.begin(), v.end(), v1::STATUS_FAIL) > 0;
  }));
  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 300; ++i) deep = nlohmann::json::array({std::move(deep)});
  nlohmann::json changed = PodObject("default", "miner", true);
  changed["spec"]["x-nested"] = std::move(deep);
  Inject("MODIFIED", changed);
  ASSERT_TRUE(WaitFor([&] {
    return Verdicts("pod.privileged", "Pod", "default", "miner").empty() &&
           !Verdicts("pod.privileged", "Cluster", "", "").empty();
  })) << "the old verdict stayed";
  const auto cluster = Verdicts("pod.privileged", "Cluster", "", "");
  EXPECT_EQ(std::count(cluster.begin(), cluster.end(), v1::STATUS_ERROR),
            static_cast<long>(cluster.size()));
  EXPECT_EQ(Requests("pods", false), 2u) << "listed again once";
  EXPECT_EQ(FullScanChanges(), "");
}

// ConfigMaps are listed only when asked (--scan-configmaps): each is summarised as it is read,
// and a watched ConfigMap that gains a password fails without its value reaching the store.
TEST_F(WatchedScanTest, ConfigMapsAreReadOnlyWhenAskedAndTheirValuesNeverStored) {
  Start();
  {
    k8s::Snapshot plain;
    auto client = Client();
    ASSERT_TRUE(collector::k8s::FetchSnapshot(*client, plain).ok());
    EXPECT_TRUE(plain.Of("ConfigMap").empty());
    EXPECT_EQ(Requests("configmaps", false), 0u);
  }
  collector::cluster::WatchSettings watch;
  watch.configmaps = true;
  StartScan(watch);
  EXPECT_EQ(Requests("configmaps", false), 1u);
  // The kubeadm ConfigMaps (kube-proxy's kubeconfig names a token file) hold no credential.
  collector::store::FindingFilter failing;
  failing.cluster = "lab";
  failing.id = "secrets.configmap-credentials";
  failing.statuses = {v1::STATUS_FAIL};
  EXPECT_TRUE(store_->Findings(failing)->empty());
  const std::string password = "correct-horse-battery-staple";
  Inject("ADDED", {{"apiVersion", "v1"},
                   {"kind", "ConfigMap"},
                   {"metadata", {{"name", "app-settings"}, {"namespace", "default"}}},
                   {"data", {{"LOG_LEVEL", "info"}, {"SMTP_PASSWORD", password}}}});
  ASSERT_TRUE(WaitFor([&] {
    const auto v =
        Verdicts("secrets.configmap-credentials", "ConfigMap", "default", "app-settings");
    return std::count(v.begin(), v.end(), v1::STATUS_FAIL) > 0;
  }));
  collector::store::FindingFilter all;
  all.cluster = "lab";
  all.statuses = {v1::STATUS_PASS,  v1::STATUS_FAIL,           v1::STATUS_WARN,
                  v1::STATUS_ERROR, v1::STATUS_NOT_APPLICABLE, v1::STATUS_MANUAL};
  auto findings = store_->Findings(all);
  ASSERT_TRUE(findings.ok());
  for (const auto& f : *findings) {
    EXPECT_EQ(f.SerializeAsString().find(password), std::string::npos) << f.result().check_id();
  }
  collector::store::DriftFilter drift;
  auto events = store_->Drift(drift);
  ASSERT_TRUE(events.ok());
  for (const auto& e : *events) EXPECT_EQ(e.SerializeAsString().find(password), std::string::npos);
}

TEST_F(WatchedScanTest, AGoneVersionListsTheKindAgainAndTheNextChangeIsSeen) {
  Start();
  StartScan();
  ASSERT_TRUE(Client()->Create("/_test/compact", nlohmann::json::object(), "compact").ok());
  // Every open watch ends with 410; each kind is listed again, once.
  ASSERT_TRUE(WaitFor([&] { return Requests("pods", false) == 2; }));
  Inject("ADDED", PodObject("default", "late", true));
  ASSERT_TRUE(WaitFor([&] {
    const auto v = Verdicts("pod.privileged", "Pod", "default", "late");
    return std::count(v.begin(), v.end(), v1::STATUS_FAIL) > 0;
  }));
  const auto counters = collector::cluster::CountersOf(*scan_->source());
  EXPECT_GE(counters.gone, 1u);
  EXPECT_EQ(Requests("pods", false), 2u);
}

// The safety net: every kind is listed again after the relist interval (6 h by default), and
// what that re-list re-evaluates still agrees with a full scan.
TEST_F(WatchedScanTest, EveryKindIsListedAgainAfterTheRelistInterval) {
  Start();
  collector::cluster::WatchSettings watch;
  watch.relist = 1s;
  StartScan(watch);
  ASSERT_TRUE(
      WaitFor([&] { return Requests("pods", false) >= 2 && Requests("roles", false) >= 2; }));
  EXPECT_GE(collector::cluster::CountersOf(*scan_->source()).lists, 2u);
  std::this_thread::sleep_for(200ms);  // the re-list's batch settles and commits
  EXPECT_EQ(FullScanChanges(), "");
}

// A ClusterRole that grants list but not watch: the pods cannot be kept current, so the checks
// that read them say ERROR with the missing permission instead of verdicts that go stale.
TEST_F(WatchedScanTest, ARefusedWatchTurnsItsChecksIntoErrorsNamingThePermission) {
  Start({"--forbid", "pods-watch"});
  StartScan();
  ASSERT_TRUE(WaitFor([&] {
    const auto v = Verdicts("pod.privileged", "Cluster", "", "");
    return std::count(v.begin(), v.end(), v1::STATUS_ERROR) > 0;
  }));
  collector::store::FindingFilter errors;
  errors.cluster = "lab";
  errors.id = "pod.privileged";
  errors.statuses = {v1::STATUS_ERROR};
  auto found = store_->Findings(errors);
  ASSERT_TRUE(found.ok());
  ASSERT_FALSE(found->empty());
  EXPECT_NE((*found)[0].result().reason().find("kspm needs 'watch' on pods"), std::string::npos)
      << (*found)[0].result().reason();
  // Listing pods was allowed: one list, and no more while the watch stays refused.
  EXPECT_EQ(Requests("pods", false), 1u);
}

TEST_F(WatchedScanTest, FailingWatchesBackOffAndRecover) {
  // The first three watch requests for pods get a 500.
  Start({"--fail", "pods-watch=3"});
  StartScan();
  ASSERT_TRUE(
      WaitFor([&] { return collector::cluster::CountersOf(*scan_->source()).errors >= 3; }));
  Inject("ADDED", PodObject("default", "after-errors", true));
  ASSERT_TRUE(WaitFor([&] {
    const auto v = Verdicts("pod.privileged", "Pod", "default", "after-errors");
    return std::count(v.begin(), v.end(), v1::STATUS_FAIL) > 0;
  }));
  // Still one list of pods: errors on the watch retry the watch from the same version.
  EXPECT_EQ(Requests("pods", false), 1u);
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// Random changes of every kind the checks read, fed to the watched objects as events and
// evaluated batch by batch: the store then holds what a full scan of the same objects says.
// Seeded, so a failure repeats; the diff names each result the two disagree on.
// Once with each check whole, once with per-workload checks evaluated and stored two workloads
// at a time (as a large cluster's are), full scans and changes alike.
void ChurnAndCompare(size_t workloads_per_part) {
  kspm::testing::TempDir dir;
  k8s::Snapshot demo;
  ASSERT_TRUE(k8s::LoadSnapshotDir(SourceDir() + "/tests/fixtures/cluster/demo", demo).ok());
  auto live_owned = std::make_unique<collector::cluster::LiveObjects>("churn");
  auto* live = live_owned.get();
  live->Reset(std::move(demo), "v1.30.2");
  auto store = collector::store::OpenSqliteStore(dir.path() + "/kspm.db");
  ASSERT_TRUE(store.ok());
  collector::cluster::ClusterScanSettings settings;
  settings.cluster = "churn";
  settings.workloads_per_part = workloads_per_part;
  auto scan =
      collector::cluster::PeriodicClusterScan::Create(std::move(live_owned), settings, **store);
  ASSERT_TRUE(scan.ok());
  ASSERT_TRUE((*scan)->RunOnce().ok());

  std::mt19937 rng(20261206);
  const auto pick = [&](const std::vector<std::string>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
  };
  const auto coin = [&] { return std::uniform_int_distribution<int>(0, 1)(rng) == 1; };
  const std::vector<std::string> namespaces = {"shop",       "payments", "ci",
                                               "monitoring", "default",  "fresh"};
  const std::vector<std::string> names = {"a", "b", "c"};
  const auto spec = [&] {
    json container = {{"name", "app"},
                      {"image", coin() ? "nginx:latest" : "nginx@sha256:" + std::string(64, 'b')},
                      {"securityContext", {{"privileged", coin()}}}};
    if (coin()) container["resources"] = {{"limits", {{"cpu", "1"}, {"memory", "1Gi"}}}};
    json s = {{"containers", {container}}, {"hostNetwork", coin()}};
    if (coin()) s["serviceAccountName"] = "app";
    if (coin()) s["automountServiceAccountToken"] = false;
    return s;
  };
  const auto event = [&](const std::string& kind) -> collector::k8s::WatchEvent {
    const std::string ns = pick(namespaces), name = pick(names);
    const std::string type = coin() || coin() ? "ADDED" : "DELETED";
    json labels = {{"app", pick(names)}};
    json o;
    if (kind == "Pod") {
      o = Pod(ns, "pod-" + name, spec(), nullptr, labels);
    } else if (kind == "Deployment") {
      o = Deployment(ns, "deploy-" + name, spec(), labels);
    } else if (kind == "Namespace") {
      json ns_labels = {{"kubernetes.io/metadata.name", ns}};
      if (coin())
        ns_labels["pod-security.kubernetes.io/enforce"] = coin() ? "restricted" : "baseline";
      o = Namespace(ns, ns_labels);
    } else if (kind == "ServiceAccount") {
      o = ServiceAccount(ns, coin() ? "default" : "app", coin() ? json(false) : json(nullptr));
    } else if (kind == "RoleBinding") {
      o = {
          {"apiVersion", "rbac.authorization.k8s.io/v1"},
          {"kind", "RoleBinding"},
          {"metadata", {{"name", "bind-" + name}, {"namespace", ns}}},
          {"roleRef",
           {{"apiGroup", "rbac.authorization.k8s.io"},
            {"kind", "ClusterRole"},
            {"name", coin() ? "cluster-admin" : "view"}}},
          {"subjects",
           {pick({"sa", "group", "user", "other"}) == "sa"
                ? json{{"kind", "ServiceAccount"}, {"name", "app"}, {"namespace", pick(namespaces)}}
            : coin() ? json{{"kind", "Group"},
                            {"apiGroup", "rbac.authorization.k8s.io"},
                            {"name", "system:serviceaccounts:" + pick(namespaces)}}
                     : json{{"kind", "User"},
                            {"apiGroup", "rbac.authorization.k8s.io"},
                            {"name", "system:serviceaccount:" + ns + ":app"}}}}};
    } else if (kind == "NetworkPolicy") {
      o = {{"apiVersion", "networking.k8s.io/v1"},
           {"kind", "NetworkPolicy"},
           {"metadata", {{"name", "np-" + name}, {"namespace", ns}}},
           {"spec",
            {{"podSelector", {{"matchLabels", {{"app", pick(names)}}}}},
             {"policyTypes", {"Ingress"}}}}};
    } else {  // LimitRange
      o = {{"apiVersion", "v1"},
           {"kind", "LimitRange"},
           {"metadata", {{"name", "limits"}, {"namespace", ns}}},
           {"spec",
            {{"limits",
              {{{"type", "Container"}, {"default", {{"cpu", "1"}, {"memory", "1Gi"}}}}}}}}};
    }
    // An ADDED for an object already there is a MODIFIED; the evaluation does not care.
    return {type, o};
  };
  const std::vector<std::string> kinds = {
      "Pod",         "Pod",           "Deployment", "Namespace", "ServiceAccount",
      "RoleBinding", "NetworkPolicy", "LimitRange"};
  size_t applied = 0;
  for (int batch = 0; batch < 40; ++batch) {
    const int size = std::uniform_int_distribution<int>(1, 6)(rng);
    for (int i = 0; i < size; ++i) applied += live->Apply(pick(kinds), event(pick(kinds)));
    ASSERT_TRUE((*scan)->RunChanges().ok());
  }
  EXPECT_GE(applied, 100u);

  EXPECT_EQ(FullScanDiff(**store, **scan, "churn"), "")
      << "results the changes left (-) and what a full scan says (+)";
}

TEST(WatchedChurn, ManyRandomChangesLeaveWhatAFullScanSays) {
  for (size_t slice : {size_t{0}, size_t{2}}) {
    SCOPED_TRACE("workloads per part: " + std::to_string(slice));
    ChurnAndCompare(slice);
  }
}

// A watched cluster fed in-process (no API server): the objects of `dir`, a sqlite store, a
// scan; FullScanDiff says what a full scan would change in the store.
struct InProcessWatch {
  explicit InProcessWatch(const std::string& fixture) {
    k8s::Snapshot objects;
    if (!fixture.empty()) {
      EXPECT_TRUE(
          k8s::LoadSnapshotDir(SourceDir() + "/tests/fixtures/cluster/" + fixture, objects).ok());
    }
    auto owned = std::make_unique<collector::cluster::LiveObjects>("in-process");
    live = owned.get();
    live->Reset(std::move(objects), "v1.30.2");
    auto opened = collector::store::OpenSqliteStore(dir.path() + "/kspm.db");
    EXPECT_TRUE(opened.ok());
    store = *std::move(opened);
    collector::cluster::ClusterScanSettings settings;
    settings.cluster = "lab";
    auto made = collector::cluster::PeriodicClusterScan::Create(std::move(owned), settings, *store);
    EXPECT_TRUE(made.ok());
    scan = *std::move(made);
    EXPECT_TRUE(scan->RunOnce().ok());
  }
  void Event(const std::string& type, const json& object) {
    EXPECT_TRUE(live->Apply(object["kind"], {type, object}));
    EXPECT_TRUE(scan->RunChanges().ok());
  }
  std::string FullScanDiff() { return cluster_test::FullScanDiff(*store, *scan, "lab"); }

  kspm::testing::TempDir dir;
  collector::cluster::LiveObjects* live = nullptr;
  std::unique_ptr<collector::store::Store> store;
  std::unique_ptr<collector::cluster::PeriodicClusterScan> scan;
};

json Owned(json object, const std::string& kind, const std::string& name) {
  object["metadata"]["ownerReferences"] = {
      {{"apiVersion", kind == "CronJob" || kind == "Job" ? "batch/v1" : "apps/v1"},
       {"kind", kind},
       {"name", name},
       {"controller", true}}};
  return object;
}

// Watches of different kinds deliver in no fixed order: a CronJob's pod can arrive before its
// Job, and the Job before the CronJob. Each arrival moves where the pod is reported (Job, then
// CronJob); no result may stay behind under the old place.
TEST(WatchedChurn, ControllersArrivingAfterTheirPodsMoveThePodsResults) {
  InProcessWatch w("demo");
  json pod_spec = {{"containers", {{{"name", "backup"}, {"image", "registry.example/backup:2"}}}}};
  json pod = Owned(Pod("shop", "backup-29-x7k", pod_spec), "Job", "backup-29");
  json job = Owned({{"apiVersion", "batch/v1"},
                    {"kind", "Job"},
                    {"metadata", {{"name", "backup-29"}, {"namespace", "shop"}}},
                    {"spec", {{"template", {{"spec", pod_spec}}}}}},
                   "CronJob", "backup");
  json cronjob = {{"apiVersion", "batch/v1"},
                  {"kind", "CronJob"},
                  {"metadata", {{"name", "backup"}, {"namespace", "shop"}}},
                  {"spec",
                   {{"schedule", "0 3 * * *"},
                    {"jobTemplate", {{"spec", {{"template", {{"spec", pod_spec}}}}}}}}}};
  w.Event("ADDED", pod);
  EXPECT_EQ(w.FullScanDiff(), "");
  w.Event("ADDED", job);
  EXPECT_EQ(w.FullScanDiff(), "");
  w.Event("ADDED", cronjob);
  EXPECT_EQ(w.FullScanDiff(), "");
  // And away again: the CronJob deleted with its dependents orphaned.
  w.Event("DELETED", cronjob);
  EXPECT_EQ(w.FullScanDiff(), "");
  // A status-only update changes nothing the checks read: no batch is evaluated for it.
  json job_status = job;
  job_status["status"] = {{"succeeded", 1}};
  EXPECT_TRUE(w.live->Apply("Job", {"MODIFIED", job_status}));
  auto quiet = w.scan->RunChanges();
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(quiet->changes, 0u);
}

}  // namespace
}  // namespace kspm::cluster_test
