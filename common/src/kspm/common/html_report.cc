#include "kspm/common/html_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"

namespace kspm::common {
namespace {

std::string Esc(std::string_view s) { return EscapeMarkup(s); }

std::string Num(double v, int decimals = 1) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string ScoreColour(double score) {
  if (score >= 90) return "#2e7d32";
  if (score >= 70) return "#b7791f";
  return "#c62828";
}

const char* SeverityColour(v1::Severity s) {
  switch (s) {
    case v1::SEVERITY_CRITICAL:
      return "#7b1fa2";
    case v1::SEVERITY_HIGH:
      return "#c62828";
    case v1::SEVERITY_MEDIUM:
      return "#ef6c00";
    case v1::SEVERITY_LOW:
      return "#1565c0";
    default:
      return "#546e7a";
  }
}

std::string ScoreText(const v1::Score& s) {
  return s.evaluated() ? Num(s.score()) : std::string("n/a");
}

std::string CountsText(const v1::StatusCounts& c) {
  return std::to_string(c.pass()) + " pass, " + std::to_string(c.fail()) + " fail, " +
         std::to_string(c.warn()) + " warn, " + std::to_string(c.manual()) + " manual, " +
         std::to_string(c.not_applicable()) + " n/a, " + std::to_string(c.error()) + " error";
}

// The overall score as a ring.
std::string Ring(const v1::Score& s) {
  const double r = 52, circumference = 2 * M_PI * r;
  const double share = s.evaluated() ? s.score() / 100.0 : 0;
  std::ostringstream o;
  o << R"(<svg class="ring" width="140" height="140" viewBox="0 0 140 140" role="img" aria-label="score )"
    << ScoreText(s) << R"(">)"
    << R"(<circle cx="70" cy="70" r="52" fill="none" stroke="#e0e0e0" stroke-width="14"/>)"
    << R"(<circle cx="70" cy="70" r="52" fill="none" stroke=")" << ScoreColour(s.score())
    << R"(" stroke-width="14" stroke-dasharray=")" << Num(share * circumference, 2) << " "
    << Num(circumference, 2) << R"x(" transform="rotate(-90 70 70)"/>)x"
    << R"(<text x="70" y="78" text-anchor="middle" font-size="26" font-weight="600" id="overall-score">)"
    << ScoreText(s) << "</text></svg>";
  return o.str();
}

// Horizontal bars, one per score, 0..100.
std::string Bars(const std::vector<std::pair<std::string, const v1::Score*>>& rows,
                 const std::string& label) {
  if (rows.empty()) return "<p class=\"muted\">Nothing scored.</p>";
  const int row = 22, label_w = 260, bar_w = 380, width = label_w + bar_w + 60;
  const int height = static_cast<int>(rows.size()) * row + 24;
  std::ostringstream o;
  o << "<svg class=\"bars\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 "
    << width << " " << height << "\" role=\"img\" aria-label=\"" << Esc(label) << "\">";
  for (int x : {0, 25, 50, 75, 100}) {
    const int gx = label_w + x * bar_w / 100;
    o << "<line x1=\"" << gx << "\" y1=\"0\" x2=\"" << gx << "\" y2=\"" << height - 18
      << "\" stroke=\"#eee\"/><text x=\"" << gx << "\" y=\"" << height - 4
      << "\" font-size=\"10\" text-anchor=\"middle\" fill=\"#777\">" << x << "</text>";
  }
  int y = 0;
  for (const auto& [name, score] : rows) {
    std::string shown = name.size() > 42 ? name.substr(0, 41) + "…" : name;
    const double value = score->evaluated() ? score->score() : 0;
    o << "<g><title>" << Esc(name) << ": " << ScoreText(*score) << " ("
      << Esc(CountsText(score->counts())) << ")</title>"
      << "<text x=\"" << label_w - 6 << "\" y=\"" << y + 15
      << "\" font-size=\"12\" text-anchor=\"end\">" << Esc(shown) << "</text>"
      << "<rect x=\"" << label_w << "\" y=\"" << y + 4 << "\" width=\""
      << Num(value * bar_w / 100.0, 1) << "\" height=\"14\" fill=\"" << ScoreColour(value)
      << "\"/><text x=\"" << label_w + bar_w + 6 << "\" y=\"" << y + 15 << "\" font-size=\"12\">"
      << ScoreText(*score) << "</text></g>";
    y += row;
  }
  o << "</svg>";
  return o.str();
}

// Step lines, one per benchmark, from `since` to `now`.
std::string TrendChart(const std::map<std::string, std::vector<TrendPoint>>& trend,
                       Clock::time_point since, Clock::time_point now) {
  static const char* kPalette[] = {"#1565c0", "#c62828", "#2e7d32", "#6a1b9a",
                                   "#ef6c00", "#00838f", "#ad1457", "#4e342e"};
  const int w = 760, h = 260, left = 40, right = 10, top = 10, bottom = 30;
  const double span = std::max<double>(1, std::chrono::duration<double>(now - since).count());
  auto x = [&](Clock::time_point t) {
    const double at = std::chrono::duration<double>(t - since).count();
    return left + std::clamp(at / span, 0.0, 1.0) * (w - left - right);
  };
  auto y = [&](double score) { return top + (100 - score) / 100.0 * (h - top - bottom); };
  std::ostringstream o;
  o << "<svg class=\"trend\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w
    << " " << h << "\" role=\"img\" aria-label=\"score trend\">";
  for (int s : {0, 25, 50, 75, 100}) {
    o << "<line x1=\"" << left << "\" x2=\"" << w - right << "\" y1=\"" << Num(y(s)) << "\" y2=\""
      << Num(y(s)) << "\" stroke=\"#eee\"/><text x=\"" << left - 4 << "\" y=\"" << Num(y(s) + 4)
      << "\" font-size=\"10\" text-anchor=\"end\" fill=\"#777\">" << s << "</text>";
  }
  for (int i = 0; i <= 2; ++i) {
    const auto t = since + std::chrono::duration_cast<Clock::duration>((now - since) * i / 2);
    o << "<text x=\"" << Num(x(t)) << "\" y=\"" << h - 10 << "\" font-size=\"10\" fill=\"#777\" "
      << "text-anchor=\""
      << (i == 0   ? "start"
          : i == 2 ? "end"
                   : "middle")
      << "\">" << Esc(FormatRfc3339(t).substr(0, 16)) << "</text>";
  }
  size_t colour = 0;
  std::ostringstream legend;
  for (const auto& [benchmark, points] : trend) {
    if (points.empty()) continue;
    const char* c = kPalette[colour++ % 8];
    std::string d = "M" + Num(x(points.front().at)) + " " + Num(y(points.front().score));
    for (size_t i = 1; i < points.size(); ++i) {
      d += " H" + Num(x(points[i].at)) + " V" + Num(y(points[i].score));
    }
    d += " H" + Num(x(now));
    o << "<path d=\"" << d << "\" fill=\"none\" stroke=\"" << c << "\" stroke-width=\"2\"><title>"
      << Esc(benchmark) << "</title></path>";
    legend << "<span class=\"key\"><i style=\"background:" << c << "\"></i>" << Esc(benchmark)
           << " " << Num(points.back().score) << "</span>";
  }
  o << "</svg><div class=\"legend\">" << legend.str() << "</div>";
  return o.str();
}

const char* kStyle = R"css(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;margin:0;background:#f6f7f9}
header{background:#1f2a44;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1e4;font-size:13px}main{padding:20px 28px;max-width:1280px}
section{background:#fff;border:1px solid #e3e6ea;border-radius:8px;padding:16px 20px;margin:0 0 18px}
h2{font-size:17px;margin:0 0 12px}.cards{display:flex;gap:24px;align-items:center;flex-wrap:wrap}
.kv{border-collapse:collapse}.kv td{padding:2px 12px 2px 0}.muted{color:#667}
table.list{border-collapse:collapse;width:100%;font-size:13px}
table.list th{text-align:left;background:#f0f2f5;padding:6px 8px;position:sticky;top:0}
table.list td{border-top:1px solid #eceff3;padding:6px 8px;vertical-align:top}
.sev{display:inline-block;color:#fff;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600}
.st-FAIL{color:#c62828;font-weight:600}.st-ERROR{color:#6a1b9a;font-weight:600}
.accepted{background:#fff8e1;border-left:3px solid #f9a825;padding:4px 8px;margin-top:4px}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f3f4f6;padding:1px 4px;border-radius:3px;word-break:break-all}
ul.ev{margin:4px 0 0;padding-left:18px}.legend{margin-top:6px}.key{margin-right:14px;font-size:12px}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
input#filter{padding:6px 8px;width:320px;margin-bottom:10px;border:1px solid #ccd;border-radius:4px}
.stale{color:#c62828;font-weight:600}
#findings td:nth-child(3){min-width:130px}#findings td:nth-child(5){min-width:180px;max-width:260px}
#findings td:nth-child(6){min-width:220px;max-width:360px}
)css";

// Filters the findings table as one types; no other script.
const char* kScript = R"js(
(function () {
  var box = document.getElementById('filter');
  if (!box) return;
  box.addEventListener('input', function () {
    var q = box.value.toLowerCase();
    var rows = document.querySelectorAll('#findings tbody tr');
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var hit = rows[i].textContent.toLowerCase().indexOf(q) >= 0;
      rows[i].style.display = hit ? '' : 'none';
      if (hit) shown++;
    }
    document.getElementById('shown').textContent = shown;
  });
})();
)js";

std::string FindingRow(const v1::Finding& f) {
  const v1::CheckResult& r = f.result();
  std::ostringstream o;
  const std::string where = ResourceKey(r.resource());
  o << "<tr><td><span class=\"sev\" style=\"background:" << SeverityColour(r.severity()) << "\">"
    << Esc(SeverityName(r.severity())) << "</span></td><td class=\"st-"
    << Esc(StatusName(r.status())) << "\">" << Esc(StatusName(r.status())) << "</td><td>"
    << Esc(r.benchmark()) << " <b>" << Esc(r.benchmark_id()) << "</b><br><span class=\"muted\">"
    << Esc(r.check_id()) << "</span></td><td><b>" << Esc(r.title()) << "</b>";
  if (!r.reason().empty()) o << "<div>" << Esc(r.reason()) << "</div>";
  if (!r.expected().empty()) {
    o << "<div class=\"muted\">expected: " << Esc(r.expected()) << "</div>";
  }
  if (r.evidence_size() > 0) {
    o << "<ul class=\"ev\">";
    for (const auto& e : r.evidence()) o << "<li><code>" << Esc(EvidenceText(e)) << "</code></li>";
    o << "</ul>";
  }
  if (r.has_accepted()) {
    const auto& a = r.accepted();
    o << "<div class=\"accepted\">accepted by exception <b>" << Esc(a.exception()) << "</b>";
    if (!a.reason().empty()) o << ": " << Esc(a.reason());
    if (!a.approved_by().empty()) o << " (approved by " << Esc(a.approved_by()) << ")";
    if (a.has_expires_at()) o << ", until " << Esc(FormatRfc3339(FromProto(a.expires_at())));
    if (!a.source().empty()) o << " <span class=\"muted\">" << Esc(a.source()) << "</span>";
    o << "</div>";
  }
  o << "</td><td>" << Esc(f.cluster()) << " / " << Esc(f.node());
  if (!where.empty()) o << "<br><code>" << Esc(where) << "</code>";
  o << "</td><td>" << Esc(r.remediation()) << "</td></tr>\n";
  return o.str();
}

}  // namespace

std::string RenderHtmlReport(const HtmlReport& report) {
  const v1::SummaryResponse& s = report.summary;
  std::vector<const v1::Finding*> findings;
  for (const auto& f : report.findings) {
    const auto st = f.result().status();
    if (st == v1::STATUS_FAIL || st == v1::STATUS_ERROR) findings.push_back(&f);
  }
  std::stable_sort(findings.begin(), findings.end(), [](const auto* a, const auto* b) {
    const auto& ra = a->result();
    const auto& rb = b->result();
    if (ra.severity() != rb.severity()) return ra.severity() > rb.severity();
    if (ra.status() != rb.status()) return ra.status() == v1::STATUS_FAIL;
    if (ra.has_accepted() != rb.has_accepted()) return !ra.has_accepted();
    return std::tie(ra.benchmark(), ra.benchmark_id(), a->node()) <
           std::tie(rb.benchmark(), rb.benchmark_id(), b->node());
  });

  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
    << "<title>kspm posture: " << Esc(report.scope) << "</title><style>" << kStyle
    << "</style></head><body>\n<header><h1>kspm posture report: " << Esc(report.scope)
    << "</h1><p>Generated " << Esc(FormatRfc3339(report.generated)) << " from "
    << Esc(report.source) << "</p></header><main>\n";

  // Scores.
  o << "<section id=\"score\"><h2>Score</h2><div class=\"cards\">" << Ring(s.overall())
    << "<table class=\"kv\"><tr><td>Results</td><td>" << Esc(CountsText(s.overall().counts()))
    << "</td></tr><tr><td>Failing by severity</td><td>";
  bool any_failed = false;
  for (auto sev : {v1::SEVERITY_CRITICAL, v1::SEVERITY_HIGH, v1::SEVERITY_MEDIUM, v1::SEVERITY_LOW,
                   v1::SEVERITY_INFO}) {
    const auto it = s.failed_by_severity().find(std::string(SeverityName(sev)));
    if (it == s.failed_by_severity().end() || it->second == 0) continue;
    o << "<span class=\"sev\" style=\"background:" << SeverityColour(sev) << "\">"
      << Esc(SeverityName(sev)) << " " << it->second << "</span> ";
    any_failed = true;
  }
  if (!any_failed) o << "none";
  o << "</td></tr><tr><td>Nodes</td><td>" << s.node_count();
  if (s.stale_node_count() > 0) {
    o << " (<span class=\"stale\">" << s.stale_node_count() << " stale</span>)";
  }
  o << "</td></tr></table></div>\n<h2>By benchmark</h2>";
  std::vector<std::pair<std::string, const v1::Score*>> rows;
  for (const auto& b : s.benchmarks()) rows.emplace_back(b.scope(), &b);
  o << Bars(rows, "score per benchmark") << "</section>\n";

  if (!report.trend_window.empty()) {
    o << "<section id=\"trend\"><h2>Score trend, last " << Esc(report.trend_window) << "</h2>";
    bool any = false;
    for (const auto& [_, points] : report.trend) any |= !points.empty();
    if (any) {
      const auto since = std::min_element(report.trend.begin(), report.trend.end(),
                                          [](const auto& a, const auto& b) {
                                            if (a.second.empty()) return false;
                                            if (b.second.empty()) return true;
                                            return a.second.front().at < b.second.front().at;
                                          })
                             ->second.front()
                             .at;
      o << TrendChart(report.trend, since, report.generated);
    } else {
      o << "<p class=\"muted\">No scored history in this window.</p>";
    }
    if (!report.trend_note.empty()) o << "<p class=\"muted\">" << Esc(report.trend_note) << "</p>";
    o << "</section>\n";
  }

  rows.clear();
  for (const auto& x : s.sections()) rows.emplace_back(x.scope(), &x);
  o << "<section id=\"sections\"><h2>By section</h2>" << Bars(rows, "score per section")
    << "</section>\n";
  if (s.namespaces_size() > 0) {
    rows.clear();
    for (const auto& x : s.namespaces()) rows.emplace_back(x.scope(), &x);
    o << "<section id=\"namespaces\"><h2>By namespace</h2>" << Bars(rows, "score per namespace")
      << "<table class=\"list\"><thead><tr><th>Namespace</th><th>Score</th><th>Results</th></tr>"
         "</thead><tbody>";
    for (const auto& x : s.namespaces()) {
      o << "<tr><td>" << Esc(x.scope()) << "</td><td>" << ScoreText(x) << "</td><td>"
        << Esc(CountsText(x.counts())) << "</td></tr>";
    }
    o << "</tbody></table></section>\n";
  }

  // Findings.
  const size_t shown = std::min(findings.size(), report.max_findings);
  o << "<section id=\"failing\"><h2>Failing checks (" << findings.size() << ")</h2>";
  if (findings.empty()) {
    o << "<p>No FAIL or ERROR result.</p>";
  } else {
    o << "<input id=\"filter\" type=\"search\" placeholder=\"Filter: id, node, object, text\" "
         "aria-label=\"filter findings\"> <span class=\"muted\"><span id=\"shown\">"
      << shown << "</span> shown</span>";
    if (shown < findings.size()) {
      o << "<p class=\"muted\">The " << findings.size() - shown
        << " least severe are not listed; <code>kspmctl export</code> has every one.</p>";
    }
    o << "<table class=\"list\" id=\"findings\"><thead><tr><th>Severity</th><th>Status</th>"
         "<th>Item</th><th>Finding and evidence</th><th>Where</th><th>Remediation</th></tr>"
         "</thead><tbody>\n";
    for (size_t i = 0; i < shown; ++i) o << FindingRow(*findings[i]);
    o << "</tbody></table>";
  }
  o << "</section>\n";

  // Nodes.
  if (!report.nodes.empty() || s.nodes_size() > 0) {
    std::map<std::string, const v1::Score*> node_scores;
    for (const auto& n : s.nodes()) node_scores[n.scope()] = &n;
    o << "<section id=\"nodes\"><h2>Nodes</h2><table class=\"list\"><thead><tr><th>Node</th>"
         "<th>Cluster</th><th>Score</th><th>Results</th><th>Last report</th><th>Drift mode</th>"
         "</tr></thead><tbody>";
    if (report.nodes.empty()) {
      for (const auto& n : s.nodes()) {
        o << "<tr><td>" << Esc(n.scope()) << "</td><td></td><td>" << ScoreText(n) << "</td><td>"
          << Esc(CountsText(n.counts())) << "</td><td></td><td></td></tr>";
      }
    }
    for (const auto& n : report.nodes) {
      // Scored by name in one cluster, as `<cluster>/<node>` across several.
      auto it = node_scores.find(n.identity().node_name());
      if (it == node_scores.end()) {
        const std::string& cluster = n.identity().cluster();
        it = node_scores.find((cluster.empty() ? "default" : cluster) + "/" +
                              n.identity().node_name());
      }
      o << "<tr><td>" << Esc(n.identity().node_name()) << "</td><td>" << Esc(n.identity().cluster())
        << "</td><td>" << (it == node_scores.end() ? "n/a" : ScoreText(*it->second)) << "</td><td>"
        << Esc(CountsText(n.counts())) << "</td><td>"
        << Esc(FormatRfc3339(FromProto(n.last_seen())));
      if (n.stale()) o << " <span class=\"stale\">stale</span>";
      o << "</td><td>" << Esc(n.identity().drift_mode()) << "</td></tr>";
    }
    o << "</tbody></table></section>\n";
  }
  o << "</main><script>" << kScript << "</script></body></html>\n";
  return o.str();
}

std::vector<v1::Finding> FindingsOf(const std::vector<const v1::CheckResult*>& results,
                                    const std::string& cluster, const std::string& node) {
  std::vector<v1::Finding> out;
  for (const auto* r : results) {
    if (r->status() != v1::STATUS_FAIL && r->status() != v1::STATUS_ERROR) continue;
    auto& f = out.emplace_back();
    f.set_cluster(cluster);
    f.set_node(node);
    *f.mutable_result() = *r;
  }
  return out;
}

v1::SummaryResponse SummarizeResults(const std::vector<const v1::CheckResult*>& results,
                                     const std::string& node, const std::string& judged_by) {
  ScoreAccumulator overall;
  std::map<std::string, ScoreAccumulator> benchmarks, sections, namespaces;
  std::map<std::string, uint32_t> failed;
  for (const auto* result : results) {
    const v1::CheckResult& r = *result;
    const bool counts_for_node =
        judged_by.empty() || !IsKubernetesBenchmark(r.benchmark()) || r.benchmark() == judged_by;
    if (counts_for_node) {
      overall.Add(r.status(), r.severity(), r.scored());
      if (r.status() == v1::STATUS_FAIL) failed[std::string(SeverityName(r.severity()))]++;
    }
    if (const std::string ns = ResourceScope(r); !ns.empty()) {
      namespaces[ns].Add(r.status(), r.severity(), r.scored());
    }
    benchmarks[r.benchmark()].Add(r.status(), r.severity(), r.scored());
    sections[r.benchmark() + " " + SectionOf(r.benchmark_id())].Add(r.status(), r.severity(),
                                                                    r.scored());
  }
  v1::SummaryResponse out;
  *out.mutable_overall() = overall.ToScore("overall");
  *out.add_nodes() = overall.ToScore(node);
  for (const auto& [name, acc] : benchmarks) *out.add_benchmarks() = acc.ToScore(name);
  for (const auto& [name, acc] : sections) *out.add_sections() = acc.ToScore(name);
  for (const auto& [name, acc] : namespaces) *out.add_namespaces() = acc.ToScore(name);
  for (const auto& [severity, n] : failed) (*out.mutable_failed_by_severity())[severity] = n;
  out.set_node_count(1);
  return out;
}

std::map<std::string, std::vector<TrendPoint>> ReplayTrend(
    const google::protobuf::RepeatedPtrField<v1::Score>& benchmarks,
    const std::vector<v1::Transition>& history, Clock::time_point since, bool truncated) {
  struct Weights {
    double pass = 0, total = 0;
    double Score() const {
      return total <= 0 ? 100.0 : std::clamp(100.0 * pass / total, 0.0, 100.0);
    }
    void Apply(v1::Status status, double w, int sign) {
      if (status == v1::STATUS_PASS) {
        pass += sign * w;
        total += sign * w;
      } else if (status == v1::STATUS_FAIL || status == v1::STATUS_ERROR) {
        total += sign * w;
      }
    }
  };
  std::map<std::string, Weights> weights;
  std::map<std::string, std::vector<TrendPoint>> backwards;  // newest first
  for (const auto& b : benchmarks) {
    if (!b.evaluated()) continue;
    weights[b.scope()] = {b.pass_weight(), b.total_weight()};
  }
  std::map<std::string, v1::Status> status_after;  // per result: its status after the change
  std::set<std::string> ended;                     // results whose earlier changes are skipped
  Clock::time_point start = since;
  if (truncated && !history.empty()) start = std::max(since, FromProto(history.back().at()));
  for (const auto& t : history) {  // newest first
    const auto at = FromProto(t.at());
    if (at < start) break;
    auto it = weights.find(t.benchmark());
    if (it == weights.end()) continue;
    const std::string key = t.cluster() + '\x1f' + t.node() + '\x1f' + t.check_id() + '\x1f' +
                            t.benchmark() + '\x1f' + t.object();
    if (ended.contains(key)) continue;
    const auto known = status_after.find(key);
    const v1::Status after = known == status_after.end() ? t.current_status() : known->second;
    if (t.new_status() != after) {
      ended.insert(key);
      continue;
    }
    status_after[key] = t.old_status();
    if (!t.scored()) continue;  // no weight: the score does not move
    const double w = SeverityWeight(t.severity());
    // The score from this change on, then the change undone: the score before it.
    backwards[t.benchmark()].push_back({at, it->second.Score()});
    it->second.Apply(t.new_status(), w, -1);
    it->second.Apply(t.old_status(), w, +1);
  }
  std::map<std::string, std::vector<TrendPoint>> out;
  for (const auto& [benchmark, w] : weights) {
    auto& points = out[benchmark];
    points.push_back({start, w.Score()});  // before the oldest change replayed
    const auto& changes = backwards[benchmark];
    // Oldest first; changes of one commit share a time: the score after the last of them.
    for (auto it = changes.rbegin(); it != changes.rend(); ++it) {
      auto next = std::next(it);
      if (next != changes.rend() && next->at == it->at) continue;
      points.push_back(*it);
    }
  }
  return out;
}

}  // namespace kspm::common
