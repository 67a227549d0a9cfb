// `tensord --health-probe HOST:PORT`: a client of the standard
// grpc.health.v1.Health/Check, for container HEALTHCHECKs that should not
// need a separate probe binary.
#pragma once

#include <string>

namespace tensord {

// Asks the server at `address` for the overall ("") health status and
// prints it. Returns the process exit code: 0 when SERVING, 1 otherwise
// (including when the server cannot be reached within `timeout_seconds`).
// `root_ca_path` non-empty: TLS, trusting that CA.
int RunHealthProbe(const std::string& address, const std::string& root_ca_path,
                   double timeout_seconds);

}  // namespace tensord
