// Fuzzes Download requests: the input is one raw DownloadRequest, sent
// against the fixture's tensors (views and a narrow column among them);
// every chunk of the answer is read.
#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& harness = tensord::fuzz::Harness::Get();
  harness.Begin();
  harness.Call("Download", {std::string(reinterpret_cast<const char*>(data), size)});
  harness.End();
  return 0;
}
