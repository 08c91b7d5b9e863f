#include "kspm/common/export.h"

#include <gtest/gtest.h>

#include <sstream>

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

TEST(Export, UnknownFormatIsNamed) {
  Format f;
  auto s = ParseFormat("xml", &f);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("xml"), std::string::npos);
}

}  // namespace
}  // namespace kspm::common
