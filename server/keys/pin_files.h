// The PIN directory from a flat one (issue 16): Kubernetes mounts a Secret
// as files named by its keys (no '/' in a key) in directories open to all
// (1777 and 0755) with files the pod's group may read, which
// --pkcs11-pin-dir refuses. `lockboxd install-pins` (the chart's init
// container) copies `<owner>.<token label>.pin` files (owner: a tenant ID,
// which has no '.', or _provider) into <to>/<owner>/<token label>.pin, every
// directory 0700 and file 0600, owned by the user that runs it.
#ifndef LOCKBOX_SERVER_KEYS_PIN_FILES_H_
#define LOCKBOX_SERVER_KEYS_PIN_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace lockbox {

// Copies every `*.pin` file of `from` (symbolic links followed; Kubernetes'
// "..data" entries skipped) into the PIN directory `to` (made if missing).
// Returns how many. INVALID_ARGUMENT for a name that is not
// <owner>.<label>.pin with safe names; FAILED_PRECONDITION when a file
// cannot be read or written. Never logs or returns a PIN.
absl::StatusOr<int> InstallPinFiles(const std::string& from, const std::string& to);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_KEYS_PIN_FILES_H_
