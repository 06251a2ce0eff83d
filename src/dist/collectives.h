// Collective steps built on Communicator's primitives: gathering every rank's bytes, and agreeing
// on success, so that an error on one rank ends the load on every rank with the same cause.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "stload/distributed.h"

namespace stload::dist {

// Every rank's `mine`, indexed by rank (two exchanges: the sizes, then the bytes).
Result<std::vector<std::vector<std::byte>>> AllGather(Communicator& comm,
                                                      std::span<const std::byte> mine);

// Every rank contributes its status; all get the same answer: OK when every rank's is OK, else
// the error of the lowest failing rank. On the ranks that did not fail, its reason starts with
// "rank R: " and keeps its code, file, offset and tensor; on the failing rank it is unchanged.
// When the exchange itself fails (a rank died, the timeout), that error.
Status Agree(Communicator& comm, const Status& mine);

// A status as bytes and back, for Agree (exposed for tests).
std::vector<std::byte> EncodeStatus(const Status& status);
Status DecodeStatus(std::span<const std::byte> bytes);

// Little helpers for the byte strings the ranks exchange.
class ByteWriter {
 public:
  void U64(uint64_t v);
  void Str(const std::string& s);
  std::vector<std::byte> Take() { return std::move(bytes_); }

 private:
  std::vector<std::byte> bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> bytes) : bytes_(bytes) {}
  // False once a read ran past the end (then every later read returns 0 / "").
  bool ok() const { return ok_; }
  bool done() const { return at_ == bytes_.size(); }
  uint64_t U64();
  std::string Str();

 private:
  std::span<const std::byte> bytes_;
  size_t at_ = 0;
  bool ok_ = true;
};

}  // namespace stload::dist
