// Fuzzes the Execute stream, the path every op takes: the input is split
// into raw ExecuteRequest messages (FuzzedDataProvider's framing), each a
// batch of commands (ops with their arguments and attributes, advanced
// indexing, views, copies, factories, autograd, optimizers, releases).
#include <fuzzer/FuzzedDataProvider.h>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  std::vector<std::string> messages;
  while (input.remaining_bytes() > 0 && messages.size() < 16) {
    messages.push_back(input.ConsumeRandomLengthString());
  }
  auto& harness = tensord::fuzz::Harness::Get();
  harness.Begin();
  harness.Call("Execute", messages);
  harness.End();
  return 0;
}
