#include "server/service/watch_reactor.h"

#include <cstdlib>

namespace lockbox {
namespace {
bool IsTerminal(v1::AccessRequest::State s) {
  return s != v1::AccessRequest::PENDING && s != v1::AccessRequest::STATE_UNSPECIFIED;
}
}  // namespace

std::pair<int64_t, int> WatchReactor::Rank(const v1::AccessRequest& r) {
  // etags are "<version>".
  int64_t version = std::strtoll(r.etag().c_str() + (r.etag().empty() ? 0 : 1), nullptr, 10);
  return {version, IsTerminal(r.state()) ? 1 : 0};
}

void WatchReactor::Begin(const v1::AccessRequest& initial) {
  registered_ = true;
  hub_->Add(request_id_, this);
  Update(initial);
}

void WatchReactor::Refuse(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  EndLocked(status);
}

void WatchReactor::Update(const v1::AccessRequest& request) {
  absl::MutexLock lock(&mu_);
  if (finished_ || end_after_write_) return;
  auto rank = Rank(request);
  if (rank <= last_rank_) return;
  last_rank_ = rank;
  pending_ = request;
  if (!writing_) WriteNextLocked();
}

void WatchReactor::Close(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  // As it was said, with no details: the client is only told to reconnect.
  EndLocked(
      grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message())));
}

void WatchReactor::WriteNextLocked() {
  if (!pending_) return;
  writing_message_ = std::move(*pending_);
  pending_.reset();
  writing_ = true;
  StartWrite(&writing_message_);
}

void WatchReactor::EndLocked(const grpc::Status& status) {
  if (finished_) return;
  if (writing_) {
    if (!end_after_write_) end_after_write_ = status;
    return;
  }
  finished_ = true;
  Finish(status);
}

void WatchReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok) {
    EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
  } else if (end_after_write_) {
    EndLocked(*end_after_write_);
  } else if (IsTerminal(writing_message_.state())) {
    EndLocked(grpc::Status::OK);
  } else {
    WriteNextLocked();
  }
}

void WatchReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled or past its deadline"));
}

void WatchReactor::OnDone() {
  if (registered_) hub_->Remove(request_id_, this);
  delete this;
}

}  // namespace lockbox
