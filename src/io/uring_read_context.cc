// The io_uring ReadContext: buffered and O_DIRECT ops on descriptors go through one ring
// (io::UringReader, whose completions follow io/read_rules.h); the rest through plain system
// calls. In a build without liburing UringReader::Create refuses, and so does MakeUringContext.
#include <optional>
#include <vector>

#include "io/read_op.h"
#include "io/uring_reader.h"

namespace stload::io {

namespace {

class UringContext final : public ReadContext {
 public:
  explicit UringContext(std::unique_ptr<UringReader> ring) : ring_(std::move(ring)) {
    requests_.reserve(ring_->depth());
    indices_.reserve(ring_->depth());
  }
  size_t max_batch() const override { return ring_->depth(); }
  bool uses_uring() const override { return true; }

  Status ReadAll(std::span<const ReadOp> ops, size_t* failed) override {
    requests_.clear();
    indices_.clear();
    for (size_t i = 0; i < ops.size(); ++i) {
      const ReadOp& op = ops[i];
      std::optional<ReadRequest> request = InRing(op);
      if (!request) {
        // Run now; the ring's ops queued so far are not submitted yet, so none is in flight.
        Status status = ReadWithSyscalls(op);
        if (!status.ok()) {
          if (failed) *failed = i;
          return status;
        }
        continue;
      }
      requests_.push_back(*request);
      indices_.push_back(i);
      if (requests_.size() == ring_->depth()) STLOAD_RETURN_IF_ERROR(Flush(ops, failed));
    }
    return Flush(ops, failed);
  }

 private:
  // The ring read for `op`, if it goes into the ring.
  static std::optional<ReadRequest> InRing(const ReadOp& op) {
    if (op.file == nullptr || op.file->source == nullptr || op.dst == nullptr) return std::nullopt;
    if (op.method == ReadMethod::kBuffered && op.file->source->fd() >= 0) {
      return ReadRequest{.fd = op.file->source->fd(), .dst = op.dst, .offset = op.offset,
                         .length = op.length, .required = op.required, .align = 1};
    }
    if (op.method == ReadMethod::kDirect && op.file->direct_fd.valid()) {
      return ReadRequest{.fd = op.file->direct_fd.get(), .dst = op.dst, .offset = op.offset,
                         .length = op.length, .required = op.required,
                         .align = op.file->direct_align};
    }
    return std::nullopt;
  }

  Status Flush(std::span<const ReadOp> ops, size_t* failed) {
    if (requests_.empty()) return OkStatus();
    size_t k = 0;
    Status status = ring_->ReadAll(requests_, &k);
    // By now nothing is in flight, whether it failed or not.
    const size_t index = indices_[k < indices_.size() ? k : 0];
    requests_.clear();
    indices_.clear();
    if (status.ok()) return status;
    if (failed) *failed = index;
    return std::move(status).WithOffset(ops[index].offset)
        .WithPath(ops[index].file->source->name());
  }

  std::unique_ptr<UringReader> ring_;
  std::vector<ReadRequest> requests_;
  std::vector<size_t> indices_;
};

}  // namespace

Result<std::unique_ptr<ReadContext>> MakeUringContext(uint32_t depth) {
  STLOAD_ASSIGN_OR_RETURN(std::unique_ptr<UringReader> ring, UringReader::Create(depth));
  return std::unique_ptr<ReadContext>(std::make_unique<UringContext>(std::move(ring)));
}

}  // namespace stload::io
