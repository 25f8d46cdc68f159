// Page tokens come back from callers, who may alter them.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/domain/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lockbox::PageTokenCodec codec("fuzzing-key");
  std::string token(reinterpret_cast<const char*>(data), size);
  auto cursor = codec.Decode("ListAccessRequests|tenants/t|", token);
  if (cursor.ok()) {
    // Only a token this codec made can decode; it must round-trip.
    std::string again = codec.Encode("ListAccessRequests|tenants/t|", *cursor);
    if (!codec.Decode("ListAccessRequests|tenants/t|", again).ok()) __builtin_trap();
  }
  return 0;
}
