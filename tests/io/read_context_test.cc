// One conformance suite for every read context and method (src/io/read_op.h): plain system calls
// with pread, O_DIRECT and mmap + populate (with and without a destination), io_uring with pread
// and O_DIRECT, and an in-memory source. Each gets the same ranges and batches, and, through the
// fault seam (tests/support/fault_injection.h), the same short reads, EINTR, EAGAIN, EIO,
// truncation and replacement; the rules they must all follow are in src/io/read_rules.h.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "io/direct_io.h"
#include "io/local_file_source.h"
#include "io/mapped_file.h"
#include "io/memory_source.h"
#include "io/read_op.h"
#include "io/read_rules.h"
#include "io/syscalls.h"
#include "support/fault_injection.h"
#include "support/test_files.h"

namespace stload::io {
namespace {

enum class Kind { kPread, kDirect, kMmap, kMmapResident, kUringPread, kUringDirect, kMemory };

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kPread: return "SyscallPread";
    case Kind::kDirect: return "SyscallDirect";
    case Kind::kMmap: return "SyscallMmapCopy";
    case Kind::kMmapResident: return "SyscallMmapResident";
    case Kind::kUringPread: return "UringPread";
    case Kind::kUringDirect: return "UringDirect";
    case Kind::kMemory: return "Memory";
  }
  return "?";
}

bool IsDirect(Kind k) { return k == Kind::kDirect || k == Kind::kUringDirect; }
bool IsUring(Kind k) { return k == Kind::kUringPread || k == Kind::kUringDirect; }
bool IsMmap(Kind k) { return k == Kind::kMmap || k == Kind::kMmapResident; }

// 10 pages and a bit: the last block is partial.
constexpr uint64_t kFileBytes = 10 * 4096 + 1000;

std::byte Expected(uint64_t i) { return static_cast<std::byte>((i * 31 + 7) & 0xff); }

std::string Pattern(uint64_t n, int salt = 0) {
  std::string s(n, '\0');
  for (uint64_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>(std::to_integer<int>(Expected(i)) ^ salt);
  }
  return s;
}

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<std::byte, FreeDeleter>;

Buffer Allocate(uint64_t bytes, uint32_t align) {
  const uint64_t a = std::max<uint64_t>(align, 64);
  const uint64_t size = std::max<uint64_t>((bytes + a - 1) / a * a, a);
  auto* p = static_cast<std::byte*>(std::aligned_alloc(a, size));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0xEE, size);
  return Buffer(p);
}

// One requested range, as an op of this context's method, with its buffer.
struct Planned {
  uint64_t begin = 0;  // the bytes asked for: [begin, end)
  uint64_t end = 0;
  ReadOp op;
  Buffer buffer;
};

class ReadContextConformance : public testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    path_ = dir_.File("data.bin");
    test::WriteFile(path_, Pattern(kFileBytes));
    if (kind() == Kind::kMemory) {
      source_ = std::make_shared<MemorySource>("memory.bin",
                                               [] {
                                                 std::string s = Pattern(kFileBytes);
                                                 const auto* p =
                                                     reinterpret_cast<const std::byte*>(s.data());
                                                 return std::vector<std::byte>(p, p + s.size());
                                               }());
    } else {
      Result<SourcePtr> opened = LocalFileSource::Open(path_);
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      source_ = *opened;
    }
    file_.source = source_.get();
    // What each method needs, as a load prepares it (io::Prepare).
    Status prepared = Prepare(file_, method());
    if (IsDirect(kind()) && prepared.code() == ErrorCode::kUnsupported) {
      GTEST_SKIP() << "the temp filesystem refuses O_DIRECT: " << prepared.ToString();
    }
    ASSERT_TRUE(prepared.ok()) << prepared.ToString();
    if (IsUring(kind())) {
      Result<std::unique_ptr<ReadContext>> ring = MakeUringContext(4);
      if (!ring.ok() && ring.status().code() == ErrorCode::kUnsupported) {
        GTEST_SKIP() << "io_uring is unavailable: " << ring.status().ToString();
      }
      ASSERT_TRUE(ring.ok()) << ring.status().ToString();
      context_ = std::move(*ring);
      EXPECT_TRUE(context_->uses_uring());
      EXPECT_EQ(context_->max_batch(), 4u);
    } else {
      context_ = MakeSyscallContext();
      EXPECT_FALSE(context_->uses_uring());
    }
  }

  // The injector knows a file's mappings by seeing them made: map again while it is installed.
  void MapAgain() {
    if (!IsMmap(kind())) return;
    Status status = Prepare(file_, ReadMethod::kMmapPopulate);
    ASSERT_TRUE(status.ok()) << status.ToString();
  }

  Kind kind() const { return GetParam(); }
  bool HasSyscalls() const { return kind() != Kind::kMemory; }

  ReadMethod method() const {
    if (IsDirect(kind())) return ReadMethod::kDirect;
    if (IsMmap(kind())) return ReadMethod::kMmapPopulate;
    return ReadMethod::kBuffered;
  }

  // The op reading [begin, end): O_DIRECT widens it to aligned bounds (the file may end inside the
  // last block); mmap without a destination reads into the mapping.
  Planned Plan(uint64_t begin, uint64_t end) const {
    Planned p;
    p.begin = begin;
    p.end = end;
    p.op.file = &file_;
    p.op.method = method();
    uint64_t offset = begin;
    uint64_t length = end - begin;
    uint64_t required = length;
    if (IsDirect(kind())) {
      const uint64_t a = file_.direct_align;
      offset = begin / a * a;
      const uint64_t aligned_end = (end + a - 1) / a * a;
      length = aligned_end - offset;
      required = std::min(aligned_end, source_->size_bytes()) - offset;
      if (end <= begin) length = required = 0;
    }
    p.op.offset = offset;
    p.op.length = length;
    p.op.required = required;
    if (kind() != Kind::kMmapResident) {
      p.buffer = Allocate(length, file_.direct_align);
      p.op.dst = p.buffer.get();
    }
    return p;
  }

  // The bytes the op delivered for [begin, end).
  const std::byte* Delivered(const Planned& p) const {
    if (kind() == Kind::kMmapResident) return file_.map.data() + p.begin;
    return p.buffer.get() + (p.begin - p.op.offset);
  }

  void ExpectBytes(const Planned& p) const {
    const std::byte* got = Delivered(p);
    for (uint64_t i = p.begin; i < p.end; ++i) {
      ASSERT_EQ(got[i - p.begin], Expected(i)) << "byte " << i << " of [" << p.begin << ", "
                                               << p.end << ")";
    }
  }

  Status Read(std::vector<Planned>& planned, size_t* failed) {
    std::vector<ReadOp> ops;
    for (const Planned& p : planned) ops.push_back(p.op);
    return context_->ReadAll(ops, failed);
  }

  // A batch of several ranges, read and checked.
  void ReadAndCheckBatch() {
    std::vector<Planned> planned;
    planned.push_back(Plan(0, 4096));
    planned.push_back(Plan(100, 5000));
    planned.push_back(Plan(8192, 8192));
    planned.push_back(Plan(kFileBytes - 1000, kFileBytes));
    planned.push_back(Plan(3 * 4096 + 1, 9 * 4096 - 3));
    planned.push_back(Plan(0, kFileBytes));
    size_t failed = 99;
    Status status = Read(planned, &failed);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(failed, 99u) << "set without a failure";
    for (const Planned& p : planned) ExpectBytes(p);
  }

  // Three ops where the one at index `where` covers `at`; expects that one to fail with `code`,
  // naming the file and an offset inside the op, with *failed = where.
  Status ExpectFails(ErrorCode code, uint64_t at, size_t where = 1, bool any_may_fail = false) {
    std::vector<Planned> planned;
    planned.push_back(Plan(0, 4096));
    planned.push_back(Plan(8192, 8192 + 4096));
    planned.insert(planned.begin() + static_cast<std::ptrdiff_t>(where), Plan(at - 10, at + 10));
    size_t failed = 99;
    Status status = Read(planned, &failed);
    EXPECT_EQ(status.code(), code) << status.ToString();
    if (any_may_fail) {
      // Every op fails: which is first depends on the order their completions come in.
      EXPECT_LT(failed, planned.size()) << status.ToString();
      where = failed < planned.size() ? failed : where;
    } else {
      EXPECT_EQ(failed, where) << status.ToString();
    }
    EXPECT_EQ(status.context().path, source_->name()) << status.ToString();
    EXPECT_TRUE(status.context().offset.has_value()) << status.ToString();
    if (status.context().offset) {
      EXPECT_GE(*status.context().offset, planned[where].op.offset) << status.ToString();
      EXPECT_LE(*status.context().offset, planned[where].op.offset + planned[where].op.length)
          << status.ToString();
    }
    return status;
  }

  test::TempDir dir_;
  std::string path_;
  SourcePtr source_;
  PreparedFile file_;
  std::unique_ptr<ReadContext> context_;
};

TEST_P(ReadContextConformance, RangesComeBackExactly) {
  const std::pair<uint64_t, uint64_t> ranges[] = {
      {0, 4096},                          // aligned
      {4096, 3 * 4096},                   // aligned, several blocks
      {100, 5000},                        // unaligned both ends
      {4095, 4097},                       // across a block boundary
      {777, 777},                         // empty
      {kFileBytes - 1000, kFileBytes},    // the last, partial block
      {kFileBytes - 1, kFileBytes},       // the last byte
      {0, kFileBytes},                    // everything
  };
  for (const auto& [begin, end] : ranges) {
    SCOPED_TRACE(testing::Message() << "[" << begin << ", " << end << ")");
    std::vector<Planned> planned;
    planned.push_back(Plan(begin, end));
    size_t failed = 99;
    Status status = Read(planned, &failed);
    ASSERT_TRUE(status.ok()) << status.ToString();
    ExpectBytes(planned[0]);
  }
}

TEST_P(ReadContextConformance, BatchesComeBackExactly) {
  ReadAndCheckBatch();
  // The context is reused batch after batch.
  ReadAndCheckBatch();
}

TEST_P(ReadContextConformance, EmptyBatchIsFine) {
  size_t failed = 99;
  EXPECT_TRUE(context_->ReadAll({}, &failed).ok());
  EXPECT_EQ(failed, 99u);
}

TEST_P(ReadContextConformance, ShortReadsAreResumed) {
  if (!HasSyscalls()) GTEST_SKIP() << "an in-memory source makes no system calls";
  test::FaultySyscalls faults(path_);
  faults.short_read_bytes = IsDirect(kind()) ? 2 * file_.direct_align + 777 : 777;
  {
    ScopedSyscalls installed(faults);
    MapAgain();
    ReadAndCheckBatch();
  }
  if (!IsMmap(kind())) {
    EXPECT_GT(faults.short_reads.load(), 0);
  }
}

TEST_P(ReadContextConformance, EintrIsRetried) {
  if (!HasSyscalls()) GTEST_SKIP() << "an in-memory source makes no system calls";
  test::FaultySyscalls faults(path_);
  // Not 2: with one io_uring read left, submission and completion alternate, and every second
  // call failing would fail every completion.
  faults.eintr_every = 3;
  {
    ScopedSyscalls installed(faults);
    MapAgain();
    ReadAndCheckBatch();
  }
  EXPECT_GT(faults.eintrs.load(), 0);
}

TEST_P(ReadContextConformance, OccasionalEagainIsRetriedWhereTheKernelMaySayIt) {
  if (!HasSyscalls()) GTEST_SKIP() << "an in-memory source makes no system calls";
  test::FaultySyscalls faults(path_);
  faults.eagain_every = 2;  // io_uring completions and MADV_POPULATE_READ only
  {
    ScopedSyscalls installed(faults);
    MapAgain();
    ReadAndCheckBatch();
  }
  if (IsUring(kind()) || IsMmap(kind())) {
    EXPECT_GT(faults.eagains.load(), 0);
  }
}

TEST_P(ReadContextConformance, EagainForeverIsAnErrorNotAHang) {
  if (!HasSyscalls()) GTEST_SKIP() << "an in-memory source makes no system calls";
  test::FaultySyscalls faults(path_);
  faults.eagain_always = true;
  ScopedSyscalls installed(faults);
  MapAgain();
  Status status = ExpectFails(ErrorCode::kIoError, 5000, 0, /*any_may_fail=*/true);
  EXPECT_EQ(status.context().sys_errno, EAGAIN) << status.ToString();
  if (IsUring(kind())) {
    EXPECT_NE(status.reason().find("read (io_uring)"), std::string::npos) << status.ToString();
    // Retried, but bounded (and the first op's reads are counted too).
    EXPECT_GE(faults.eagains.load(), static_cast<int>(kMaxEagainRetries));
  }
}

TEST_P(ReadContextConformance, EioNamesTheFileTheOffsetAndTheOp) {
  if (!HasSyscalls()) GTEST_SKIP() << "an in-memory source makes no system calls";
  test::FaultySyscalls faults(path_);
  faults.eio_at = 5000;
  ScopedSyscalls installed(faults);
  MapAgain();
  Status status = ExpectFails(ErrorCode::kIoError, 5000);
  EXPECT_GT(faults.eios.load(), 0);
  const char* what = IsUring(kind())    ? "read (io_uring)"
                     : IsDirect(kind()) ? "read (O_DIRECT)"
                     : IsMmap(kind())   ? "MADV_POPULATE_READ"
                                        : "read: ";
  EXPECT_NE(status.reason().find(what), std::string::npos) << status.ToString();
}

TEST_P(ReadContextConformance, ReadingPastTheEndIsCorrupt) {
  if (IsMmap(kind())) GTEST_SKIP() << "a mapping has no bytes past the file's end to ask for";
  if (IsDirect(kind())) GTEST_SKIP() << "O_DIRECT ops end at the file's end (required)";
  std::vector<Planned> planned;
  planned.push_back(Plan(0, 100));
  planned.push_back(Plan(kFileBytes - 10, kFileBytes + 10));
  size_t failed = 99;
  Status status = Read(planned, &failed);
  EXPECT_EQ(status.code(), ErrorCode::kCorrupt) << status.ToString();
  EXPECT_EQ(status.reason(), "file ends before the data its header describes");
  EXPECT_EQ(failed, 1u);
  EXPECT_EQ(status.context().path, source_->name());
  EXPECT_EQ(status.context().offset, kFileBytes);
}

TEST_P(ReadContextConformance, FileThatShrinksAfterOpenIsCorrupt) {
  if (!HasSyscalls()) GTEST_SKIP() << "an in-memory source cannot shrink";
  ASSERT_EQ(::truncate(path_.c_str(), 6000), 0);
  Status status = ExpectFails(ErrorCode::kCorrupt, 7000);
  EXPECT_NE(status.reason().find("ends before the data its header describes"), std::string::npos)
      << status.ToString();
}

TEST_P(ReadContextConformance, ReplacedPathStillReadsTheOpenedFile) {
  if (!HasSyscalls()) GTEST_SKIP() << "an in-memory source has no path to replace";
  const std::string other = dir_.File("other.bin");
  test::WriteFile(other, Pattern(kFileBytes, 0x5a));
  ASSERT_EQ(std::rename(other.c_str(), path_.c_str()), 0);
  ReadAndCheckBatch();
}

TEST_P(ReadContextConformance, DirectReadWithoutProgressIsAnError) {
  if (!IsDirect(kind())) GTEST_SKIP() << "only O_DIRECT realigns short reads";
  test::FaultySyscalls faults(path_);
  faults.short_read_bytes = 100;  // less than a block: realigning goes back to where it started
  ScopedSyscalls installed(faults);
  Status status = ExpectFails(ErrorCode::kIoError, 5000, 1, /*any_may_fail=*/true);
  EXPECT_EQ(status.reason(), "O_DIRECT read makes no progress") << status.ToString();
}

INSTANTIATE_TEST_SUITE_P(Io, ReadContextConformance,
                         testing::Values(Kind::kPread, Kind::kDirect, Kind::kMmap,
                                         Kind::kMmapResident, Kind::kUringPread,
                                         Kind::kUringDirect, Kind::kMemory),
                         [](const testing::TestParamInfo<Kind>& info) {
                           return std::string(KindName(info.param));
                         });

// --- The rules themselves (read_rules.h), without any file. ---

TEST(ReadRules, ShortReadsContinueAndTheEndIsCorrupt) {
  const ReadRange r{.fd = -1, .offset = 1000, .length = 100, .required = 100};
  ReadCursor c;
  Result<ReadNext> next = StepRead(r, 60, c);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, ReadNext::kMore);
  EXPECT_EQ(c.done, 60u);
  next = StepRead(r, -EINTR, c);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, ReadNext::kMore);
  next = StepRead(r, 0, c);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(next.status().context().offset, 1060u);
  next = StepRead(r, 40, c);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, ReadNext::kDone);
}

TEST(ReadRules, EagainIsAnErrorForPreadAndBoundedForIoUring) {
  ReadCursor c;
  Result<ReadNext> next = StepRead({.length = 10, .required = 10}, -EAGAIN, c);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().reason(), std::string("read: ") + std::strerror(EAGAIN));
  const ReadRange uring{.length = 10, .required = 10, .reader = Reader::kUring};
  for (uint32_t i = 1; i < kMaxEagainRetries; ++i) {
    next = StepRead(uring, -EAGAIN, c);
    ASSERT_TRUE(next.ok()) << i;
  }
  next = StepRead(uring, -EAGAIN, c);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().context().sys_errno, EAGAIN);
  // A read that makes progress resets the count.
  ReadCursor d;
  for (uint32_t i = 1; i < kMaxEagainRetries; ++i) ASSERT_TRUE(StepRead(uring, -EAGAIN, d).ok());
  ASSERT_TRUE(StepRead(uring, 1, d).ok());
  ASSERT_TRUE(StepRead(uring, -EAGAIN, d).ok());
}

TEST(ReadRules, DirectShortReadsResumeAtTheAlignedPosition) {
  const ReadRange r{.fd = -1, .offset = 8192, .length = 3 * 4096, .required = 2 * 4096 + 10,
                    .align = 4096, .reader = Reader::kDirectPread};
  ReadCursor c;
  Result<ReadNext> next = StepRead(r, 4096 + 100, c);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, ReadNext::kMore);
  EXPECT_EQ(c.done, 4096u);
  // The file's end inside the last block is enough.
  next = StepRead(r, 4096 + 10, c);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, ReadNext::kDone);
}

}  // namespace
}  // namespace stload::io

namespace stload::io {
namespace {

TEST(Prepare, SourcesWithoutADescriptorAreBufferedOnly) {
  MemorySource memory("m", std::vector<std::byte>(10));
  PreparedFile file;
  file.source = &memory;
  EXPECT_TRUE(Prepare(file, ReadMethod::kBuffered).ok());
  EXPECT_EQ(Prepare(file, ReadMethod::kDirect).code(), ErrorCode::kUnsupported);
  EXPECT_EQ(Prepare(file, ReadMethod::kMmapPopulate).code(), ErrorCode::kUnsupported);
  EXPECT_EQ(ReadMethodName(ReadMethod::kBuffered), "pread");
  EXPECT_EQ(ReadMethodName(ReadMethod::kDirect), "direct");
  EXPECT_EQ(ReadMethodName(ReadMethod::kMmapPopulate), "mmap");
}

}  // namespace
}  // namespace stload::io
