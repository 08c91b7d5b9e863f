# Cluster-level checks: the Kubernetes API client, offline snapshots, the cluster check catalogue
# (collector/catalog/cluster.yaml, embedded), RBAC and workload evaluation, exceptions and the
# merge into the collector's posture. Included by collector/CMakeLists.txt.
find_package(CURL REQUIRED)

set(KSPM_CLUSTER_CATALOG_CC ${CMAKE_CURRENT_BINARY_DIR}/cluster_catalog.cc)
set(KSPM_CLUSTER_CATALOG_YAML ${CMAKE_CURRENT_SOURCE_DIR}/catalog/cluster.yaml)
add_custom_command(
  OUTPUT ${KSPM_CLUSTER_CATALOG_CC}
  COMMAND ${CMAKE_COMMAND} -DOUT=${KSPM_CLUSTER_CATALOG_CC}
          -DCLUSTER=${KSPM_CLUSTER_CATALOG_YAML}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/catalog/embed.cmake
  DEPENDS ${KSPM_CLUSTER_CATALOG_YAML}
          ${CMAKE_CURRENT_SOURCE_DIR}/catalog/embed.cmake
  COMMENT "Embedding the cluster check catalogue")

add_library(kspm_cluster_lib STATIC
  ${KSPM_CLUSTER_CATALOG_CC}
  src/kspm/collector/k8s/object.cc
  src/kspm/collector/k8s/value.cc
  src/kspm/collector/k8s/list_reader.cc
  src/kspm/collector/k8s/credentials.cc
  src/kspm/collector/k8s/snapshot_dir.cc
  src/kspm/collector/k8s/api_client.cc
  src/kspm/collector/k8s/exec_plugin.cc
  src/kspm/collector/cluster/catalog.cc
  src/kspm/collector/cluster/system_policy.cc
  src/kspm/collector/cluster/rbac.cc
  src/kspm/collector/cluster/workloads.cc
  src/kspm/collector/cluster/evaluators.cc
  src/kspm/collector/cluster/rbac_checks.cc
  src/kspm/collector/cluster/pod_checks.cc
  src/kspm/collector/cluster/namespace_checks.cc
  src/kspm/collector/cluster/netpol.cc
  src/kspm/collector/cluster/netpol_checks.cc
  src/kspm/collector/cluster/takeover_checks.cc
  src/kspm/collector/cluster/exceptions.cc
  src/kspm/collector/cluster/scan.cc
  src/kspm/collector/cluster/report.cc
  src/kspm/collector/cluster/command.cc
  src/kspm/collector/cluster/scanner.cc
  src/kspm/collector/cluster/changes.cc
  src/kspm/collector/cluster/watch.cc
  src/kspm/collector/cluster/serve_flags.cc)
target_include_directories(kspm_cluster_lib PUBLIC src)
target_link_libraries(kspm_cluster_lib PUBLIC kspm_collector_lib kspm_common kspm_proto yaml-cpp
  nlohmann_json::nlohmann_json spdlog::spdlog CURL::libcurl absl::status absl::statusor absl::strings CLI11::CLI11)
# simdjson parses each item of a large List (snapshot files, API pages) ten times faster than
# nlohmann's parser; nlohmann stays for everything else and for items simdjson refuses.
target_link_libraries(kspm_cluster_lib PRIVATE simdjson::simdjson)

target_link_libraries(kspm-collector PRIVATE kspm_cluster_lib)
