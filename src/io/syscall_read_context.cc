// The plain system call ReadContext: every op in turn, with ReadWithSyscalls.
#include "io/read_op.h"

namespace stload::io {

namespace {

class SyscallContext final : public ReadContext {
 public:
  size_t max_batch() const override { return kBatch; }
  bool uses_uring() const override { return false; }
  Status ReadAll(std::span<const ReadOp> ops, size_t* failed) override {
    for (size_t i = 0; i < ops.size(); ++i) {
      Status status = ReadWithSyscalls(ops[i]);
      if (!status.ok()) {
        if (failed) *failed = i;
        return status;
      }
    }
    return OkStatus();
  }

 private:
  // Ops run one at a time, so a larger batch would only let one thread take work the others
  // could do at once, and make a cancellation wait for the whole batch.
  static constexpr size_t kBatch = 1;
};

}  // namespace

std::unique_ptr<ReadContext> MakeSyscallContext() { return std::make_unique<SyscallContext>(); }

}  // namespace stload::io
