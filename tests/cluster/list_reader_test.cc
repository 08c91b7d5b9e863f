// The fast List reader (list_reader.h) against nlohmann, which reads every List the old way:
// the same objects, the same trees, the same messages, on real fixture files and on hostile ones.
#include "kspm/collector/k8s/list_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cluster_test_util.h"
#include "fixtures/host_builder.h"
#include "kspm/collector/k8s/api_client.h"
#include "kspm/collector/k8s/snapshot_dir.h"

namespace kspm::cluster_test {
namespace {

using k8s::ListRead;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Input from a string, a few bytes at a time (every value straddles reads).
struct Text : k8s::JsonInput {
  std::string text;
  size_t most = 7;
  ssize_t Read(char* dst, size_t n) override {
    n = std::min({n, text.size(), most});
    std::memcpy(dst, text.data(), n);
    text.erase(0, n);
    return static_cast<ssize_t>(n);
  }
};

// Every object of a snapshot as text: kind, namespace, name, API version and its tree.
std::map<std::string, std::string> Objects(const k8s::Snapshot& s) {
  std::map<std::string, std::string> out;
  for (const auto& [kind, count] : s.Counts()) {
    for (const auto& o : s.Of(kind)) {
      out[o.kind + " " + o.ns + "/" + o.name] = o.api_version + " " + o.doc.dump();
    }
  }
  return out;
}

// `text` read by the fast reader (LoadSnapshotText) and by nlohmann's parser (AddDocument).
struct Both {
  k8s::Snapshot fast, slow;
  absl::Status fast_status, slow_status;
};
Both ReadBoth(const std::string& text, const std::string& name = "list.json") {
  Both b;
  b.fast_status = k8s::LoadSnapshotText(text, name, b.fast);
  b.slow_status = k8s::AddDocument(nlohmann::json::parse(text), name, b.slow);
  return b;
}

// The kubeadm cluster's files as the API gave them (fixtures/cluster/demo): every object and
// tree the same as through nlohmann, with the replicas' specs dropped the same way.
TEST(ListReader, ReadsRealListsAsNlohmannDoes) {
  const std::string dir = std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/cluster/demo";
  size_t files = 0, objects = 0;
  k8s::Snapshot fast_all, slow_all;
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& path : paths) {
    const std::string text = ReadFile(path);
    ASSERT_TRUE(k8s::LoadSnapshotText(text, path, fast_all).ok()) << path;
    ASSERT_TRUE(k8s::AddDocument(nlohmann::json::parse(text), path, slow_all).ok()) << path;
    ++files;
  }
  const auto fast = Objects(fast_all), slow = Objects(slow_all);
  objects = fast.size();
  EXPECT_GE(files, 10u);
  EXPECT_GE(objects, 100u);
  EXPECT_EQ(fast, slow);
  EXPECT_EQ(fast_all.replica_specs_dropped(), slow_all.replica_specs_dropped());
}

// Members out of order and repeated, numbers of every kind, escapes, text in many scripts,
// blanks everywhere: the tree is what nlohmann makes of the same text.
TEST(ListReader, BuildsTheTreeNlohmannBuilds) {
  const std::string text =
      "\r\n {\"kind\" :\"List\",\t\"apiVersion\":\"v1\", \"items\" : [ \n"
      R"({"metadata": {"namespace": "a", "name": "p", "labels": {"z": "1", "a": "2", "a": "3"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "k": "v"},
        "managedFields": [{"manager": "kubectl"}], "uid": "u-1"},
      "kind": "Pod", "apiVersion": "v1",
      "spec": {"zeta": -1, "alpha": 18446744073709551615, "mid": 9223372036854775807,
               "neg": -9223372036854775808, "f": 1.5e-3, "e": 2E+2, "t": true, "n": null,
               "s": "tab\tquote\" slash\/ \u00e9\u4e2d\ud83d\ude00", "arr": [[], {}, [1, [2]]]},
      "status": {"phase": "Running"}, "spec": {"replaced": true}},
     {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c", "namespace": "a"},
      "data": {"password": "x"}}
    ]}  )"
      "\n";
  const auto b = ReadBoth(text);
  ASSERT_TRUE(b.fast_status.ok()) << b.fast_status;
  ASSERT_TRUE(b.slow_status.ok()) << b.slow_status;
  EXPECT_EQ(Objects(b.fast), Objects(b.slow));
  // Read by the fast reader (not handed to nlohmann), seven bytes per read.
  Text in;
  in.text = text;
  k8s::Snapshot direct;
  const auto read = k8s::ReadJsonList(in, "list.json", direct);
  EXPECT_EQ(read.outcome, ListRead::Outcome::kDone);
  EXPECT_EQ(read.added, 2u);
  EXPECT_EQ(Objects(direct), Objects(b.slow));
  // Every read size from 1 to 16 bytes: each escape, token and item lands on a boundary.
  for (size_t most = 1; most <= 16; ++most) {
    Text small;
    small.text = text;
    small.most = most;
    k8s::Snapshot bytes;
    EXPECT_EQ(k8s::ReadJsonList(small, "list.json", bytes).outcome, ListRead::Outcome::kDone);
    EXPECT_EQ(Objects(bytes), Objects(b.slow)) << most << " bytes per read";
  }
  const auto& pod = b.fast.Of("Pod").at(0).doc;
  EXPECT_EQ(pod["spec"].dump(), R"({"replaced":true})");  // the last of a repeated name
  EXPECT_EQ(pod["metadata"]["labels"]["a"], "3");         // the last of a repeated name
  EXPECT_FALSE(pod.contains("status"));
  EXPECT_FALSE(pod["metadata"].contains("uid"));
  EXPECT_FALSE(
      pod["metadata"]["annotations"].contains("kubectl.kubernetes.io/last-applied-configuration"));
  EXPECT_FALSE(b.fast.Of("ConfigMap").at(0).doc.contains("data"));
}

// What simdjson refuses and JSON allows goes through nlohmann: an integer past 64 bits is a
// double there, as the old reader had it.
TEST(ListReader, AnItemSimdjsonRefusesIsReadByNlohmann) {
  const auto b = ReadBoth(R"({"kind": "List", "items": [
    {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "big"},
     "spec": {"n": 123456789012345678901234567890}},
    {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "small"}}]})");
  ASSERT_TRUE(b.fast_status.ok()) << b.fast_status;
  EXPECT_EQ(Objects(b.fast), Objects(b.slow));
  ASSERT_NE(b.fast.Find("Namespace", "", "big"), nullptr);
  EXPECT_TRUE(b.fast.Find("Namespace", "", "big")->doc["spec"]["n"].is_number_float());
}

// The API writes the list's kind before its items (which name none); a list whose kind comes
// after them still gives them that kind.
TEST(ListReader, ItemsWithoutKindTakeTheListsKindWhereverItIsWritten) {
  for (
      const std::string text :
      {R"({"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": {"name": "a", "namespace": "x"}}]})",
       R"({"items": [{"metadata": {"name": "a", "namespace": "x"}}], "kind": "PodList", "apiVersion": "v1"})"}) {
    const auto b = ReadBoth(text);
    ASSERT_TRUE(b.fast_status.ok()) << b.fast_status;
    ASSERT_NE(b.fast.Find("Pod", "x", "a"), nullptr) << text;
    EXPECT_EQ(b.fast.Find("Pod", "x", "a")->api_version, "v1");
    EXPECT_EQ(Objects(b.fast), Objects(b.slow));
  }
}

// Items that are not objects or have no name are named in the message, and the rest is kept.
TEST(ListReader, BadItemsAreNamedAndTheRestKept) {
  const auto b = ReadBoth(R"({"kind": "List", "items": [1, "two", null,
    {"kind": "Pod", "metadata": {}}, {"metadata": {"name": "x"}},
    {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "kept"}}]})");
  EXPECT_FALSE(b.fast_status.ok());
  for (const char* what :
       {"items[0] is not an object", "items[1] is not an object", "items[2] is not an object"}) {
    EXPECT_NE(b.fast_status.message().find(what), std::string::npos) << b.fast_status;
  }
  EXPECT_NE(b.fast_status.message().find("and 2 more"), std::string::npos) << b.fast_status;
  EXPECT_EQ(b.fast.size(), 1u);
  EXPECT_EQ(Objects(b.fast), Objects(b.slow));
}

// A file that stops being JSON half-way is reported at the same line and column, with the same
// words, as nlohmann says them for the whole file; the items before it are kept.
TEST(ListReader, SyntaxErrorsAreReportedAsNlohmannReportsThem) {
  kspm::testing::TempDir dir;
  const std::string good =
      R"({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "before"}})";
  for (const std::string& broken : {
           good + ",\n  {\"kind\": \"Pod\", \"metadata\": {\"name\": tru}}",  // in an item
           good + " {\"kind\": \"Pod\"}",                                     // no comma
           good + ",, " + good,                                               // empty item
           good + ", {\"kind\": \"Pod\", \"metadata\": {\"name\": \"a\"]}",   // wrong bracket
           good + ", \"unterminated",                                         // end of input
       }) {
    const std::string text = "{\"kind\": \"List\", \"items\": [\n  " + broken + "]}";
    k8s::Snapshot fast;
    const auto status = k8s::LoadSnapshotText(text, "broken.json", fast);
    std::string expected;
    try {
      const auto parsed = nlohmann::json::parse(text);
      expected = parsed.dump();  // never: the text is broken
    } catch (const nlohmann::json::parse_error& e) {
      expected = e.what();
    }
    ASSERT_NE(expected.find("syntax error"), std::string::npos) << text;
    EXPECT_FALSE(status.ok()) << text;
    EXPECT_NE(status.message().find("broken.json: line "), std::string::npos) << status;
    const std::string words = expected.substr(expected.find("syntax error"));
    EXPECT_NE(status.message().find(words), std::string::npos) << status << "\n" << expected;
    // From a file, the same message.
    Write(dir.path() + "/broken.json", text);
    k8s::Snapshot from_file;
    ASSERT_TRUE(k8s::LoadSnapshotDir(dir.path(), from_file).ok());
    ASSERT_EQ(from_file.errors().size(), 1u);
    EXPECT_EQ(from_file.errors()[0], status.message());
    EXPECT_NE(from_file.Find("Namespace", "", "before"), nullptr) << text;
  }
  // Trailing bytes after the list, and members that are not JSON around the items.
  for (const std::string text : {R"({"kind": "List", "items": []} x)",
                                 R"({"kind": "List", "metadata": {nope}, "items": []})",
                                 R"({"kind": "List", "items": [] "x": 1})"}) {
    k8s::Snapshot s;
    EXPECT_FALSE(k8s::LoadSnapshotText(text, "t.json", s).ok()) << text;
  }
}

// A list larger than the reader's buffer (items straddle every read), read from a file: the
// same objects as from memory, and as nlohmann reads them.
TEST(ListReader, ItemsStraddlingReadsOfALargeFileAreReadWhole) {
  kspm::testing::TempDir dir;
  nlohmann::json items = nlohmann::json::array();
  for (int i = 0; i < 3000; ++i) {
    items.push_back({{"apiVersion", "v1"},
                     {"kind", "ConfigMap"},
                     {"metadata", {{"name", "cm-" + std::to_string(i)}, {"namespace", "ns"}}},
                     {"spec",
                      {{"pad", std::string(static_cast<size_t>(i % 7) * 311, 'q')},
                       {"esc", "\\\"\\\\" + std::string(i % 5, '\\')}}}});
  }
  const std::string text = nlohmann::json{{"kind", "List"}, {"items", items}}.dump(1);
  ASSERT_GT(text.size(), 3u << 20);
  Write(dir.path() + "/big.json", text);
  k8s::Snapshot from_file;
  ASSERT_TRUE(k8s::LoadSnapshotDir(dir.path(), from_file).ok());
  EXPECT_TRUE(from_file.errors().empty());
  const auto b = ReadBoth(text);
  ASSERT_TRUE(b.fast_status.ok());
  EXPECT_EQ(from_file.size(), 3000u);
  EXPECT_EQ(Objects(from_file), Objects(b.slow));
  EXPECT_EQ(Objects(b.fast), Objects(b.slow));
}

// Input that fails half-way (EIO) is a read error, not a syntax error; input that is not a List
// goes to the other reader, with nothing added.
TEST(ListReader, ReadErrorsAndOtherDocumentsAreToldApart) {
  struct Failing : k8s::JsonInput {
    int calls = 0;
    ssize_t Read(char* dst, size_t n) override {
      if (calls++ == 0) {
        const std::string head = R"({"kind": "List", "items": [)";
        std::memcpy(dst, head.data(), std::min(n, head.size()));
        return static_cast<ssize_t>(std::min(n, head.size()));
      }
      errno = EIO;
      return -1;
    }
  } failing;
  k8s::Snapshot s;
  const auto read = k8s::ReadJsonList(failing, "f.json", s);
  EXPECT_EQ(read.outcome, ListRead::Outcome::kReadError);
  EXPECT_EQ(read.error, std::strerror(EIO));

  // EINTR is retried, not an error.
  struct Interrupted : Text {
    bool interrupted = false;
    ssize_t Read(char* dst, size_t n) override {
      interrupted = !interrupted;
      if (interrupted) {
        errno = EINTR;
        return -1;
      }
      return Text::Read(dst, n);
    }
  } interrupted;
  interrupted.text = R"({"kind": "List", "items": [{"kind": "Namespace", "apiVersion": "v1",
    "metadata": {"name": "a"}}]})";
  k8s::Snapshot retried;
  EXPECT_EQ(k8s::ReadJsonList(interrupted, "i.json", retried).outcome, ListRead::Outcome::kDone);
  EXPECT_EQ(retried.size(), 1u);

  for (const std::string other : {R"({"kind": "Namespace", "metadata": {"name": "a"}})",
                                  R"([{"kind": "Namespace", "metadata": {"name": "a"}}])",
                                  R"({"kind": "PodList", "items": null})", "kind: Pod\n", ""}) {
    Text in;
    in.text = other;
    k8s::Snapshot none;
    EXPECT_EQ(k8s::ReadJsonList(in, "o.json", none).outcome, ListRead::Outcome::kNotAList) << other;
    EXPECT_EQ(none.size(), 0u);
  }
}

// ConfigMaps read with their contents (--scan-configmaps) are summarised, with or without their
// own kind (the API leaves it out of a ConfigMapList's items).
TEST(ListReader, ConfigMapsAreSummarisedWhenAskedWithOrWithoutTheirKind) {
  const std::string text = R"({"kind": "ConfigMapList", "apiVersion": "v1", "items": [
    {"metadata": {"name": "plain", "namespace": "a"}, "data": {"SMTP_PASSWORD": "hunter2hunter2"}},
    {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "kinded", "namespace": "a"},
     "data": {"DB_PASSWORD": "correct-horse-battery"}}]})";
  k8s::Snapshot fast, slow;
  fast.set_inspect_config_data(true);
  slow.set_inspect_config_data(true);
  ASSERT_TRUE(k8s::LoadSnapshotText(text, "cm.json", fast).ok());
  ASSERT_TRUE(k8s::AddDocument(nlohmann::json::parse(text), "cm.json", slow).ok());
  EXPECT_EQ(Objects(fast), Objects(slow));
  for (const char* name : {"plain", "kinded"}) {
    const auto* cm = fast.Find("ConfigMap", "a", name);
    ASSERT_NE(cm, nullptr) << name;
    EXPECT_FALSE(cm->doc.contains("data")) << name;
    EXPECT_NE(cm->doc.dump().find("PASSWORD"), std::string::npos) << name << ": no summary";
    EXPECT_EQ(cm->doc.dump().find("hunter2"), std::string::npos);
  }
}

// Items that are read after the list's end (they need its kind) keep their place: the first copy
// of an object still wins.
TEST(ListReader, ItemsWaitingForTheListsKindKeepTheirOrder) {
  const std::string text =
      R"({"items": [{"kind": "Pod", "metadata": {"name": "a", "namespace": "x"}},
    {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a", "namespace": "x"}}],
    "kind": "PodList", "apiVersion": "v2"})";
  const auto b = ReadBoth(text);
  ASSERT_TRUE(b.fast_status.ok()) << b.fast_status;
  EXPECT_EQ(Objects(b.fast), Objects(b.slow));
  ASSERT_NE(b.fast.Find("Pod", "x", "a"), nullptr);
  EXPECT_EQ(b.fast.Find("Pod", "x", "a")->api_version, "v2");  // the first item's, from the list
  EXPECT_EQ(b.fast.duplicates(), 1u);
}

// What JSON allows and simdjson refuses, and what neither reads, each as nlohmann says it.
TEST(ListReader, NumbersSurrogatesAndDepthAreJudgedAsNlohmannJudgesThem) {
  const auto list = [](const std::string& spec) {
    return R"({"kind": "List", "items": [{"kind": "Namespace", "apiVersion": "v1",
      "metadata": {"name": "n"}, "spec": )" +
           spec + "}]}";
  };
  // Read, the same tree as nlohmann's.
  std::string deep_ok(150, '['), deep_cut(300, '['), deep_far(2000, '[');
  deep_ok += std::string(150, ']');
  deep_cut += std::string(300, ']');
  deep_far += std::string(2000, ']');
  for (const std::string& spec :
       {std::string(R"({"a": "\ud83d\ude00", "z": -0, "f": 1e308})"), deep_ok}) {
    const auto b = ReadBoth(list(spec));
    EXPECT_TRUE(b.fast_status.ok()) << b.fast_status;
    EXPECT_EQ(Objects(b.fast), Objects(b.slow)) << spec.substr(0, 40);
  }
  // Nested past any Kubernetes object (past simdjson's own limit too): refused by name.
  for (const std::string& spec : {deep_cut, deep_far}) {
    k8s::Snapshot s;
    const auto status = k8s::LoadSnapshotText(list(spec), "deep.json", s);
    EXPECT_NE(status.message().find("items[0] nests deeper than any Kubernetes object"),
              std::string::npos)
        << status;
    EXPECT_EQ(s.size(), 0u);
  }
  // Not JSON to nlohmann: a lone surrogate, a number past a double. The same words.
  for (const std::string spec :
       {R"({"a": "\udc00"})", R"({"a": "\ud888\u1234"})", R"({"a": 1e400})"}) {
    const std::string text = list(spec);
    std::string expected;
    try {
      const auto parsed = nlohmann::json::parse(text);
      expected = "parsed: " + parsed.dump();
    } catch (const nlohmann::json::exception& e) {
      expected = e.what();
    }
    k8s::Snapshot s;
    const auto status = k8s::LoadSnapshotText(text, "odd.json", s);
    EXPECT_FALSE(status.ok()) << spec;
    std::string words = expected.substr(expected.find(']') + 2);
    if (const auto at = words.find("syntax error"); at != std::string::npos) {
      words = words.substr(at);
    }
    words = words.substr(0, words.find(';'));
    EXPECT_NE(status.message().find(words), std::string::npos) << status << "\n" << expected;
  }
}

// One item larger than the reader's 1 MiB reads (the buffer grows under it, and moves).
TEST(ListReader, AnItemLargerThanAReadIsReadWhole) {
  nlohmann::json items = nlohmann::json::array();
  for (int i = 0; i < 3; ++i) {
    items.push_back(
        {{"apiVersion", "v1"},
         {"kind", "Namespace"},
         {"metadata", {{"name", "n" + std::to_string(i)}}},
         {"spec", {{"blob", std::string((3u << 20) + static_cast<unsigned>(i), 'z')}}}});
  }
  const std::string text = nlohmann::json{{"kind", "List"}, {"items", items}}.dump();
  const auto b = ReadBoth(text);
  ASSERT_TRUE(b.fast_status.ok()) << b.fast_status;
  EXPECT_EQ(b.fast.size(), 3u);
  EXPECT_EQ(Objects(b.fast), Objects(b.slow));
}

// The whole directory through the fast reader and through nlohmann's streaming reader (the old
// path, files in the same order): the same objects, replica specs dropped the same way.
TEST(ListReader, ADirectoryReadsTheSameThroughBothReaders) {
  const std::string dir = std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/cluster/demo";
  k8s::Snapshot fast, slow;
  ASSERT_TRUE(k8s::LoadSnapshotDir(dir, fast).ok());
  ASSERT_TRUE(k8s::LoadSnapshotDir(dir, slow, /*fast_lists=*/false).ok());
  EXPECT_EQ(fast.errors(), slow.errors());
  EXPECT_GE(fast.size(), 100u);
  EXPECT_EQ(Objects(fast), Objects(slow));
  EXPECT_EQ(fast.replica_specs_dropped(), slow.replica_specs_dropped());
}

// An API page: its metadata read without its items, then its items added as AddDocument adds
// the parsed page; a page that is not JSON is Internal (the kind could not be listed).
TEST(ListReader, ApiPagesAreReadAsTheParsedPageWasAndBrokenOnesRefused) {
  const std::string body = R"({"kind": "PodList", "apiVersion": "v1",
    "metadata": {"resourceVersion": "4711", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ"},
    "items": [{"metadata": {"name": "a", "namespace": "x"}, "spec": {"hostPID": true}},
              {"metadata": {"namespace": "x"}}]})";
  k8s::TextInput input(body);
  const auto scanned = k8s::ScanJsonList(input);
  EXPECT_EQ(scanned.outcome, ListRead::Outcome::kDone);
  EXPECT_EQ(scanned.metadata.value("continue", ""), "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ");
  const k8s::ListPage page{body, scanned.metadata};
  EXPECT_EQ(k8s::PageVersion(page), "4711");
  k8s::Snapshot fast, slow;
  size_t fast_added = 0, slow_added = 0;
  const auto fast_status = k8s::AddListPage(page, "API", fast, &fast_added, "Pod");
  const auto slow_status =
      k8s::AddDocument(nlohmann::json::parse(body), "API", slow, &slow_added, "Pod");
  EXPECT_EQ(fast_status.message(), slow_status.message());
  EXPECT_TRUE(absl::IsInvalidArgument(fast_status)) << fast_status;
  EXPECT_EQ(fast_added, 1u);
  EXPECT_EQ(slow_added, 1u);
  EXPECT_EQ(Objects(fast), Objects(slow));

  for (const std::string broken : {R"({"kind": "PodList", "items": [{"metadata": }]})",
                                   R"({"kind": "PodList", "items": [)", "<html>502</html>"}) {
    k8s::Snapshot none;
    const auto s = k8s::AddListPage(k8s::ListPage{broken, nullptr}, "API", none, nullptr, "Pod");
    EXPECT_TRUE(absl::IsInternal(s)) << broken << ": " << s;
  }
}

}  // namespace
}  // namespace kspm::cluster_test
