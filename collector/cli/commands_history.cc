// kspmctl's views of change over time: history (verdict changes) and drift (changes seen
// between scans).
#include <iostream>
#include <string>
#include <utility>

#include "cli/kspmctl.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "kspm/v1/query.pb.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::cli {
namespace {

// The filters that history and drift share: cluster, node, check or item id, since.
template <typename Request>
Request ScopedRequest(const Options& o) {
  Request req;
  req.set_cluster(o.cluster);
  req.set_node(o.node);
  req.set_id(o.id);
  if (auto since = ParseSince(o.since)) *req.mutable_since() = *since;
  return req;
}

// A previous verdict: its name, or `when_new` for a result seen for the first time.
std::string OldStatusName(kspm::v1::Status s, const char* when_new = "(new)") {
  return s == kspm::v1::STATUS_UNSPECIFIED ? when_new : std::string(kspm::common::StatusName(s));
}

}  // namespace

int History(const Options& o) {
  auto stub = Connect(o);
  const auto req = ScopedRequest<kspm::v1::HistoryRequest>(o);
  kspm::v1::HistoryResponse resp;
  Check(stub->History(Context(o).get(), req, &resp), o);
  auto name = [](kspm::v1::Status s) { return OldStatusName(s); };
  if (o.format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& t : resp.transitions()) {
      list.push_back({{"at", kspm::common::FormatRfc3339(kspm::common::FromProto(t.at()))},
                      {"cluster", t.cluster()},
                      {"node", t.node()},
                      {"check_id", t.check_id()},
                      {"object", t.object()},
                      {"benchmark", t.benchmark()},
                      {"id", t.benchmark_id()},
                      {"from", name(t.old_status())},
                      {"to", name(t.new_status())},
                      {"scan_id", t.scan_id()}});
    }
    std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                {"transitions", list}}
                     .dump(2)
              << "\n";
    return 0;
  }
  kspm::common::Table table({"TIME", "NODE", "BENCHMARK", "ID", "CHECK", "FROM", "TO"});
  for (const auto& t : resp.transitions()) {
    table.AddRow({kspm::common::FormatRfc3339(kspm::common::FromProto(t.at())), t.node(),
                  t.benchmark(), t.benchmark_id(),
                  t.check_id() + (t.object().empty() ? "" : " [" + t.object() + "]"),
                  name(t.old_status()), name(t.new_status())});
  }
  if (table.size() == 0) {
    std::cout << "no changes match\n";
  } else {
    table.Print(std::cout, false);
  }
  return 0;
}

int Drift(const Options& o) {
  auto stub = Connect(o);
  const auto req = ScopedRequest<kspm::v1::DriftRequest>(o);
  kspm::v1::DriftResponse resp;
  Check(stub->ListDrift(Context(o).get(), req, &resp), o);
  auto changes = [](const kspm::v1::DriftEvent& e) {
    std::string out;
    for (const auto& c : e.changes()) {
      if (!out.empty()) out += ", ";
      out += c.result().benchmark_id() + " " + OldStatusName(c.old_status()) + "->" +
             std::string(kspm::common::StatusName(c.new_status()));
    }
    return out;
  };
  if (o.format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : resp.events()) {
      const auto& e = r.event();
      nlohmann::json ch = nlohmann::json::array();
      for (const auto& c : e.changes()) {
        auto j = kspm::common::ResultToJson(c.result());
        j["old_status"] = OldStatusName(c.old_status(), "NEW");
        ch.push_back(std::move(j));
      }
      list.push_back(
          {{"event_id", e.event_id()},
           {"cluster", r.cluster()},
           {"node", e.node_name()},
           {"observed_at", kspm::common::FormatRfc3339(kspm::common::FromProto(e.observed_at()))},
           {"operation", e.operation()},
           {"path", e.path()},
           {"pid", e.pid()},
           {"comm", e.comm()},
           {"uid", e.uid()},
           {"source", e.source()},
           {"caused_by", std::vector<std::string>(e.caused_by().begin(), e.caused_by().end())},
           {"changes", std::move(ch)}});
    }
    std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                {"drift", list}}
                     .dump(2)
              << "\n";
    return 0;
  }
  kspm::common::Table table({"TIME", "NODE", "WHAT", "PATH", "BY", "SEEN BY", "CHANGES"});
  for (const auto& r : resp.events()) {
    const auto& e = r.event();
    // A watched cluster's change names the API object that caused it when that is not the
    // object judged (a Pod of a Deployment, a RoleBinding).
    std::string path = e.path();
    if (e.caused_by_size() > 0 && !e.caused_by(0).starts_with(e.path() + " (")) {
      path += " <- " + e.caused_by(0);
      if (e.caused_by_size() > 1) path += " +" + std::to_string(e.caused_by_size() - 1);
    }
    std::string by = "-";
    if (e.pid()) {
      by = e.comm() + " (pid " + std::to_string(e.pid()) + ", uid " + std::to_string(e.uid()) + ")";
    } else if (!e.comm().empty()) {
      by = e.comm();  // a field manager
    }
    table.AddRow({kspm::common::FormatRfc3339(kspm::common::FromProto(e.observed_at())),
                  e.node_name(), e.operation(), path, by, e.source(), changes(e)});
  }
  if (table.size() == 0) {
    std::cout << "no drift events match\n";
  } else {
    table.Print(std::cout, false);
  }
  return 0;
}

}  // namespace kspm::collector::cli
