// Fuzzes View requests (transpose, permute, reshape, squeeze, expand,
// select and basic indexing): the input is one raw ViewRequest on the
// unary View call, against the fixture's tensors.
#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& harness = tensord::fuzz::Harness::Get();
  harness.Begin();
  harness.Call("View", {std::string(reinterpret_cast<const char*>(data), size)});
  harness.End();
  return 0;
}
