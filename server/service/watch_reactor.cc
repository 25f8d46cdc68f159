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
  std::optional<grpc::Status> end;
  {
    absl::MutexLock lock(&mu_);
    if (end_after_write_) {
      // Cancelled while the first read ran: nothing to register.
      started_ = true;
      end = EndLocked(*end_after_write_);
    }
  }
  if (end) return FinishUnlocked(*end);
  request_id_ = std::move(request_id);
  registered_ = true;
  hub_->Add(request_id_, this);
  bool ended = false;
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
    if (end_after_write_) {
      // Ended meanwhile (cancelled, or the hub closed): the write under
      // way, if any, ends it; else it ends now.
      ended = true;
      if (!writing_) end = EndLocked(*end_after_write_);
    }
  }
  if (end) return FinishUnlocked(*end);
  if (!ended) Update(initial);
}

void WatchReactor::Refuse(const grpc::Status& status) {
  std::optional<grpc::Status> end;
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
    end = EndLocked(end_after_write_ ? *end_after_write_ : status);
  }
  if (end) FinishUnlocked(*end);
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
  std::optional<grpc::Status> end;
  {
    absl::MutexLock lock(&mu_);
    // As it was said, with no details: the client is only told to reconnect.
    end = EndLocked(grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                                 std::string(status.message())));
  }
  if (end) FinishUnlocked(*end);
}

void WatchReactor::WriteNextLocked() {
  if (!pending_) return;
  writing_message_ = std::move(*pending_);
  pending_.reset();
  writing_ = true;
  StartWrite(&writing_message_);
}

std::optional<grpc::Status> WatchReactor::EndLocked(const grpc::Status& status) {
  if (finished_) return std::nullopt;
  if (writing_ || !started_) {
    if (!end_after_write_) end_after_write_ = status;
    return std::nullopt;
  }
  finished_ = true;
  return status;
}

void WatchReactor::FinishUnlocked(const grpc::Status& status) {
  // OnDone may run `delete this` on another thread before Finish returns
  // (at once when nothing holds the call): nothing of this reactor, its
  // mutex included, may be touched from here on.
  Finish(status);
}

void WatchReactor::OnWriteDone(bool ok) {
  std::optional<grpc::Status> end;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      end = EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    } else if (end_after_write_) {
      end = EndLocked(*end_after_write_);
    } else if (IsTerminal(writing_message_.state())) {
      end = EndLocked(grpc::Status::OK);
    } else {
      WriteNextLocked();
    }
  }
  if (end) FinishUnlocked(*end);
}

void WatchReactor::OnCancel() {
  std::optional<grpc::Status> end;
  {
    absl::MutexLock lock(&mu_);
    end = EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled or past its deadline"));
  }
  if (end) FinishUnlocked(*end);
}

void WatchReactor::OnDone() {
  if (registered_) hub_->Remove(request_id_, this);
  delete this;
}

}  // namespace lockbox
