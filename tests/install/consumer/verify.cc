// audit_verify EXPORT PUBLIC_KEY: verifies a JSON Lines audit export with the
// installed lockbox::audit alone (no gRPC, no server). Prints OK or TAMPERED
// as lockboxctl does; exits 0 when the export verifies, 1 when it does not,
// 2 when it cannot be read.
// audit_verify --self-test: signs a small chain of its own, verifies its
// export, then checks that a changed event is caught.
#include <lockbox/audit.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace {

int Print(const lockbox::v1::VerifyAuditLogResponse& verdict) {
  if (verdict.ok()) {
    std::cout << "OK: " << verdict.detail() << "\n";
    return 0;
  }
  std::cout << "TAMPERED: first bad event " << verdict.first_bad_event() << ": "
            << verdict.detail() << "\n";
  return 1;
}

// Three events of tenant "t", a checkpoint at the last, as an export.
std::string SignedExport(const lockbox::AuditSigner& signer, const std::string& justification) {
  std::string events, previous;
  for (int i = 1; i <= 3; ++i) {
    lockbox::v1::AuditEvent e;
    e.set_name("tenants/t/auditEvents/" + std::to_string(i));
    e.set_tenant("t");
    e.set_sequence(i);
    e.set_action("access_request.create");
    e.set_justification("ticket " + std::to_string(i));
    e.mutable_event_time()->set_seconds(1'800'000'000 + i);
    e.set_previous_hash(previous);
    e.set_hash(lockbox::ChainHash(previous, e));
    previous = e.hash();
    // Changed after hashing: what a tamperer would do to the stored log.
    if (i == 2 && !justification.empty()) e.set_justification(justification);
    events += lockbox::ExportJsonLine(e);
  }
  lockbox::v1::AuditCheckpoint c;
  c.set_tenant("t");
  c.set_sequence(3);
  c.set_head_hash(previous);
  c.mutable_sign_time()->set_seconds(1'900'000'000);
  if (!signer.Sign(&c).ok()) return "";
  return lockbox::ExportJsonLine(c) + events;
}

int SelfTest() {
  auto pem = lockbox::AuditSigner::GeneratePem();
  if (!pem.ok()) return 2;
  auto signer = lockbox::AuditSigner::FromPem(*pem);
  if (!signer.ok()) return 2;
  const std::string& key = (*signer)->public_key().public_key_pem();
  std::istringstream good(SignedExport(**signer, ""));
  auto verdict = lockbox::VerifyAuditExport(good, key);
  if (!verdict.ok() || !verdict->ok() || verdict->verified_events() != 3 ||
      verdict->verified_checkpoints() != 1) {
    std::cerr << "self-test: a good export did not verify\n";
    return 1;
  }
  std::istringstream bad(SignedExport(**signer, "nothing to see"));
  auto caught = lockbox::VerifyAuditExport(bad, key);
  if (!caught.ok() || caught->ok() || caught->first_bad_event() != "tenants/t/auditEvents/2") {
    std::cerr << "self-test: a changed event was not caught\n";
    return 1;
  }
  std::cout << "self-test: OK\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--self-test") return SelfTest();
  if (argc != 3) {
    std::cerr << "usage: audit_verify EXPORT PUBLIC_KEY | audit_verify --self-test\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  std::ifstream key_file(argv[2]);
  std::stringstream key;
  key << key_file.rdbuf();
  if (!in || key.str().empty()) {
    std::cerr << "cannot read " << (!in ? argv[1] : argv[2]) << "\n";
    return 2;
  }
  auto verdict = lockbox::VerifyAuditExport(in, key.str());
  if (!verdict.ok()) {
    std::cerr << verdict.status().message() << "\n";
    return 2;
  }
  return Print(*verdict);
}
