#include "dist/collectives.h"

#include <cstring>

namespace stload::dist {

void ByteWriter::U64(uint64_t v) {
  const size_t at = bytes_.size();
  bytes_.resize(at + sizeof v);
  std::memcpy(bytes_.data() + at, &v, sizeof v);
}

void ByteWriter::Str(const std::string& s) {
  U64(s.size());
  const size_t at = bytes_.size();
  bytes_.resize(at + s.size());
  if (!s.empty()) std::memcpy(bytes_.data() + at, s.data(), s.size());
}

uint64_t ByteReader::U64() {
  uint64_t v = 0;
  if (!ok_ || bytes_.size() - at_ < sizeof v) {
    ok_ = false;
    return 0;
  }
  std::memcpy(&v, bytes_.data() + at_, sizeof v);
  at_ += sizeof v;
  return v;
}

std::string ByteReader::Str() {
  const uint64_t n = U64();
  if (!ok_ || bytes_.size() - at_ < n) {
    ok_ = false;
    return {};
  }
  std::string s(reinterpret_cast<const char*>(bytes_.data() + at_), n);
  at_ += n;
  return s;
}

Result<std::vector<std::vector<std::byte>>> AllGather(Communicator& comm,
                                                      std::span<const std::byte> mine) {
  const int n = comm.size();
  uint64_t my_size = mine.size();
  std::vector<uint64_t> sizes(n, 0);
  std::vector<Communicator::Transfer> sends, recvs;
  for (int r = 0; r < n; ++r) {
    sends.push_back({r, std::as_writable_bytes(std::span(&my_size, 1))});
    recvs.push_back({r, std::as_writable_bytes(std::span(&sizes[r], 1))});
  }
  STLOAD_RETURN_IF_ERROR(comm.ExchangeV(sends, recvs));
  std::vector<std::vector<std::byte>> out(n);
  // ExchangeV takes writable spans for sends too (MPI's buffers); it never writes them.
  std::vector<std::byte> copy(mine.begin(), mine.end());
  sends.clear();
  recvs.clear();
  for (int r = 0; r < n; ++r) {
    out[r].resize(sizes[r]);
    sends.push_back({r, std::span(copy)});
    recvs.push_back({r, std::span(out[r])});
  }
  STLOAD_RETURN_IF_ERROR(comm.ExchangeV(sends, recvs));
  return out;
}

std::vector<std::byte> EncodeStatus(const Status& status) {
  ByteWriter w;
  w.U64(static_cast<uint64_t>(status.code()));
  w.Str(status.reason());
  w.Str(status.context().path);
  w.U64(status.context().offset.has_value() ? 1 : 0);
  w.U64(status.context().offset.value_or(0));
  w.Str(status.context().tensor);
  w.U64(static_cast<uint64_t>(static_cast<int64_t>(status.context().sys_errno)));
  return w.Take();
}

Status DecodeStatus(std::span<const std::byte> bytes) {
  ByteReader r(bytes);
  const uint64_t code = r.U64();
  std::string reason = r.Str();
  std::string path = r.Str();
  const bool has_offset = r.U64() != 0;
  const uint64_t offset = r.U64();
  std::string tensor = r.Str();
  const int sys_errno = static_cast<int>(static_cast<int64_t>(r.U64()));
  if (!r.ok() || code > static_cast<uint64_t>(ErrorCode::kDeadlineExceeded)) {
    return InternalError("a rank sent an unreadable status");
  }
  if (code == 0) return OkStatus();
  Status s(static_cast<ErrorCode>(code), std::move(reason));
  if (!path.empty()) s.WithPath(std::move(path));
  if (has_offset) s.WithOffset(offset);
  if (!tensor.empty()) s.WithTensor(std::move(tensor));
  if (sys_errno != 0) s.WithErrno(sys_errno);
  return s;
}

Status Agree(Communicator& comm, const Status& mine) {
  const std::vector<std::byte> encoded = EncodeStatus(mine);
  STLOAD_ASSIGN_OR_RETURN(std::vector<std::vector<std::byte>> all, AllGather(comm, encoded));
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    Status s = DecodeStatus(all[r]);
    if (s.ok()) continue;
    if (r == comm.rank()) return mine;
    Status out(s.code(), "rank " + std::to_string(r) + ": " + s.reason());
    const ErrorContext& c = s.context();
    if (!c.path.empty()) out.WithPath(c.path);
    if (c.offset) out.WithOffset(*c.offset);
    if (!c.tensor.empty()) out.WithTensor(c.tensor);
    if (c.sys_errno != 0) out.WithErrno(c.sys_errno);
    return out;
  }
  return OkStatus();
}

}  // namespace stload::dist
