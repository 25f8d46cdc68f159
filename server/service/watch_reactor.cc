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

void WatchReactor::Begin(std::string request_id, const v1::AccessRequest& initial) {
  {
    absl::MutexLock lock(&mu_);
    if (end_after_write_) {
      // Cancelled while the first read ran: nothing to register.
      started_ = true;
      EndLocked(*end_after_write_);
      return;
    }
  }
  request_id_ = std::move(request_id);
  registered_ = true;
  hub_->Add(request_id_, this);
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
    if (end_after_write_) {
      // Ended meanwhile (cancelled, or the hub closed): the write under
      // way, if any, ends it; else it ends now.
      if (!writing_) EndLocked(*end_after_write_);
      return;
    }
  }
  Update(initial);
}

void WatchReactor::Refuse(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  started_ = true;
  EndLocked(end_after_write_ ? *end_after_write_ : status);
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
  if (writing_ || !started_) {
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
