// The fuzzing harness: one tensord service per fuzzing process, served
// in-process (no socket), and the raw calls a client can make on it.
//
// Every input runs in a session of its own, opened with a fixed set of
// tensors (Fixture below) and closed at the end of the input; a crash
// therefore reproduces from the input alone. After the session closes the
// harness checks that the server's budget is back to zero: bytes still
// charged are a leak, and the harness aborts so that libFuzzer reports the
// input. The requests themselves go out as raw bytes through gRPC's generic
// stub, exactly as a client could send them: nothing is parsed or checked
// on the way in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace tensord::fuzz {

// The handles every fuzzing session starts with (see harness.cc):
//   x   float32 [4, 5] arange, requires_grad       xt  x.t() (a strided view)
//   y   float32 [5] ones                            i   int64 [3] = {0, 2, 4}
//   m   bool [4, 5]                                 z   complex64 [2, 3]
//   big float32 [64, 1024] (256 KiB)                col big[:, 0] (a narrow view)
//   h   bfloat16 [3]                                e   float32 [0, 3] (empty)
//   loss = (x * x).sum(), not yet backpropagated
inline constexpr const char* kFixtureHandles[] = {"x", "xt", "y", "i",   "m", "z",
                                                  "big", "col", "h", "e", "loss"};

// One raw call's outcome.
struct CallResult {
  grpc::Status status;
  std::vector<std::string> responses;  // each response message, serialized
};

class Harness {
 public:
  // The process's harness; starts the in-process server on first use.
  static Harness& Get();

  // Opens a session with the fixture; the calls below use it until End().
  void Begin();
  // Closes the session and checks that every byte it held was returned.
  void End();

  // Sends `requests` (raw serialized messages, any bytes) on the method
  // ("Upload", "Execute", ...) of tensord.v1.Tensord, half-closes, and reads
  // every response. Works for unary and streaming methods alike.
  CallResult Call(const std::string& method, const std::vector<std::string>& requests);

 private:
  Harness();
  struct Server;
  std::unique_ptr<Server> server_;
  std::string session_id_;
};

}  // namespace tensord::fuzz
