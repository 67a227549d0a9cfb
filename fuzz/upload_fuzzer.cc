// Fuzzes the Upload stream: the input is split into messages (header and
// chunk frames, or anything else) with FuzzedDataProvider's framing, and
// they are sent raw, in order, then the stream is half-closed.
#include <fuzzer/FuzzedDataProvider.h>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  std::vector<std::string> frames;
  while (input.remaining_bytes() > 0 && frames.size() < 64) {
    frames.push_back(input.ConsumeRandomLengthString());
  }
  auto& harness = tensord::fuzz::Harness::Get();
  harness.Begin();
  harness.Call("Upload", frames);
  harness.End();
  return 0;
}
