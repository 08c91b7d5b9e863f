#include "kspm/common/export.h"

#include <gtest/gtest.h>

#include <sstream>

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
  r.set_reason("flag says true");
  auto* e = r.add_evidence();
  e->set_key("mode");
  e->set_value("0644");
  e->set_present(true);
  e->set_path("/var/lib/kubelet/config.yaml");
  e->set_source("stat");
  return r;
}

TEST(Export, CsvQuotesCommasAndQuotes) {
  const auto r = Make("kubelet.anonymous-auth", v1::STATUS_FAIL);
  std::ostringstream out;
  WriteCsv({{"prod", "node-1", &r}}, out);
  const std::string text = out.str();
  EXPECT_NE(text.find("\"Kubelet, \"\"anonymous\"\" <auth>\""), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(Export, JunitCountsFailuresErrorsAndSkips) {
  const auto f = Make("a", v1::STATUS_FAIL), e = Make("b", v1::STATUS_ERROR),
             n = Make("c", v1::STATUS_NOT_APPLICABLE), p = Make("d", v1::STATUS_PASS);
  std::ostringstream out;
  WriteJunit({{"", "n1", &f}, {"", "n1", &e}, {"", "n1", &n}, {"", "n1", &p}}, out);
  const std::string xml = out.str();
  EXPECT_NE(xml.find("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""), std::string::npos)
      << xml;
  EXPECT_NE(xml.find("&lt;auth&gt;"), std::string::npos);  // escaped
  EXPECT_EQ(xml.find("<auth>"), std::string::npos);
}

TEST(Export, SarifHasOneRulePerCheckAndResultsOnlyForProblems) {
  const auto f = Make("a", v1::STATUS_FAIL), p = Make("b", v1::STATUS_PASS);
  std::ostringstream out;
  WriteSarif({{"", "n1", &f}, {"", "n1", &p}}, out);
  const auto doc = nlohmann::json::parse(out.str());
  EXPECT_EQ(doc["version"], "2.1.0");
  EXPECT_EQ(doc["runs"][0]["tool"]["driver"]["rules"].size(), 2u);
  ASSERT_EQ(doc["runs"][0]["results"].size(), 1u);
  EXPECT_EQ(doc["runs"][0]["results"][0]["level"], "error");
  EXPECT_EQ(
      doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
      "file:///var/lib/kubelet/config.yaml");
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
  WriteText({{"prod", "worker-1", &n}, {"prod", "cluster", &c}}, text, false, false);
  EXPECT_NE(text.str().find("RESOURCE"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("WARN (accepted)"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("[cluster: DaemonSet monitoring/node-exporter]"), std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("accepted: until"), std::string::npos) << text.str();
  // Node results alone get no RESOURCE column.
  std::ostringstream nodes_only;
  WriteText({{"prod", "worker-1", &n}}, nodes_only, false, false);
  EXPECT_EQ(nodes_only.str().find("RESOURCE"), std::string::npos);

  std::ostringstream csv;
  WriteCsv({{"prod", "cluster", &c}}, csv);
  EXPECT_NE(csv.str().find(",resource,accepted\n"), std::string::npos) << csv.str();
  EXPECT_NE(csv.str().find(",DaemonSet monitoring/node-exporter,node-exporter-host-access\n"),
            std::string::npos)
      << csv.str();

  std::ostringstream sarif;
  WriteSarif({{"prod", "cluster", &c}, {"prod", "worker-1", &n}}, sarif);
  const auto results = nlohmann::json::parse(sarif.str())["runs"][0]["results"];
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0]["suppressions"][0]["kind"], "external");
  EXPECT_EQ(results[0]["suppressions"][0]["justification"], "exports the node's metrics");
  EXPECT_EQ(results[0]["locations"][0]["logicalLocations"][0]["name"],
            "prod/DaemonSet monitoring/node-exporter");
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
