// lockbox-bench: the load generator behind scripts/bench.
//
// Every call goes over real mTLS with the certificates scripts/make-certs
// made. Load runs on gRPC's callback API: `--concurrency` calls are kept in
// flight over `--connections` connections (closed loop: a call that ends
// starts the next), for `--seconds` after a short warm-up. Figures are
// printed one per line as "name: value".
//
//   lockbox-bench setup     --tenant T [--protected]   tenant, environment, bindings
//   lockbox-bench grant     --tenant T                 an active grant for alice
//   lockbox-bench unary     --rpc floor|health|checkaccess|list ...
//   lockbox-bench lifecycle --tenant T                 create + 2 approvals per life
//   lockbox-bench wakeup    --target-b B --samples N   commit on B -> RequestAccess on A
//   lockbox-bench watchers  --count N --server-pid P   N blocked WatchAccessRequest
//   lockbox-bench abuse     --watchers 80 ...          CheckAccess beside abusers
//   lockbox-bench chain     --after-sequence S ...     a tenant's history as COPY text
//   lockbox-bench verify    --tenant T                 VerifyAuditLog, timed
//   lockbox-bench keys-setup --tenant T --key-uri U    a policy on environment "keys"
//   lockbox-bench unary --rpc unwrap --as dataplane    UnwrapDataKey of one data key
#include <grpcpp/grpcpp.h>
#include <lockbox/audit.h>
#include <lockbox/client.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/floor.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "lockbox/v1/access_request_service.grpc.pb.h"
#include "lockbox/v1/audit_service.grpc.pb.h"
#include "lockbox/v1/grant_service.grpc.pb.h"
#include "lockbox/v1/key_service.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using lockbox::v1::AccessRequest;

struct Common {
  std::string target = "localhost:8443";
  std::string certs;         // Directory from scripts/make-certs.
  std::string trust_domain = "bench.local";
  std::string tenant = "bench";
  std::string tenant_admin = "dana";  // Certificate of tenant/<tenant>/user/dana.
  int concurrency = 32;
  int connections = 4;
  double seconds = 10;
  double warmup_seconds = 1;
};

std::string Read(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "lockbox-bench: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Spiffe(const Common& c, const std::string& path) {
  return "spiffe://" + c.trust_domain + "/" + path;
}

// A channel of its own connection, as `who`.
std::shared_ptr<grpc::Channel> Channel(const Common& c, const std::string& who,
                                       const std::string& target, int index) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = Read(c.certs + "/ca.crt");
  tls.pem_cert_chain = Read(c.certs + "/" + who + ".crt");
  tls.pem_private_key = Read(c.certs + "/" + who + ".key");
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  args.SetInt("lockbox.bench.connection", index);  // Never shared.
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(tls), args);
}

std::unique_ptr<lockbox::Client> Library(const Common& c, const std::string& who,
                                         const std::string& target,
                                         std::chrono::seconds deadline = std::chrono::seconds(60)) {
  lockbox::Options o;
  o.target = target;
  o.ca_file = c.certs + "/ca.crt";
  o.cert_file = c.certs + "/" + who + ".crt";
  o.key_file = c.certs + "/" + who + ".key";
  o.server_name = "localhost";
  o.default_deadline = deadline;
  auto made = lockbox::Client::Create(o);
  if (!made.ok()) {
    std::fprintf(stderr, "lockbox-bench: %s\n", made.status().error_message().c_str());
    std::exit(2);
  }
  return std::move(*made);
}

std::string Uuid() {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return out;
}

void Die(const std::string& what, const grpc::Status& s) {
  std::fprintf(stderr, "lockbox-bench: %s: %s (code %d)\n", what.c_str(),
               s.error_message().c_str(), static_cast<int>(s.error_code()));
  std::exit(1);
}

// Latencies in microseconds, and what a run did.
struct Samples {
  std::vector<double> us;
  int64_t errors = 0;
  std::string first_error;
  double seconds = 0;

  double Percentile(double p) {
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    size_t i = std::min(us.size() - 1, static_cast<size_t>(p * static_cast<double>(us.size())));
    return us[i];
  }
  void Print(const std::string& name) {
    double rate = seconds > 0 ? static_cast<double>(us.size()) / seconds : 0;
    std::printf("%s_calls: %zu\n%s_errors: %lld\n%s_per_s: %.1f\n", name.c_str(), us.size(),
                name.c_str(), static_cast<long long>(errors), name.c_str(), rate);
    std::printf("%s_p50_ms: %.3f\n%s_p99_ms: %.3f\n%s_p999_ms: %.3f\n", name.c_str(),
                Percentile(0.5) / 1000, name.c_str(), Percentile(0.99) / 1000, name.c_str(),
                Percentile(0.999) / 1000);
    if (errors > 0) std::printf("%s_first_error: %s\n", name.c_str(), first_error.c_str());
    std::fflush(stdout);
  }
};

// Runs `concurrency` closed loops of `start(slot, done)` until the time is
// up; each operation calls done(ok, error) exactly once when it ends.
class ClosedLoop {
 public:
  using Done = std::function<void(bool ok, const std::string& error)>;
  using Start = std::function<void(int slot, Done done)>;

  Samples Run(int concurrency, double warmup, double seconds, const Start& start) {
    start_ = start;
    measure_from_ = Clock::now() + ToDuration(warmup);
    end_ = measure_from_ + ToDuration(seconds);
    active_ = concurrency;
    for (int i = 0; i < concurrency; ++i) Next(i);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return active_ == 0; });
    samples_.seconds = seconds;
    return std::move(samples_);
  }

 private:
  static Clock::duration ToDuration(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  void Next(int slot) {
    Clock::time_point began = Clock::now();
    if (began >= end_) {
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) cv_.notify_all();
      return;
    }
    start_(slot, [this, slot, began](bool ok, const std::string& error) {
      Clock::time_point ended = Clock::now();
      if (began >= measure_from_ && ended <= end_) {
        std::lock_guard<std::mutex> lock(mu_);
        if (ok) {
          samples_.us.push_back(
              std::chrono::duration<double, std::micro>(ended - began).count());
        } else {
          if (samples_.errors++ == 0) samples_.first_error = error;
        }
      }
      Next(slot);
    });
  }

  Start start_;
  Clock::time_point measure_from_, end_;
  std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
  Samples samples_;
};

// One unary call on the callback API, owning its context and messages.
template <typename Req, typename Resp>
struct Call {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
};

template <typename Req, typename Resp, typename Invoke>
void Unary(const Req& req, Invoke invoke,
           std::function<void(const grpc::Status&, Resp&)> then) {
  auto* call = new Call<Req, Resp>;
  call->req = req;
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  invoke(&call->ctx, &call->req, &call->resp, [call, then](grpc::Status s) {
    // The call is gone before `then` runs: the last `then` lets the run end
    // (and the process exit, destroying the channels), so nothing of the
    // call may be touched after it.
    Resp resp = std::move(call->resp);
    delete call;
    then(s, resp);
  });
}

int RunUnary(const Common& c, const std::string& rpc, const std::string& as,
             const std::string& filter, int page_size, const std::string& name) {
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> health;
  std::vector<std::unique_ptr<lockbox::bench::v1::Floor::Stub>> floor;
  std::vector<std::unique_ptr<lockbox::v1::GrantService::Stub>> grants;
  std::vector<std::unique_ptr<lockbox::v1::AccessRequestService::Stub>> requests;
  std::vector<std::unique_ptr<lockbox::v1::AuditService::Stub>> audit;
  std::vector<std::unique_ptr<lockbox::v1::KeyService::Stub>> keys;
  for (int i = 0; i < c.connections; ++i) {
    auto ch = Channel(c, as, c.target, i);
    health.push_back(grpc::health::v1::Health::NewStub(ch));
    floor.push_back(lockbox::bench::v1::Floor::NewStub(ch));
    grants.push_back(lockbox::v1::GrantService::NewStub(ch));
    requests.push_back(lockbox::v1::AccessRequestService::NewStub(ch));
    audit.push_back(lockbox::v1::AuditService::NewStub(ch));
    keys.push_back(lockbox::v1::KeyService::NewStub(ch));
  }
  // The data plane's unwrap (keys-setup made its environment and policy):
  // one data key, unwrapped again and again as its system operation.
  lockbox::v1::UnwrapDataKeyRequest unwrap;
  if (rpc == "unwrap") {
    lockbox::v1::GenerateDataKeyRequest g;
    g.set_environment("tenants/" + c.tenant + "/environments/keys");
    g.set_data_source("sql");
    auto made = Library(c, as, c.target)->GenerateDataKey(g);
    if (!made.ok()) Die("GenerateDataKey", made.status());
    unwrap.set_environment(g.environment());
    unwrap.set_data_source(g.data_source());
    unwrap.set_wrapped(made->wrapped());
  }
  lockbox::v1::CheckAccessRequest check;
  check.set_principal(Spiffe(c, "operator/alice"));
  check.set_environment("tenants/" + c.tenant + "/environments/prod");
  lockbox::v1::ListAccessRequestsRequest list;
  list.set_parent("tenants/" + c.tenant);
  list.set_filter(filter);
  list.set_page_size(page_size);
  lockbox::v1::ListAuditEventsRequest audit_list;
  audit_list.set_parent("tenants/" + c.tenant);
  audit_list.set_filter(filter);
  audit_list.set_page_size(page_size);
  grpc::health::v1::HealthCheckRequest hc;

  ClosedLoop loop;
  Samples s = loop.Run(c.concurrency, c.warmup_seconds, c.seconds,
                       [&](int slot, ClosedLoop::Done done) {
    int conn = slot % c.connections;
    if (rpc == "floor") {
      Unary<lockbox::bench::v1::Nothing, lockbox::bench::v1::Nothing>(
          lockbox::bench::v1::Nothing(),
          [&, conn](auto* ctx, auto* req, auto* resp, auto cb) {
            floor[conn]->async()->Call(ctx, req, resp, std::move(cb));
          },
          [done](const grpc::Status& st, lockbox::bench::v1::Nothing&) {
            done(st.ok(), st.error_message());
          });
    } else if (rpc == "health") {
      Unary<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>(
          hc,
          [&, conn](auto* ctx, auto* req, auto* resp, auto cb) {
            health[conn]->async()->Check(ctx, req, resp, std::move(cb));
          },
          [done](const grpc::Status& st, grpc::health::v1::HealthCheckResponse& r) {
            done(st.ok() && r.status() == grpc::health::v1::HealthCheckResponse::SERVING,
                 st.error_message());
          });
    } else if (rpc == "checkaccess") {
      Unary<lockbox::v1::CheckAccessRequest, lockbox::v1::CheckAccessResponse>(
          check,
          [&, conn](auto* ctx, auto* req, auto* resp, auto cb) {
            grants[conn]->async()->CheckAccess(ctx, req, resp, std::move(cb));
          },
          [done](const grpc::Status& st, lockbox::v1::CheckAccessResponse& r) {
            done(st.ok() && r.allowed(), st.ok() ? "not allowed" : st.error_message());
          });
    } else if (rpc == "unwrap") {
      Unary<lockbox::v1::UnwrapDataKeyRequest, lockbox::v1::UnwrapDataKeyResponse>(
          unwrap,
          [&, conn](auto* ctx, auto* req, auto* resp, auto cb) {
            keys[conn]->async()->UnwrapDataKey(ctx, req, resp, std::move(cb));
          },
          [done](const grpc::Status& st, lockbox::v1::UnwrapDataKeyResponse& r) {
            done(st.ok() && r.plaintext().size() == 32, st.error_message());
          });
    } else if (rpc == "audit") {
      Unary<lockbox::v1::ListAuditEventsRequest, lockbox::v1::ListAuditEventsResponse>(
          audit_list,
          [&, conn](auto* ctx, auto* req, auto* resp, auto cb) {
            audit[conn]->async()->ListAuditEvents(ctx, req, resp, std::move(cb));
          },
          [done](const grpc::Status& st, lockbox::v1::ListAuditEventsResponse&) {
            // An empty page is an answer: the baseline's filters match
            // nothing until the history is loaded.
            done(st.ok(), st.error_message());
          });
    } else {
      Unary<lockbox::v1::ListAccessRequestsRequest, lockbox::v1::ListAccessRequestsResponse>(
          list,
          [&, conn](auto* ctx, auto* req, auto* resp, auto cb) {
            requests[conn]->async()->ListAccessRequests(ctx, req, resp, std::move(cb));
          },
          [done](const grpc::Status& st, lockbox::v1::ListAccessRequestsResponse&) {
            done(st.ok(), st.error_message());
          });
    }
  });
  s.Print(name.empty() ? rpc : name);
  return 0;
}

// Complete lives: alice asks, bob approves, dana approves (protected tenant),
// each its own connection as its own identity.
int RunLifecycle(const Common& c) {
  struct Stubs {
    std::unique_ptr<lockbox::v1::AccessRequestService::Stub> alice, bob, dana;
  };
  std::vector<Stubs> stubs;
  for (int i = 0; i < c.connections; ++i) {
    stubs.push_back(
        {lockbox::v1::AccessRequestService::NewStub(Channel(c, "alice", c.target, i)),
         lockbox::v1::AccessRequestService::NewStub(Channel(c, "bob", c.target, i)),
         lockbox::v1::AccessRequestService::NewStub(Channel(c, c.tenant_admin, c.target, i))});
  }
  using lockbox::v1::ApproveAccessRequestRequest;
  using lockbox::v1::CreateAccessRequestRequest;
  ClosedLoop loop;
  Samples s = loop.Run(c.concurrency, c.warmup_seconds, c.seconds,
                       [&](int slot, ClosedLoop::Done done) {
    Stubs* st = &stubs[slot % c.connections];
    CreateAccessRequestRequest create;
    create.set_parent("tenants/" + c.tenant);
    create.set_request_id(Uuid());
    create.mutable_access_request()->set_environment("tenants/" + c.tenant + "/environments/prod");
    create.mutable_access_request()->set_reason(AccessRequest::OPERATOR_INITIATED);
    create.mutable_access_request()->set_justification("benchmark: a complete life");
    auto approve = [st, done](bool customer, const std::string& name) {
      ApproveAccessRequestRequest a;
      a.set_name(name);
      a.set_request_id(Uuid());
      auto* stub = customer ? st->dana.get() : st->bob.get();
      Unary<ApproveAccessRequestRequest, AccessRequest>(
          a,
          [stub](auto* ctx, auto* req, auto* resp, auto cb) {
            stub->async()->ApproveAccessRequest(ctx, req, resp, std::move(cb));
          },
          [st, done, customer](const grpc::Status& s, AccessRequest& r) {
            if (!s.ok()) return done(false, s.error_message());
            if (customer) {
              return done(r.state() == AccessRequest::APPROVED && !r.grant().empty(),
                          "not approved");
            }
            // The customer's turn: a second approval on another connection.
            ApproveAccessRequestRequest b;
            b.set_name(r.name());
            b.set_request_id(Uuid());
            Unary<ApproveAccessRequestRequest, AccessRequest>(
                b,
                [st](auto* ctx, auto* req, auto* resp, auto cb) {
                  st->dana->async()->ApproveAccessRequest(ctx, req, resp, std::move(cb));
                },
                [done](const grpc::Status& s2, AccessRequest& r2) {
                  done(s2.ok() && r2.state() == AccessRequest::APPROVED,
                       s2.ok() ? "not approved" : s2.error_message());
                });
          });
    };
    Unary<CreateAccessRequestRequest, AccessRequest>(
        create,
        [st](auto* ctx, auto* req, auto* resp, auto cb) {
          st->alice->async()->CreateAccessRequest(ctx, req, resp, std::move(cb));
        },
        [done, approve](const grpc::Status& s, AccessRequest& r) {
          if (!s.ok()) return done(false, s.error_message());
          approve(false, r.name());
        });
  });
  s.Print("lifecycle");
  return 0;
}

// From the final approval's commit on replica B to RequestAccess returning
// on a client of replica A. The commit happens after the approval's
// recorded update_time and before its response; the figure is measured
// from update_time, so it is an upper bound.
int RunWakeup(const Common& c, const std::string& target_b, int samples) {
  auto alice = Library(c, "alice", c.target);
  auto bob = Library(c, "bob", target_b);
  auto dana = Library(c, c.tenant_admin, target_b);
  Samples s;
  auto began = Clock::now();
  for (int i = 0; i < samples; ++i) {
    lockbox::v1::CreateAccessRequestRequest ask;
    ask.set_parent("tenants/" + c.tenant);
    ask.mutable_access_request()->set_environment("tenants/" + c.tenant + "/environments/prod");
    ask.mutable_access_request()->set_reason(AccessRequest::OPERATOR_INITIATED);
    ask.mutable_access_request()->set_justification("benchmark: wake-up latency");
    std::mutex mu;
    std::condition_variable cv;
    std::string name;
    std::chrono::system_clock::time_point returned;
    std::thread waiter([&] {
      auto grant = alice->RequestAccess(ask, std::chrono::seconds(60), [&](const AccessRequest& r) {
        std::lock_guard<std::mutex> lock(mu);
        if (name.empty()) {
          name = r.name();
          cv.notify_all();
        }
      });
      returned = std::chrono::system_clock::now();
      if (!grant.ok()) Die("RequestAccess", grant.status());
    });
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !name.empty(); });
    }
    lockbox::v1::ApproveAccessRequestRequest a;
    a.set_name(name);
    auto internal = bob->ApproveAccessRequest(a);
    if (!internal.ok()) Die("internal approval", internal.status());
    // Let the waiter settle on the customer-review snapshot first.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto final_approval = dana->ApproveAccessRequest(a);
    if (!final_approval.ok()) Die("customer approval", final_approval.status());
    waiter.join();
    const auto& t = final_approval->update_time();
    auto committed = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::seconds(t.seconds()) + std::chrono::nanoseconds(t.nanos())));
    s.us.push_back(std::chrono::duration<double, std::micro>(returned - committed).count());
  }
  s.seconds = std::chrono::duration<double>(Clock::now() - began).count();
  s.Print("wakeup");
  return 0;
}

// Holds `count` WatchAccessRequest streams on one server, each on a pending
// request of the tenant, and reads the server's memory and threads once all
// have their first snapshot.
class Watch final : public grpc::ClientReadReactor<AccessRequest> {
 public:
  Watch(std::atomic<int>* started, std::atomic<int>* done) : started_(started), done_(done) {}
  void Begin(lockbox::v1::AccessRequestService::Stub* stub, const std::string& name) {
    req_.set_name(name);
    // A connection still being set up under load must not fail the stream.
    ctx_.set_wait_for_ready(true);
    stub->async()->WatchAccessRequest(&ctx_, &req_, this);
    StartRead(&resp_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!first_) {
      first_ = true;
      started_->fetch_add(1);
    }
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    finished_.store(true, std::memory_order_release);
    done_->fetch_add(1);
  }
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  void Cancel() { ctx_.TryCancel(); }
  // Valid once OnDone has run (after `done` counted this stream).
  const grpc::Status& status() const { return status_; }

 private:
  grpc::ClientContext ctx_;
  lockbox::v1::WatchAccessRequestRequest req_;
  AccessRequest resp_;
  bool first_ = false;
  grpc::Status status_;
  std::atomic<bool> finished_{false};
  std::atomic<int>* started_;
  std::atomic<int>* done_;
};

std::map<std::string, std::string> ProcStatus(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    out[line.substr(0, colon)] = v;
  }
  return out;
}

int RunWatchers(const Common& c, int count, int pid) {
  auto bob = Library(c, "bob", c.target);
  std::vector<std::string> names;
  lockbox::v1::ListAccessRequestsRequest l;
  l.set_parent("tenants/" + c.tenant);
  l.set_filter("state = PENDING");
  l.set_page_size(1000);
  while (static_cast<int>(names.size()) < count) {
    auto page = bob->ListAccessRequests(l);
    if (!page.ok()) Die("listing pending requests", page.status());
    for (const auto& r : page->access_requests()) names.push_back(r.name());
    if (page->next_page_token().empty()) break;
    l.set_page_token(page->next_page_token());
  }
  if (static_cast<int>(names.size()) < count) {
    std::fprintf(stderr, "lockbox-bench: only %zu pending requests in tenants/%s\n", names.size(),
                 c.tenant.c_str());
    return 1;
  }
  auto before = ProcStatus(pid);
  std::vector<std::unique_ptr<lockbox::v1::AccessRequestService::Stub>> stubs;
  for (int i = 0; i < c.connections; ++i) {
    stubs.push_back(lockbox::v1::AccessRequestService::NewStub(Channel(c, "bob", c.target, i)));
  }
  std::atomic<int> started{0}, done{0};
  std::vector<std::unique_ptr<Watch>> watches;
  auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) {
    watches.push_back(std::make_unique<Watch>(&started, &done));
    watches.back()->Begin(stubs[i % c.connections].get(), names[i]);
  }
  while (started.load() + done.load() < count && Clock::now() - t0 < std::chrono::seconds(300)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  double setup_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto after = ProcStatus(pid);
  int held = started.load() - done.load();
  std::printf("watchers_held: %d\nwatchers_setup_s: %.1f\n", held, setup_s);
  if (done.load() > 0) {
    // Which streams ended before we cancelled them, and why: the first
    // error's code and message, and how many ended.
    int ended = 0;
    const grpc::Status* first = nullptr;
    for (auto& w : watches) {
      if (!w->finished()) continue;
      ++ended;
      if (first == nullptr) first = &w->status();
    }
    std::fprintf(stderr, "lockbox-bench: %d watchers ended early; first: code %d: %s\n", ended,
                 first ? static_cast<int>(first->error_code()) : -1,
                 first ? first->error_message().c_str() : "");
  }
  std::printf("watchers_rss_before_mb: %.1f\n", std::atof(before["VmRSS"].c_str()) / 1024);
  std::printf("watchers_rss_mb: %.1f\n", std::atof(after["VmRSS"].c_str()) / 1024);
  std::printf("watchers_threads_before: %s\nwatchers_threads: %s\n", before["Threads"].c_str(),
              after["Threads"].c_str());
  std::fflush(stdout);
  for (auto& w : watches) w->Cancel();
  while (done.load() < count && Clock::now() - t0 < std::chrono::seconds(400)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return held == count ? 0 : 1;
}

// A hostile health watcher: a Watch stream held open as long as the server
// lets it, by a certificate with no role binding.
class HealthWatch final : public grpc::ClientReadReactor<grpc::health::v1::HealthCheckResponse> {
 public:
  explicit HealthWatch(std::atomic<int>* open) : open_(open) {}
  void Begin(grpc::health::v1::Health::Stub* stub) {
    stub->async()->Watch(&ctx_, &req_, this);
    StartRead(&resp_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!counted_) {
      counted_ = true;
      open_->fetch_add(1);
    }
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status&) override {
    if (counted_) open_->fetch_sub(1);
    done_.store(true, std::memory_order_release);
  }
  void Cancel() { ctx_.TryCancel(); }
  bool done() const { return done_.load(std::memory_order_acquire); }

 private:
  grpc::ClientContext ctx_;
  grpc::health::v1::HealthCheckRequest req_;
  grpc::health::v1::HealthCheckResponse resp_;
  bool counted_ = false;
  std::atomic<bool> done_{false};
  std::atomic<int>* open_;
};

// CheckAccess from the enforcer while `watchers` health Watch streams of
// `watch_as` are held open and `flood_as` keeps `flood_concurrency`
// CreateAccessRequest calls in flight in `flood_tenant`: what a caller that
// follows the rules gets while two others do not.
int RunAbuse(const Common& c, int watchers, const std::string& watch_as,
             const std::string& flood_as, const std::string& flood_tenant,
             int flood_concurrency) {
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> watch_stubs;
  const int watch_connections = 8;
  for (int i = 0; i < watch_connections; ++i) {
    watch_stubs.push_back(grpc::health::v1::Health::NewStub(Channel(c, watch_as, c.target, i)));
  }
  std::atomic<int> open{0};
  std::vector<std::unique_ptr<HealthWatch>> watches;
  for (int i = 0; i < watchers; ++i) {
    watches.push_back(std::make_unique<HealthWatch>(&open));
    watches.back()->Begin(watch_stubs[i % watch_connections].get());
  }
  // Each as many as the server lets open, before the measured calls start.
  auto settle = Clock::now() + std::chrono::seconds(3);
  while (open.load() < watchers && Clock::now() < settle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int opened = open.load();

  std::vector<std::unique_ptr<lockbox::v1::AccessRequestService::Stub>> flood_stubs;
  for (int i = 0; i < 2; ++i) {
    flood_stubs.push_back(
        lockbox::v1::AccessRequestService::NewStub(Channel(c, flood_as, c.target, 100 + i)));
  }
  Samples flood;
  std::thread flooder([&] {
    ClosedLoop loop;
    flood = loop.Run(flood_concurrency, c.warmup_seconds, c.seconds,
                     [&](int slot, ClosedLoop::Done done) {
      lockbox::v1::CreateAccessRequestRequest create;
      create.set_parent("tenants/" + flood_tenant);
      create.set_request_id(Uuid());
      auto* r = create.mutable_access_request();
      r->set_environment("tenants/" + flood_tenant + "/environments/prod");
      r->set_reason(AccessRequest::OPERATOR_INITIATED);
      r->set_justification("benchmark: a flood of changes");
      auto* stub = flood_stubs[slot % flood_stubs.size()].get();
      Unary<lockbox::v1::CreateAccessRequestRequest, AccessRequest>(
          create,
          [stub](auto* ctx, auto* req, auto* resp, auto cb) {
            stub->async()->CreateAccessRequest(ctx, req, resp, std::move(cb));
          },
          [done](const grpc::Status& st, AccessRequest&) { done(st.ok(), st.error_message()); });
    });
  });

  std::vector<std::unique_ptr<lockbox::v1::GrantService::Stub>> grants;
  for (int i = 0; i < c.connections; ++i) {
    grants.push_back(lockbox::v1::GrantService::NewStub(Channel(c, "enforcer", c.target, i)));
  }
  lockbox::v1::CheckAccessRequest check;
  check.set_principal(Spiffe(c, "operator/alice"));
  check.set_environment("tenants/" + c.tenant + "/environments/prod");
  ClosedLoop loop;
  Samples s = loop.Run(c.concurrency, c.warmup_seconds, c.seconds,
                       [&](int slot, ClosedLoop::Done done) {
    auto* stub = grants[slot % c.connections].get();
    Unary<lockbox::v1::CheckAccessRequest, lockbox::v1::CheckAccessResponse>(
        check,
        [stub](auto* ctx, auto* req, auto* resp, auto cb) {
          stub->async()->CheckAccess(ctx, req, resp, std::move(cb));
        },
        [done](const grpc::Status& st, lockbox::v1::CheckAccessResponse& r) {
          done(st.ok() && r.allowed(), st.ok() ? "not allowed" : st.error_message());
        });
  });
  flooder.join();
  s.Print("abuse_checkaccess");
  flood.Print("abuse_flood");
  std::printf("abuse_watchers_requested: %d\nabuse_watchers_open: %d\n", watchers, opened);
  std::fflush(stdout);
  for (auto& w : watches) w->Cancel();
  auto until = Clock::now() + std::chrono::seconds(10);
  for (auto& w : watches) {
    while (!w->done() && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  return 0;
}

// One audit_events row in COPY text (tab-separated; no value holds a tab,
// newline or backslash).
void AppendCopyRow(std::string* out, const lockbox::v1::AuditEvent& e, int64_t at_us) {
  const std::string fields[] = {e.tenant(),
                                std::to_string(e.sequence()),
                                std::to_string(at_us),
                                e.actor(),
                                e.via(),
                                e.action(),
                                e.resource(),
                                e.access_request(),
                                "0",
                                e.operator_user_id(),
                                std::to_string(static_cast<int>(e.request_state())),
                                e.support_ticket_id(),
                                "0",
                                "0",
                                e.environment(),
                                e.justification(),
                                "{}",
                                e.previous_hash(),
                                e.hash()};
  bool first = true;
  for (const std::string& f : fields) {
    if (!first) out->push_back('\t');
    first = false;
    out->append(f);
  }
  out->push_back('\n');
}

// The name of the bulk history's request `k` (each has four events).
std::string BulkRequestName(const std::string& tenant, int64_t k) {
  char id[37];
  std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012llx", static_cast<unsigned long long>(k));
  return "tenants/" + tenant + "/accessRequests/" + id;
}

// `count` audit events of `tenant` linked after its head (`after_sequence`,
// `after_hash`) with the server's own chain (lockbox/audit.h), as COPY text
// for audit_events on stdout: a year of history, oldest first, four events
// per request, so that the measured tenant's log is long and verifies.
int RunChain(const Common& c, int64_t after_sequence, const std::string& after_hash,
             int64_t count) {
  const int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count();
  const int64_t year_us = 365LL * 86400 * 1000000;
  const int64_t step_us = std::max<int64_t>(1, year_us / std::max<int64_t>(1, count));
  static const char* const kActions[] = {"access_request.create", "access_request.approve",
                                         "access_request.approve", "grant.end"};
  std::string previous = after_hash;
  std::string out;
  out.reserve(1 << 20);
  for (int64_t i = 0; i < count; ++i) {
    lockbox::v1::AuditEvent e;
    e.set_tenant(c.tenant);
    e.set_sequence(after_sequence + 1 + i);
    int64_t at = now_us - year_us + i * step_us;
    e.mutable_event_time()->set_seconds(at / 1000000);
    e.mutable_event_time()->set_nanos(static_cast<int32_t>(at % 1000000) * 1000);
    e.set_actor(Spiffe(c, i % 4 == 0 ? "operator/alice" : "operator/bob"));
    e.set_action(kActions[i % 4]);
    std::string request = BulkRequestName(c.tenant, i / 4);
    e.set_resource(request);
    e.set_access_request(request);
    e.set_request_state(i % 4 == 0 ? AccessRequest::PENDING : AccessRequest::APPROVED);
    e.set_support_ticket_id("TICKET-" + std::to_string(i / 4));
    e.set_environment("tenants/" + c.tenant + "/environments/prod");
    e.set_justification("bulk history: investigating an incident");
    e.set_previous_hash(previous);
    e.set_hash(lockbox::ChainHash(previous, e));
    previous = e.hash();
    AppendCopyRow(&out, e, at);
    if (out.size() >= (1 << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "chain_by_request: %s\n", BulkRequestName(c.tenant, count / 8).c_str());
  return 0;
}

// The tenant's log verified by the server, timed: a checkpoint of its head
// first, so that the verdict covers every event.
int RunVerify(const Common& c) {
  // A long log takes a while: minutes, not the minute other calls get.
  auto admin = Library(c, "admin", c.target, std::chrono::seconds(1800));
  lockbox::v1::CreateAuditCheckpointRequest cp;
  cp.set_parent("tenants/" + c.tenant);
  auto checkpoint = admin->CreateAuditCheckpoint(cp);
  if (!checkpoint.ok()) Die("CreateAuditCheckpoint", checkpoint.status());
  lockbox::v1::VerifyAuditLogRequest v;
  v.set_parent("tenants/" + c.tenant);
  auto t0 = Clock::now();
  auto verdict = admin->VerifyAuditLog(v);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!verdict.ok()) Die("VerifyAuditLog", verdict.status());
  std::printf("verify_ok: %d\nverify_events: %lld\nverify_seconds: %.3f\nverify_events_per_s: %.1f\n",
              verdict->ok() ? 1 : 0, static_cast<long long>(verdict->verified_events()), seconds,
              seconds > 0 ? static_cast<double>(verdict->verified_events()) / seconds : 0);
  if (!verdict->ok()) {
    std::printf("verify_first_bad_event: %s\nverify_detail: %s\n",
                verdict->first_bad_event().c_str(), verdict->detail().c_str());
  }
  std::fflush(stdout);
  return 0;
}

// The bench tenant: an environment, a policy, and the people of a life.
int RunSetup(const Common& c, bool protect) {
  auto admin = Library(c, "admin", c.target);
  // As the tests' harness does (tests/support TenantRequest): the tenant's
  // CA from make-certs as its bundle, dana as its first tenant.admin.
  lockbox::v1::CreateTenantRequest t;
  t.set_tenant_id(c.tenant);
  t.mutable_identity()->set_ca_bundle_pem(Read(c.certs + "/tenant-" + c.tenant + "-ca.crt"));
  t.mutable_first_admin()->set_principal(Spiffe(c, "tenant/" + c.tenant + "/user/dana"));
  t.mutable_first_admin()->set_email("dana@bench.example");
  auto made = admin->CreateTenant(t);
  if (!made.ok() && made.status().error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    Die("CreateTenant", made.status());
  }
  lockbox::v1::CreateEnvironmentRequest e;
  e.set_parent("tenants/" + c.tenant);
  e.set_environment_id("prod");
  auto env = admin->CreateEnvironment(e);
  if (!env.ok() && env.status().error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    Die("CreateEnvironment", env.status());
  }
  // With e-mail addresses, so that every life writes its notifications.
  auto bind = [&](const std::string& who, const std::string& role, const std::string& tenant) {
    lockbox::v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(Spiffe(c, who));
    r.mutable_role_binding()->set_role(role);
    r.mutable_role_binding()->set_tenant(tenant);
    if (who.find("service/") != 0) {
      r.mutable_role_binding()->set_email(who.substr(who.rfind('/') + 1) + "@bench.example");
    }
    auto b = admin->CreateRoleBinding(r);
    if (!b.ok() && b.status().error_code() != grpc::StatusCode::ALREADY_EXISTS) {
      Die("CreateRoleBinding " + who, b.status());
    }
  };
  bind("operator/alice", "operator.engineer", "");
  bind("operator/bob", "operator.reviewer", "");
  bind("service/enforcer", "service.enforcer", "");
  if (protect) {
    // The server trusts a new tenant's CA within a couple of seconds.
    auto dana = Library(c, c.tenant_admin, c.target);
    lockbox::v1::GetTenantRequest g;
    g.set_name("tenants/" + c.tenant);
    for (int i = 0; i < 100 && !dana->GetTenant(g).ok(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    lockbox::v1::UpdateLockboxPolicyRequest p;
    p.mutable_lockbox_policy()->set_name("tenants/" + c.tenant + "/lockboxPolicy");
    p.mutable_lockbox_policy()->set_enabled(true);
    p.mutable_update_mask()->add_paths("enabled");
    auto up = dana->UpdateLockboxPolicy(p);
    if (!up.ok()) Die("UpdateLockboxPolicy", up.status());
  }
  return 0;
}

// An active grant for alice in the tenant (protected or not).
int RunGrant(const Common& c) {
  auto alice = Library(c, "alice", c.target);
  auto bob = Library(c, "bob", c.target);
  auto dana = Library(c, c.tenant_admin, c.target);
  lockbox::v1::CreateAccessRequestRequest ask;
  ask.set_parent("tenants/" + c.tenant);
  ask.mutable_access_request()->set_environment("tenants/" + c.tenant + "/environments/prod");
  ask.mutable_access_request()->set_reason(AccessRequest::OPERATOR_INITIATED);
  ask.mutable_access_request()->set_justification("benchmark: the grant CheckAccess finds");
  auto r = alice->CreateAccessRequest(ask);
  if (!r.ok()) Die("CreateAccessRequest", r.status());
  lockbox::v1::ApproveAccessRequestRequest a;
  a.set_name(r->name());
  auto first = bob->ApproveAccessRequest(a);
  if (!first.ok()) Die("internal approval", first.status());
  if (first->state() == AccessRequest::PENDING) {
    auto second = dana->ApproveAccessRequest(a);
    if (!second.ok()) Die("customer approval", second.status());
  }
  std::printf("grant_request: %s\n", r->name().c_str());
  return 0;
}

// Waits until the server answers health SERVING over mTLS.
int RunWait(const Common& c) {
  auto stub = grpc::health::v1::Health::NewStub(Channel(c, "admin", c.target, 0));
  auto until = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < until) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    if (stub->Check(&ctx, req, &resp).ok() &&
        resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::fprintf(stderr, "lockbox-bench: %s never became ready\n", c.target.c_str());
  return 1;
}

}  // namespace

// For the unwrap figure: environment "keys" of the tenant with one data
// source, covered by an encryption policy under `key_uri` (made by the
// tenant's admin), and service/dataplane bound service.keyuser there.
int RunKeysSetup(const Common& c, const std::string& key_uri) {
  auto admin = Library(c, "admin", c.target);
  lockbox::v1::CreateEnvironmentRequest e;
  e.set_parent("tenants/" + c.tenant);
  e.set_environment_id("keys");
  auto* ds = e.mutable_environment()->add_data_sources();
  ds->set_id("sql");
  ds->set_kind("sql_database");
  auto env = admin->CreateEnvironment(e);
  if (!env.ok() && env.status().error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    Die("CreateEnvironment keys", env.status());
  }
  lockbox::v1::CreateRoleBindingRequest b;
  b.mutable_role_binding()->set_principal(Spiffe(c, "service/dataplane"));
  b.mutable_role_binding()->set_role("service.keyuser");
  b.mutable_role_binding()->set_tenant("tenants/" + c.tenant);
  auto bound = admin->CreateRoleBinding(b);
  if (!bound.ok() && bound.status().error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    Die("CreateRoleBinding service/dataplane", bound.status());
  }
  lockbox::v1::CreateEncryptionPolicyRequest p;
  p.set_parent("tenants/" + c.tenant);
  p.set_encryption_policy_id("bench-cmk");
  p.mutable_encryption_policy()->set_key_uri(key_uri);
  p.mutable_encryption_policy()->add_environments("keys");
  // The tenant's admin is trusted once the replica has its CA (a moment
  // after the tenant was made).
  auto dana = Library(c, c.tenant_admin, c.target);
  lockbox::v1::GetTenantRequest g;
  g.set_name("tenants/" + c.tenant);
  for (int i = 0; i < 100 && !dana->GetTenant(g).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto policy = dana->CreateEncryptionPolicy(p);
  if (!policy.ok() && policy.status().error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    Die("CreateEncryptionPolicy", policy.status());
  }
  return 0;
}

int main(int argc, char** argv) {
  Common c;
  CLI::App app{"lockbox-bench: load and latency figures for lockboxd over mTLS"};
  app.require_subcommand(1);
  auto common = [&](CLI::App* sub) {
    sub->add_option("--target", c.target, "lockboxd address")->capture_default_str();
    sub->add_option("--certs", c.certs, "Directory made by scripts/make-certs")->required();
    sub->add_option("--trust-domain", c.trust_domain)->capture_default_str();
    sub->add_option("--tenant", c.tenant)->capture_default_str();
    sub->add_option("--tenant-admin", c.tenant_admin,
                    "Certificate name of tenant/<tenant>/user/dana")->capture_default_str();
    sub->add_option("--concurrency", c.concurrency, "Calls in flight")->capture_default_str();
    sub->add_option("--connections", c.connections, "Connections they share")
        ->capture_default_str();
    sub->add_option("--seconds", c.seconds, "Measured time")->capture_default_str();
    sub->add_option("--warmup-seconds", c.warmup_seconds)->capture_default_str();
  };
  bool protect = false;
  auto* setup = app.add_subcommand("setup", "Tenant, environment and role bindings");
  common(setup);
  setup->add_flag("--protected", protect, "Customer approval needed");
  auto* grant = app.add_subcommand("grant", "An active grant for alice");
  common(grant);
  std::string rpc = "health", as = "enforcer", filter, name;
  int page_size = 50;
  auto* unary = app.add_subcommand("unary", "Closed-loop unary calls");
  common(unary);
  unary->add_option("--rpc", rpc)->check(
      CLI::IsMember({"floor", "health", "checkaccess", "list", "audit", "unwrap"}));
  unary->add_option("--as", as, "Certificate name of the caller")->capture_default_str();
  unary->add_option("--filter", filter, "ListAccessRequests or ListAuditEvents filter");
  unary->add_option("--page-size", page_size)->capture_default_str();
  unary->add_option("--name", name, "Prefix of the printed figures (default: the RPC)");
  auto* lifecycle = app.add_subcommand("lifecycle", "Complete lives");
  common(lifecycle);
  std::string target_b;
  int samples = 100;
  auto* wakeup = app.add_subcommand("wakeup", "Commit on B to RequestAccess on A");
  common(wakeup);
  wakeup->add_option("--target-b", target_b)->required();
  wakeup->add_option("--samples", samples)->capture_default_str();
  int count = 10000, pid = 0;
  auto* watchers = app.add_subcommand("watchers", "Blocked WatchAccessRequest streams");
  common(watchers);
  watchers->add_option("--count", count)->capture_default_str();
  watchers->add_option("--server-pid", pid)->required();
  int abuse_watchers = 80, flood_concurrency = 16;
  std::string watch_as = "mallory", flood_as = "alice", flood_tenant = "abuse";
  auto* abuse = app.add_subcommand("abuse", "CheckAccess beside hostile watchers and a flood");
  common(abuse);
  abuse->add_option("--watchers", abuse_watchers, "Health Watch streams held open")
      ->capture_default_str();
  abuse->add_option("--watch-as", watch_as, "Their certificate (no role binding)")
      ->capture_default_str();
  abuse->add_option("--flood-as", flood_as, "Certificate of the flooding caller")
      ->capture_default_str();
  abuse->add_option("--flood-tenant", flood_tenant, "Tenant it creates requests in")
      ->capture_default_str();
  abuse->add_option("--flood-concurrency", flood_concurrency, "Its calls in flight")
      ->capture_default_str();
  int64_t after_sequence = 0, chain_events = 0;
  std::string after_hash;
  auto* chain = app.add_subcommand("chain", "A tenant's audit history as COPY text");
  common(chain);
  chain->add_option("--after-sequence", after_sequence, "The log's head sequence")->required();
  chain->add_option("--after-hash", after_hash, "The log's head hash")->required();
  chain->add_option("--events", chain_events, "Events to make")->required();
  auto* verify = app.add_subcommand("verify", "VerifyAuditLog of a tenant, timed");
  common(verify);
  std::string key_uri;
  auto* keys_setup =
      app.add_subcommand("keys-setup", "Environment keys (source sql), a policy on it, dataplane");
  common(keys_setup);
  keys_setup->add_option("--key-uri", key_uri, "The tenant's key in its token")->required();
  auto* wait = app.add_subcommand("wait", "Wait until the server is ready");
  common(wait);
  CLI11_PARSE(app, argc, argv);
  if (*wait) return RunWait(c);

  if (*setup) return RunSetup(c, protect);
  if (*keys_setup) return RunKeysSetup(c, key_uri);
  if (*grant) return RunGrant(c);
  if (*unary) return RunUnary(c, rpc, as, filter, page_size, name);
  if (*lifecycle) return RunLifecycle(c);
  if (*wakeup) return RunWakeup(c, target_b, samples);
  if (*watchers) return RunWatchers(c, count, pid);
  if (*chain) return RunChain(c, after_sequence, after_hash, chain_events);
  if (*verify) return RunVerify(c);
  if (*abuse) {
    return RunAbuse(c, abuse_watchers, watch_as, flood_as, flood_tenant, flood_concurrency);
  }
  return 2;
}
