#include "names.h"

#include <vector>

#include "common.h"

namespace lockbox::ctl {
namespace {

// The largest page the server hands out; a lookup reads every page.
constexpr int kLookupPageSize = 1000;

// What a bare ID is looked up among: what `requests list -` and `grants -`
// show (the server lists only the last 28 days of requests without a time
// filter).
constexpr char kRequestsSeen[] = "the requests of the last 28 days that you can see";
constexpr char kGrantsSeen[] = "the grants you can see";

void DescribeName(CLI::App* cmd, const std::string& collection, const std::string& listed_by,
                  const std::string& seen) {
  cmd->get_option("NAME")->description("Full name, TENANT/ID, or the ID alone (see below)");
  cmd->footer("NAME is tenants/{t}/" + collection + "/{id}, or {t}/{id}, or the ID alone as\n`" +
              listed_by + "` prints it; an ID alone is looked up among\n" + seen +
              "\n(exit 8 if none has it, 9 if several do).\n\n" + kExitCodes);
}

// Picks the one name among `matches`, or says why there is none.
Result<std::string> OneMatch(const std::vector<std::string>& matches, const std::string& id,
                             const std::string& what, const std::string& where) {
  if (matches.size() == 1) return matches[0];
  if (matches.empty()) {
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        "no " + what + " with ID " + id + " among " + where + "; give TENANT/ID or the full name");
  }
  std::string all;
  for (const auto& m : matches) all += (all.empty() ? "" : ", ") + m;
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "ID " + id + " matches several: " + all + "; give the full name");
}

// Reads every page of a list into the names whose last segment is `id`.
template <typename Request, typename List, typename Items>
Result<std::vector<std::string>> NamesWithId(Request request, const std::string& id, List list,
                                             Items items) {
  std::vector<std::string> matches;
  request.set_parent("tenants/-");
  request.set_page_size(kLookupPageSize);
  while (true) {
    auto page = list(request);
    if (!page.ok()) return page.status();
    for (const auto& item : items(*page)) {
      if (Short(item.name()) == id) matches.push_back(item.name());
    }
    if (page->next_page_token().empty()) return matches;
    request.set_page_token(page->next_page_token());
  }
}

}  // namespace

void DescribeRequestName(CLI::App* cmd) {
  DescribeName(cmd, "accessRequests", "lockboxctl requests list", kRequestsSeen);
}

void DescribeGrantName(CLI::App* cmd) {
  DescribeName(cmd, "grants", "lockboxctl grants", kGrantsSeen);
}

std::optional<std::string> NameWithoutLookup(const std::string& arg,
                                             const std::string& collection) {
  if (arg.empty() || arg.rfind("tenants/", 0) == 0) return arg;
  auto slash = arg.find('/');
  if (slash == std::string::npos) return std::nullopt;
  if (arg.find('/', slash + 1) != std::string::npos) return arg;
  return "tenants/" + arg.substr(0, slash) + "/" + collection + "/" + arg.substr(slash + 1);
}

Result<std::string> ResolveRequestName(Client& client, const std::string& arg) {
  if (auto name = NameWithoutLookup(arg, "accessRequests")) return *name;
  auto matches = NamesWithId(
      v1::ListAccessRequestsRequest(), arg,
      [&](const v1::ListAccessRequestsRequest& r) { return client.ListAccessRequests(r); },
      [](const v1::ListAccessRequestsResponse& p) -> const auto& { return p.access_requests(); });
  if (!matches.ok()) return matches.status();
  return OneMatch(*matches, arg, "access request", kRequestsSeen);
}

Result<std::string> ResolveGrantName(Client& client, const std::string& arg) {
  if (auto name = NameWithoutLookup(arg, "grants")) return *name;
  auto matches = NamesWithId(
      v1::ListGrantsRequest(), arg,
      [&](const v1::ListGrantsRequest& r) { return client.ListGrants(r); },
      [](const v1::ListGrantsResponse& p) -> const auto& { return p.grants(); });
  if (!matches.ok()) return matches.status();
  return OneMatch(*matches, arg, "grant", kGrantsSeen);
}

}  // namespace lockbox::ctl
