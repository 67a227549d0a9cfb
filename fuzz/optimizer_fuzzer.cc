// Fuzzes optimizer creation: the input is one raw CreateOptimizerRequest
// (kinds, parameter groups, options); when the server accepts it, a
// backward pass and a Step follow, so that the options it took are used.
#include "harness.h"
#include "tensord/v1/tensord.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& harness = tensord::fuzz::Harness::Get();
  harness.Begin();
  tensord::fuzz::CallResult created =
      harness.Call("CreateOptimizer", {std::string(reinterpret_cast<const char*>(data), size)});
  tensord::v1::CreateOptimizerResponse response;
  if (created.status.ok() && created.responses.size() == 1 &&
      response.ParseFromString(created.responses[0])) {
    tensord::v1::BackwardRequest backward;
    backward.add_tensors("loss");
    backward.set_retain_graph(true);
    harness.Call("Backward", {backward.SerializeAsString()});
    tensord::v1::StepRequest step;
    step.set_optimizer(response.optimizer());
    harness.Call("Step", {step.SerializeAsString()});
    harness.Call("Step", {step.SerializeAsString()});
  }
  harness.End();
  return 0;
}
