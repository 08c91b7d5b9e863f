// Which engine a store spec names, and opening it.
#include "kspm/collector/store/store.h"

namespace kspm::collector::store {

std::string SqlitePathOf(const std::string& spec) {
  if (IsPostgresUrl(spec)) return "";
  return spec.starts_with("sqlite:") ? spec.substr(7) : spec;
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreOptions& options) {
  if (IsPostgresUrl(options.spec)) {
    PostgresOptions postgres = options.postgres;
    postgres.url = options.spec;
    return OpenPostgresStore(postgres);
  }
  const std::string path = SqlitePathOf(options.spec);
  if (path.empty()) return absl::InvalidArgumentError("store " + options.spec + " names no file");
  return OpenSqliteStore(path, options.query_readers, options.accept_damaged_log);
}

}  // namespace kspm::collector::store
