// lockbox-floor: the floor scripts/bench measures CheckAccess against. One
// unary method that answers at once with an empty message, on gRPC's
// callback API, over the mutual TLS lockboxd builds (MutualTlsCredentials:
// the same provider, client-certificate verification and SPIFFE check) and
// with lockboxd's server options. What CheckAccess costs above it is ours.
//
//   lockbox-floor --listen 127.0.0.1:PORT --tls-cert server.crt
//       --tls-key server.key --tls-client-ca ca.crt --trust-domain TD
//
// Serves until SIGTERM or SIGINT.
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "bench/floor.grpc.pb.h"
#include "server/service/tls.h"

namespace {

class FloorService final : public lockbox::bench::v1::Floor::CallbackService {
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* ctx,
                                 const lockbox::bench::v1::Nothing*,
                                 lockbox::bench::v1::Nothing*) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockbox-floor: an empty unary method over lockboxd's mutual TLS"};
  std::string listen = "127.0.0.1:0", cert, key, client_ca, trust_domain;
  app.add_option("--listen", listen, "host:port to serve on");
  app.add_option("--tls-cert", cert, "PEM server certificate chain")->required();
  app.add_option("--tls-key", key, "PEM private key")->required();
  app.add_option("--tls-client-ca", client_ca, "PEM CA bundle of client certificates")->required();
  app.add_option("--trust-domain", trust_domain, "SPIFFE trust domain of callers")->required();
  CLI11_PARSE(app, argc, argv);

  auto creds = lockbox::MutualTlsCredentials(lockbox::TlsFiles{cert, key, client_ca, ""},
                                             trust_domain);
  if (!creds.ok()) {
    std::fprintf(stderr, "lockbox-floor: %s\n", creds.status().ToString().c_str());
    return 2;
  }
  // Blocked before the server's threads start, so they inherit the mask
  // and only the sigwait below sees the signal.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  FloorService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, *creds, &port);
  builder.RegisterService(&service);
  // lockboxd's own server options (server/cmd/lockboxd/server.cc, defaults).
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1000);
  grpc::ResourceQuota quota("lockbox-floor");
  quota.SetMaxThreads(64);
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "lockbox-floor: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::printf("listening on port %d\n", port);
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop, &signal);
  server->Shutdown();
  return 0;
}
