#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/common/time.h"
#include "kspm/v1/query.pb.h"
#include "kspm/v1/results.pb.h"

namespace kspm::collector::store {

// Filters for current results. Empty fields match everything.
// Where a finding stands in Findings' order, as FindingFilter::after takes it: cluster, node,
// -severity, benchmark, item id, the object's kind, namespace, name and container, check id.
inline constexpr size_t kFindingPositionSize = 10;
std::vector<std::string> FindingPosition(const v1::Finding& finding);

struct FindingFilter {
  std::string cluster;
  std::string node;
  std::vector<v1::Status> statuses;  // empty: every status but PASS
  v1::Severity min_severity = v1::SEVERITY_UNSPECIFIED;
  std::string benchmark;
  std::string id;    // check id or benchmark item id
  std::string ns;    // namespace a cluster result is scored under (`(cluster)` for cluster-scoped)
  size_t limit = 0;  // 0: no limit
  // Only findings after this position in the order (a page token's content): cluster, node,
  // FindingPosition of the last finding already seen.
  std::optional<std::vector<std::string>> after;
  std::optional<common::Clock::time_point> since;        // verdict changed at or after
  common::Clock::time_point now = common::Clock::now();  // for staleness
};

// Filters for the history of verdict changes.
struct HistoryFilter {
  std::string cluster;
  std::string node;
  std::string id;  // check id or benchmark item id
  std::optional<common::Clock::time_point> since;
  size_t limit = 1000;
};

// Filters for drift events. Empty fields match everything.
struct DriftFilter {
  std::string cluster;
  std::string node;
  std::string id;  // only events that changed this check id or benchmark item id
  std::optional<common::Clock::time_point> since;
  size_t limit = 1000;
};

// Current results counted for metrics: by cluster, status and severity, and the failing ones by
// check (bounded by the catalogue's size, never per object).
struct PostureCounts {
  struct ByStatus {
    std::string cluster;
    v1::Status status = v1::STATUS_UNSPECIFIED;
    v1::Severity severity = v1::SEVERITY_UNSPECIFIED;
    uint64_t results = 0;
  };
  struct FailingCheck {
    std::string cluster, benchmark, benchmark_id, check_id;
    v1::Severity severity = v1::SEVERITY_UNSPECIFIED;
    uint64_t results = 0;
  };
  std::vector<ByStatus> by_status;
  std::vector<FailingCheck> failing;
};

// What a commit did, for logs and acks.
// The cluster a report without one is filed under, and checked as.
inline std::string ClusterName(const std::string& cluster) {
  return cluster.empty() ? std::string("default") : cluster;
}

struct CommitStats {
  bool duplicate = false;  // the scan id was committed before; nothing changed
  size_t results = 0;      // results the report carried
  size_t written = 0;      // rows written: new or changed results (unchanged ones cost nothing)
  size_t transitions = 0;
};

// What the store knows about the space it writes to, for health and logs.
struct StoreSpace {
  std::string path;         // the database file
  int64_t free_bytes = -1;  // free to this process on its file system; -1: unknown
  int64_t wal_bytes = 0;    // the write-ahead log beside it
  bool tight = false;       // little space left: the log is checkpointed after every batch
  std::string full_since;   // RFC 3339 time commits started failing for lack of space; empty
                            // while they succeed
};

// A join token as stored: the secret only as its SHA-256 (hex).
struct JoinToken {
  std::string id;
  std::string secret_sha256;
  std::string cluster;
  std::string node;  // empty: any node name
  common::Clock::time_point expires;
  uint32_t uses = 1;  // left
  std::string created_by;
};

// Whether a node may report and enrol. A revoked node is refused; once allowed again, its
// certificates issued before `revoked_at` stay refused.
struct NodeAccess {
  std::string cluster;
  std::string node;
  bool revoked = false;
  common::Clock::time_point revoked_at;
};

// A certificate signed by enrolment.
struct IssuedCertificate {
  std::string serial;
  std::string cluster;
  std::string node;
  common::Clock::time_point not_after;
  std::string method;  // service-account-token, join-token, renewal
  std::string source;  // the caller's address
};

// A verdict a commit changed, for alerts and metrics: a result whose status is not the one
// stored before, or (old_status UNSPECIFIED) a new result that is not PASS or NOT_APPLICABLE on a
// node or cluster that already had results (a node's first report is its baseline, not news).
struct VerdictChange {
  std::string cluster;
  std::string node;
  std::string scan_id;
  v1::Status old_status = v1::STATUS_UNSPECIFIED;
  v1::CheckResult result;  // as stored: new status, severity, evidence, acceptance
};

// What one committed transaction changed. Rolled-back work is never in it.
struct CommitNews {
  std::vector<VerdictChange> changes;
  std::vector<v1::DriftRecord> drift;
  common::Clock::time_point at;
};

// A full report written in parts, for reports too large to hold at once (a cluster scan of
// 150,000 pods): each part carries every result of the checks in it and commits on its own, so
// readers see a check's new verdicts as soon as its part is in. Finish removes the results of
// checks no part carried and records the scan's size. A writer dropped before Finish leaves the
// parts committed so far; the next full report corrects the rest.
//
// A partial report (a watched cluster's change) replaces only what its parts carry: whole checks
// with Add, or some objects' results of some checks with AddScoped; Finish removes nothing.
//
// The part of a node's current results an AddScoped part replaces: for each check, under each
// of its benchmarks, the results about `objects` (any container), about any object in
// `namespaces` (a Namespace object counts as in itself), and the check's cluster-wide results.
// Current results of other objects stay.
struct ResultScope {
  std::map<std::string, std::vector<std::string>> checks;  // check id -> benchmarks
  std::vector<std::array<std::string, 3>> objects;         // kind, namespace, name
  std::vector<std::string> namespaces;
};

class ReportWriter {
 public:
  virtual ~ReportWriter() = default;
  // Whole checks, each part in its own transaction. InvalidArgument when a part carries a check
  // an earlier part carried. With `more`, `results` are of one check and the next calls carry
  // more of it, until one without `more` (whose results may be empty) ends it: the check's rows
  // that none of its calls carried go then. A writer whose part failed takes no more parts.
  [[nodiscard]] virtual absl::Status Add(std::vector<v1::CheckResult>&& results,
                                         bool more = false) = 0;
  // `results` are of the checks of `scope` and about its objects (anything else is
  // InvalidArgument); they replace the current results in `scope`.
  [[nodiscard]] virtual absl::Status AddScoped(std::vector<v1::CheckResult>&& results,
                                               const ResultScope& scope) = 0;
  // Called on each drift event this report makes (an object whose verdicts changed; `path` is
  // the object) before it is stored, to say what caused it. Without it: source `rescan`.
  virtual void AnnotateDrift(std::function<void(v1::DriftEvent&)> annotate) = 0;
  // `finished`: when the scan ended (the header's finished_at was not known yet).
  [[nodiscard]] virtual absl::StatusOr<CommitStats> Finish(common::Clock::time_point finished) = 0;
};

// Persistence of posture: nodes, current results per (node, check, benchmark, object: the
// common::ResourceKey of a cluster result, empty on nodes), scans and the history of verdict
// changes. Implementations are thread-safe.
class Store {
 public:
  virtual ~Store() = default;
  // Commits one report atomically. Idempotent by scan id.
  [[nodiscard]] virtual absl::StatusOr<CommitStats> CommitReport(const v1::NodeReport& report,
                                                                 common::Clock::time_point now) = 0;
  // Commits several reports in one transaction; `out[i]` is the outcome of `reports[i]`. A report
  // that fails is rolled back alone; the others still commit.
  virtual std::vector<absl::StatusOr<CommitStats>> CommitBatch(
      const std::vector<const v1::NodeReport*>& reports, common::Clock::time_point now) = 0;
  // Starts a report committed in parts (ReportWriter): full, or with `partial` a change to part
  // of the node's results. `header` gives the scan id, node and times; its results, if any, are
  // ignored. AlreadyExists for a scan id already stored.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<ReportWriter>> BeginReport(
      const v1::NodeReport& header, common::Clock::time_point now, bool partial = false) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<v1::Finding>> Findings(
      const FindingFilter& filter) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<v1::NodeInfo>> Nodes(
      const std::string& cluster, common::Clock::time_point now) = 0;
  [[nodiscard]] virtual absl::StatusOr<v1::SummaryResponse> Summary(
      const std::string& cluster, common::Clock::time_point now) = 0;
  [[nodiscard]] virtual absl::StatusOr<PostureCounts> CountResults() = 0;
  // Verdict changes, newest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<v1::Transition>> History(
      const HistoryFilter& filter) = 0;
  // Drift events, newest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<v1::DriftRecord>> Drift(
      const DriftFilter& filter) = 0;
  // Deletes transitions, drift events and scans older than `cutoff`; returns how many rows went.
  [[nodiscard]] virtual absl::StatusOr<size_t> PruneHistory(common::Clock::time_point cutoff) = 0;
  // Space as of the last commit (or open).
  virtual StoreSpace Space() const = 0;
  // Called after each commit that changed a verdict or stored a drift event, on the committing
  // thread, in commit order, with the store's write lock held: it must only queue (alerts) or
  // count (metrics). Set it before the first commit.
  virtual void SetCommitListener(std::function<void(CommitNews&&)> listener) = 0;

  // Whether this process holds lease `name` among the collectors sharing the store, taking it
  // when it is free: work that one collector must do at a time (a cluster's periodic scan). A
  // lease is held until the process, or its connection to the database, ends; another collector
  // takes it over then. sqlite has one collector per file: always true.
  [[nodiscard]] virtual absl::StatusOr<bool> HoldLease(const std::string& name) {
    (void)name;
    return true;
  }

  // How many batches of reports CommitBatch may commit at once, from as many threads (reports
  // of one node must still be committed one batch after another, in order). sqlite: 1.
  virtual size_t WriteConcurrency() const { return 1; }

  // Fleet identity.
  [[nodiscard]] virtual absl::Status AddJoinToken(const JoinToken& token,
                                                  common::Clock::time_point now) = 0;
  // Takes one use of token `id` for `node`, atomically. PermissionDenied naming why: unknown,
  // wrong secret, expired, used up, or made for another node.
  [[nodiscard]] virtual absl::StatusOr<JoinToken> RedeemJoinToken(
      const std::string& id, const std::string& secret_sha256, const std::string& node,
      common::Clock::time_point now) = 0;
  [[nodiscard]] virtual absl::Status SetNodeAccess(const NodeAccess& access, const std::string& by,
                                                   common::Clock::time_point now) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<NodeAccess>> NodeAccessList() = 0;
  [[nodiscard]] virtual absl::Status RecordIssued(const IssuedCertificate& cert,
                                                  common::Clock::time_point now) = 0;
  // How the node's latest enrolled certificate was issued (IssuedCertificate::method); empty
  // when enrolment never issued one.
  [[nodiscard]] virtual absl::StatusOr<std::string> LastIssueMethod(const std::string& cluster,
                                                                    const std::string& node) = 0;
  // The certificate a node presented on its stream (shown by kspmctl nodes).
  [[nodiscard]] virtual absl::Status RecordNodeCertificate(const std::string& cluster,
                                                           const std::string& node,
                                                           const std::string& serial,
                                                           common::Clock::time_point not_after,
                                                           common::Clock::time_point now) = 0;
};

// Below this much free space the sqlite store checkpoints and truncates its log after every
// batch, instead of letting it grow to the auto-checkpoint size.
inline constexpr int64_t kTightFreeBytes = 256ll << 20;

// A node is stale when it has not reported for this many scan intervals.
inline constexpr int kStaleIntervals = 3;

// The embedded default: one sqlite file in WAL mode. Schema migrations run on open, keyed by
// PRAGMA user_version. Errors name the file.
// A corrupt file (PRAGMA quick_check) is refused with DataLoss naming it: the collector does not
// start, and so never acks reports it could not keep.
// `query_readers`: read-only connections queries run on, each in its own WAL snapshot, so
// queries go on during commits and beside each other.
// A damaged write-ahead log (a frame failing its checksum with commits after it, which sqlite
// would drop without a word) is refused with DataLoss naming the log and the frame, unless
// `accept_damaged_log`.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(
    const std::string& path, int query_readers = 4, bool accept_damaged_log = false);

// Checks `PATH-wal` frame by frame, as sqlite's recovery would read it; OK when absent.
[[nodiscard]] absl::Status CheckSqliteLog(const std::string& path);

// Checks a database file: `quick_check` (fast, the one run at every open) or, with `full`,
// `integrity_check` (also indexes against tables). DataLoss with sqlite's first complaints.
[[nodiscard]] absl::Status CheckSqliteStore(const std::string& path, bool full);

// A consistent copy of the database in `to` (VACUUM INTO), taken while a collector runs and
// writes; the copy is checked before this returns. `to` must not exist.
[[nodiscard]] absl::Status BackupSqliteStore(const std::string& path, const std::string& to);

// PostgreSQL: the store of several collectors, and of many clusters in one place.
struct PostgresOptions {
  // A libpq URI (postgres://user@host:5432/kspm?sslmode=verify-full). The standard PG*
  // variables and ~/.pgpass fill what it leaves out; the password never needs to be in it.
  std::string url;
  std::string password_file;  // one line: the password (a mounted Secret)
  int pool_size = 4;          // connections for queries
  // Connections that commit agents' reports, each a batch at a time: batches of different nodes
  // are committed at once (the server works on each in its own process). With pool_size and one
  // for leases, the collector's bound on connections.
  int writers = 2;
  int connect_timeout_seconds = 5;
  // How long to keep trying to reach the server at start (it may come up after the collector).
  std::chrono::milliseconds wait{std::chrono::seconds(60)};
  // While trying: told each failed attempt before the next (readiness shows it), and asked
  // between attempts whether to give up (the process was told to stop).
  std::function<void(const absl::Status&)> on_retry;
  std::function<bool()> stop_waiting;
};

// Connects (retrying with backoff within `wait`), refuses a server that takes no writes (a
// standby) and a schema newer than this binary's, and migrates an older one, once, under an
// advisory lock. Errors name the URL without its password.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(
    const PostgresOptions& options);

bool IsPostgresUrl(const std::string& spec);
// `url` without its password (user:***@, password=***), for logs and errors.
std::string RedactPostgresUrl(const std::string& url);

// One table of a copy: rows read from the source, and rows in the target after it.
struct CopiedTable {
  std::string table;
  int64_t source_rows = 0;
  int64_t target_rows = 0;
};
// Copies a sqlite store (brought to the current schema first) into a PostgreSQL database that is
// empty or holds an earlier, unfinished copy of the same file: every table, ids kept, rows
// already there skipped, so a copy that stopped can be run again. Each table is verified by
// counting both sides (DataLoss naming it when they differ). No collector may write to either
// side meanwhile.
[[nodiscard]] absl::StatusOr<std::vector<CopiedTable>> CopySqliteToPostgres(
    const std::string& sqlite_path, const PostgresOptions& to,
    const std::function<void(const std::string&)>& progress = nullptr);

// Where the store is: `sqlite:PATH`, a PostgreSQL URL (postgres:// or postgresql://), or a plain
// path (sqlite).
struct StoreOptions {
  std::string spec = "sqlite:var/kspm.db";
  // sqlite
  int query_readers = 4;
  bool accept_damaged_log = false;
  // PostgreSQL (url taken from spec)
  PostgresOptions postgres;
};
[[nodiscard]] absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreOptions& options);
// The sqlite file of a spec, or empty for PostgreSQL.
std::string SqlitePathOf(const std::string& spec);

}  // namespace kspm::collector::store
