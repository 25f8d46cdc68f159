// Lines of an audit export file, and whole files, read by the offline
// verifier.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "lockbox/audit.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string line(reinterpret_cast<const char*>(data), size);
  lockbox::v1::AuditEvent event;
  lockbox::v1::AuditCheckpoint checkpoint;
  bool is_checkpoint = false;
  if (lockbox::ParseExportLine(line, &event, &checkpoint, &is_checkpoint).ok() && !is_checkpoint) {
    (void)lockbox::ChainHash(event.previous_hash(), event);
    (void)lockbox::ExportCsvRow(event);
  }
  std::istringstream file(line);
  (void)lockbox::VerifyAuditExport(file, "");
  return 0;
}
