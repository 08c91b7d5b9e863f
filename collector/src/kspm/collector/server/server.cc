#include "kspm/collector/server/server.h"

#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::server {

absl::StatusOr<std::unique_ptr<CollectorServer>> CollectorServer::Start(
    const ServerOptions& options) {
  std::unique_ptr<CollectorServer> s(new CollectorServer());
  auto creds = common::MakeServerCredentials(options.tls);
  if (!creds.ok()) return creds.status();
  auto store = store::OpenSqliteStore(options.db_path);
  if (!store.ok()) return store.status();
  s->store_ = *std::move(store);
  s->ingest_ = std::make_unique<Ingest>(*s->store_);
  s->ingest_->Start();
  AgentServiceLimits limits;
  limits.allow_unauthenticated = options.tls.insecure;
  s->agent_service_ = std::make_unique<AgentServiceImpl>(*s->ingest_, limits);
  s->query_service_ = std::make_unique<QueryServiceImpl>(*s->store_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *creds, &s->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.RegisterService(s->agent_service_.get());
  builder.RegisterService(s->query_service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->ingest_->Stop();
    return absl::UnavailableError("cannot listen on " + options.listen +
                                  " (address in use or invalid)");
  }
  spdlog::info("collector listening on {} (port {}), store {}, {}", options.listen, s->port_,
               options.db_path, options.tls.insecure ? "INSECURE plaintext" : "mutual TLS");
  return s;
}

CollectorServer::~CollectorServer() { Shutdown(std::chrono::seconds(1)); }

void CollectorServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + grace);
  if (ingest_) ingest_->Stop();
  spdlog::info("collector stopped");
}

}  // namespace kspm::collector::server
