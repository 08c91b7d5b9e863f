#include "kspm/common/export.h"

#include <gtest/gtest.h>

#include <sstream>

#include "kspm/common/html_report.h"
#include "kspm/common/render.h"
#include "nlohmann/json.hpp"

namespace kspm::common {
namespace {

v1::CheckResult Make(const std::string& id, v1::Status status) {
  v1::CheckResult r;
  r.set_check_id(id);
  r.set_benchmark("cis-kubernetes-1.12");
  r.set_benchmark_id("4.2.1");
  r.set_title("Kubelet, \"anonymous\" <auth>");
  r.set_status(status);
  r.set_severity(v1::SEVERITY_HIGH);
  r.set_scored(true);
  r.set_reason("flag says true");
  auto* e = r.add_evidence();
  e->set_key("mode");
  e->set_value("0644");
  e->set_present(true);
  e->set_path("/var/lib/kubelet/config.yaml");
  e->set_source("stat");
  return r;
}

ResultRow Row(const std::string& cluster, const std::string& node, const v1::CheckResult* r) {
  return {cluster, node, r, "2026-12-06T10:00:00Z"};
}

TEST(Export, CsvQuotesCommasAndQuotes) {
  const auto r = Make("kubelet.anonymous-auth", v1::STATUS_FAIL);
  std::ostringstream out;
  WriteCsv({Row("prod", "node-1", &r)}, out);
  const std::string text = out.str();
  EXPECT_NE(text.find("\"Kubelet, \"\"anonymous\"\" <auth>\""), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(Export, JunitCountsFailuresErrorsAndSkips) {
  const auto f = Make("a", v1::STATUS_FAIL), e = Make("b", v1::STATUS_ERROR),
             n = Make("c", v1::STATUS_NOT_APPLICABLE), p = Make("d", v1::STATUS_PASS);
  std::ostringstream out;
  WriteJunit({Row("", "n1", &f), Row("", "n1", &e), Row("", "n1", &n), Row("", "n1", &p)}, out);
  const std::string xml = out.str();
  EXPECT_NE(xml.find("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""), std::string::npos)
      << xml;
  EXPECT_NE(xml.find("&lt;auth&gt;"), std::string::npos);  // escaped
  EXPECT_EQ(xml.find("<auth>"), std::string::npos);
}

TEST(Export, SarifHasOneRulePerBenchmarkItemAndResultsOnlyForProblems) {
  const auto f = Make("a", v1::STATUS_FAIL), p = Make("b", v1::STATUS_PASS);
  // The same check under another benchmark, unscored there: a rule of its own.
  auto w = Make("a", v1::STATUS_WARN);
  w.set_benchmark("cis-eks-1.8");
  w.set_benchmark_id("3.2.1");
  std::ostringstream out;
  WriteSarif({Row("prod", "n1", &f), Row("prod", "n1", &p), Row("prod", "n1", &w)}, out);
  const auto doc = nlohmann::json::parse(out.str());
  EXPECT_EQ(doc["version"], "2.1.0");
  const auto& run = doc["runs"][0];
  ASSERT_EQ(run["tool"]["driver"]["rules"].size(), 2u);
  EXPECT_EQ(run["tool"]["driver"]["rules"][0]["id"], "cis-kubernetes-1.12/4.2.1");
  EXPECT_EQ(run["tool"]["driver"]["rules"][1]["id"], "cis-eks-1.8/3.2.1");
  ASSERT_EQ(run["results"].size(), 2u);
  EXPECT_EQ(run["results"][0]["level"], "error");
  EXPECT_EQ(run["results"][1]["level"], "warning");
  EXPECT_EQ(run["results"][1]["ruleIndex"], 1);
  EXPECT_EQ(run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "nodes/n1/var/lib/kubelet/config.yaml");
  EXPECT_EQ(run["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"], 1);
  EXPECT_EQ(run["automationDetails"]["id"], "kspm/prod/");
  // GitHub's scale, as a string: high is 7.0 to 8.9.
  const std::string sev = run["tool"]["driver"]["rules"][0]["properties"]["security-severity"];
  EXPECT_GE(std::stod(sev), 7.0);
  EXPECT_LT(std::stod(sev), 9.0);
}

TEST(Export, SarifLocationsAndFingerprintsAreStableAcrossRuns) {
  auto a = Make("kube-proxy.kubeconfig", v1::STATUS_FAIL);
  a.mutable_evidence(0)->set_path("/proc/1519/root/var/lib/kube-proxy/kubeconfig.conf");
  auto b = a;
  b.mutable_evidence(0)->set_path("/proc/2002/root/var/lib/kube-proxy/kubeconfig.conf");
  auto flag = Make("kubelet.anonymous-auth", v1::STATUS_FAIL);
  flag.clear_evidence();
  flag.set_component("kubelet");
  std::ostringstream one, two;
  WriteSarif({Row("prod", "n1", &a), Row("prod", "n1", &flag)}, one);
  WriteSarif({Row("prod", "n1", &b), Row("prod", "n1", &flag)}, two);
  const auto r1 = nlohmann::json::parse(one.str())["runs"][0]["results"];
  const auto r2 = nlohmann::json::parse(two.str())["runs"][0]["results"];
  // The pid of the process whose view was read is not part of the location.
  EXPECT_EQ(r1[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "nodes/n1/var/lib/kube-proxy/kubeconfig.conf");
  EXPECT_EQ(r1[0]["locations"], r2[0]["locations"]);
  EXPECT_EQ(r1[0]["partialFingerprints"], r2[0]["partialFingerprints"]);
  // Without a file, the component stands for it.
  EXPECT_EQ(r1[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "nodes/n1/kubelet");
  EXPECT_NE(r1[0]["partialFingerprints"], r1[1]["partialFingerprints"]);
}

TEST(Export, JunitSkipsWarnAndManualAsKubeBenchDoes) {
  const auto w = Make("a", v1::STATUS_WARN), m = Make("b", v1::STATUS_MANUAL),
             f = Make("c", v1::STATUS_FAIL);
  std::ostringstream out;
  WriteJunit({Row("", "n1", &w), Row("", "n1", &m), Row("", "n1", &f)}, out);
  const std::string xml = out.str();
  EXPECT_NE(xml.find("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"2\""), std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<skipped message=\"WARN (not scored)"), std::string::npos) << xml;
  EXPECT_NE(xml.find("hostname=\"n1\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("timestamp=\"2026-12-06T10:00:00\""), std::string::npos) << xml;
}

TEST(Export, CsvNeutralisesFormulasAndCarriesRemediationAndTime) {
  auto r = Make("a", v1::STATUS_FAIL);
  r.set_reason("=HYPERLINK(\"http://evil\",\"x\")");
  r.mutable_evidence(0)->set_value("@SUM(A1)");
  r.set_remediation("-set the flag");
  std::ostringstream out;
  WriteCsv({Row("prod", "+n1", &r)}, out);
  const std::string csv = out.str();
  EXPECT_NE(csv.find(",'+n1,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\"'=HYPERLINK(\"\"http://evil\"\""), std::string::npos) << csv;
  EXPECT_NE(csv.find(",'-set the flag,2026-12-06T10:00:00Z\n"), std::string::npos) << csv;
  EXPECT_EQ(csv.find(",=HYPERLINK"), std::string::npos) << csv;
  EXPECT_EQ(CsvCell("plain"), "plain");
  EXPECT_EQ(CsvCell("\tx"), "'\tx");
}

// A cluster finding: about an object, accepted by an exception.
v1::CheckResult AcceptedClusterFinding() {
  v1::CheckResult r;
  r.set_check_id("pod.host-pid");
  r.set_benchmark("cis-kubernetes-1.12");
  r.set_benchmark_id("5.2.3");
  r.set_title("Pods do not share the host's process namespace");
  r.set_status(v1::STATUS_WARN);
  r.set_reason("hostPID is true");
  auto* res = r.mutable_resource();
  res->set_kind("DaemonSet");
  res->set_namespace_("monitoring");
  res->set_name("node-exporter");
  auto* a = r.mutable_accepted();
  a->set_exception("node-exporter-host-access");
  a->set_reason("exports the node's metrics");
  a->set_source("exceptions.yaml:5");
  return r;
}

TEST(Export, ClusterFindingsNameTheirObjectAndAcceptance) {
  const auto c = AcceptedClusterFinding();
  const auto n = Make("kubelet.anonymous-auth", v1::STATUS_FAIL);
  std::ostringstream text;
  WriteText({Row("prod", "worker-1", &n), Row("prod", "cluster", &c)}, text, false, false);
  EXPECT_NE(text.str().find("RESOURCE"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("WARN (accepted)"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("[cluster: DaemonSet monitoring/node-exporter]"), std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("accepted: until"), std::string::npos) << text.str();
  // Node results alone get no RESOURCE column.
  std::ostringstream nodes_only;
  WriteText({Row("prod", "worker-1", &n)}, nodes_only, false, false);
  EXPECT_EQ(nodes_only.str().find("RESOURCE"), std::string::npos);

  std::ostringstream csv;
  WriteCsv({Row("prod", "cluster", &c)}, csv);
  EXPECT_NE(csv.str().find(",resource,accepted,remediation,observed_at\n"), std::string::npos)
      << csv.str();
  EXPECT_NE(csv.str().find(",DaemonSet monitoring/node-exporter,node-exporter-host-access,"),
            std::string::npos)
      << csv.str();

  std::ostringstream sarif;
  WriteSarif({Row("prod", "cluster", &c), Row("prod", "worker-1", &n)}, sarif);
  const auto results = nlohmann::json::parse(sarif.str())["runs"][0]["results"];
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0]["suppressions"][0]["kind"], "external");
  EXPECT_EQ(results[0]["suppressions"][0]["justification"], "exports the node's metrics");
  EXPECT_EQ(results[0]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
            "prod/DaemonSet monitoring/node-exporter");
  EXPECT_EQ(results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "k8s/monitoring/DaemonSet/node-exporter");
  EXPECT_FALSE(results[1].contains("suppressions"));

  const auto json = ResultToJson(c);
  EXPECT_EQ(json["accepted"]["exception"], "node-exporter-host-access");
  EXPECT_EQ(json["resource"]["kind"], "DaemonSet");
}

TEST(Export, UnknownFormatIsNamed) {
  Format f;
  auto s = ParseFormat("xml", &f);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("xml"), std::string::npos);
}

}  // namespace
}  // namespace kspm::common

namespace kspm::common {
namespace {

// A report across clusters scores each node under the name the summary gives it there
// (`<cluster>/<node>`: names repeat across clusters), not "n/a".
TEST(HtmlReport, NodesOfSeveralClustersKeepTheirScores) {
  HtmlReport report;
  report.scope = "all clusters";
  for (const char* cluster : {"east", "west"}) {
    auto* score = report.summary.add_nodes();
    score->set_scope(std::string(cluster) + "/worker-1");
    score->set_score(cluster == std::string("east") ? 42.0 : 77.0);
    score->set_evaluated(true);
    score->mutable_counts()->set_pass(1);
    v1::NodeInfo info;
    info.mutable_identity()->set_node_name("worker-1");
    info.mutable_identity()->set_cluster(cluster);
    report.nodes.push_back(info);
  }
  const std::string html = RenderHtmlReport(report);
  const auto nodes = html.substr(html.find("<section id=\"nodes\">"));
  EXPECT_EQ(nodes.find("<td>n/a</td>"), std::string::npos) << nodes;  // the score cell
  EXPECT_NE(nodes.find("42"), std::string::npos) << nodes;
  EXPECT_NE(nodes.find("77"), std::string::npos) << nodes;
}

}  // namespace
}  // namespace kspm::common
