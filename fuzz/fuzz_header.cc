// Fuzz target: one safetensors file, given as bytes, through format::ParseHeader.
//
// Oracle: a second reader written from the format's rules on another JSON parser
// (fuzz/reference.h). Both must accept or both reject; when both accept, they must agree on every
// tensor (name, dtype, shape, offsets, in offset order) and on the metadata. Errors are always
// kCorrupt without a path; the parse of exactly the header's bytes gives the same result as the
// parse of the whole file.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "format/safetensors_header.h"
#include "reference.h"
#include "stload/dtype.h"

namespace {

using stload::ErrorCode;
using stload::Result;
using stload::format::Header;
using stload::fuzz::RefHeader;
using stload::fuzz::Verdict;

std::string Describe(const Result<Header>& h) { return h.ok() ? "ok" : h.status().ToString(); }

void CheckSame(const Header& a, const Header& b) {
  FUZZ_CHECK(a.data_start == b.data_start, "data_start");
  FUZZ_CHECK(a.tensors.size() == b.tensors.size(), "tensor count");
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const stload::TensorInfo& x = a.tensors[i];
    const stload::TensorInfo& y = b.tensors[i];
    FUZZ_CHECK(x.name == y.name && x.dtype == y.dtype && x.shape == y.shape &&
                   x.begin == y.begin && x.end == y.end && x.file_offset == y.file_offset,
               "tensor " + std::to_string(i));
  }
  FUZZ_CHECK(a.metadata == b.metadata, "metadata");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  Result<Header> header = stload::format::ParseHeader(file, size);
  const RefHeader ref = stload::fuzz::RefParseHeader(std::span(data, size));

  if (!header.ok()) {
    const stload::Status& s = header.status();
    FUZZ_CHECK(s.code() == ErrorCode::kCorrupt, s.ToString());
    FUZZ_CHECK(!s.reason().empty(), "an error without a reason");
    FUZZ_CHECK(s.context().path.empty(), "the parser set a path: " + s.ToString());
    FUZZ_CHECK(ref.verdict != Verdict::kValid,
               "stload rejects a header the reference accepts: " + s.ToString());
    return 0;
  }
  FUZZ_CHECK(ref.verdict != Verdict::kInvalid,
             "stload accepts a header the reference rejects (" + ref.why + ")");

  const Header& h = *header;
  FUZZ_CHECK(h.data_start >= 8 && h.data_start <= size, "data_start out of the file");
  uint64_t at = 0;
  for (const stload::TensorInfo& t : h.tensors) {
    FUZZ_CHECK(t.begin == at && t.end >= t.begin, "tensors do not tile the data: " + t.name);
    FUZZ_CHECK(t.file_offset == h.data_start + t.begin, "file_offset of " + t.name);
    FUZZ_CHECK(t.shard == 0, "shard of " + t.name);
    at = t.end;
  }
  FUZZ_CHECK(h.data_start + at == size, "the tensors do not end at the end of the file");

  if (ref.verdict == Verdict::kValid) {
    FUZZ_CHECK(h.data_start == ref.data_start, "data_start differs from the reference");
    FUZZ_CHECK(h.tensors.size() == ref.tensors.size(), "tensor count differs from the reference");
    for (size_t i = 0; i < h.tensors.size(); ++i) {
      const stload::TensorInfo& t = h.tensors[i];
      const stload::fuzz::RefTensor& r = ref.tensors[i];
      FUZZ_CHECK(t.name == r.name, "name of tensor " + std::to_string(i));
      FUZZ_CHECK(stload::DTypeName(t.dtype) == r.dtype, "dtype of " + t.name);
      FUZZ_CHECK(stload::DTypeBits(t.dtype) == r.bits, "bits of " + t.name);
      FUZZ_CHECK(t.shape == r.shape, "shape of " + t.name);
      FUZZ_CHECK(t.begin == r.begin && t.end == r.end, "offsets of " + t.name);
    }
    FUZZ_CHECK(h.metadata == ref.metadata, "metadata differs from the reference");
  }

  // Exactly the header's bytes are enough, and give the same result.
  Result<Header> exact = stload::format::ParseHeader(file.first(h.data_start), size);
  FUZZ_CHECK(exact.ok(), "the header alone fails: " + Describe(exact));
  CheckSame(h, *exact);
  return 0;
}
