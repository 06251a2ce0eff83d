#include "format/slice_layout.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "stload/dtype.h"

namespace stload::format {

void PrintTo(const StridedRun& r, std::ostream* os) {
  *os << "{" << r.offset << ", " << r.run_bytes << ", " << r.stride_bytes << ", " << r.count << "}";
}

namespace {

using Runs = std::vector<StridedRun>;

// A tensor as Checkpoint would describe it: size = product(shape) * bits / 8.
TensorInfo Info(DType dtype, std::vector<uint64_t> shape, std::string name = "t") {
  TensorInfo t;
  t.name = std::move(name);
  t.dtype = dtype;
  uint64_t elements = 1;
  for (uint64_t d : shape) elements *= d;
  t.shape = std::move(shape);
  t.begin = 0;
  const uint64_t bits = DTypeBits(dtype);
  t.end = bits % 8 == 0 ? elements * (bits / 8) : elements * bits / 8;
  return t;
}

TensorSlice Box(std::vector<DimRange> dims) { return TensorSlice{std::move(dims)}; }

Runs LayoutOrDie(const TensorInfo& t, const TensorSlice& s) {
  Result<Runs> r = SliceLayout(t, s);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Runs{};
}

void ExpectInvalid(const TensorInfo& t, const TensorSlice& s) {
  Result<Runs> r = SliceLayout(t, s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.status().context().tensor, t.name);
  Result<uint64_t> bytes = SliceBytes(t, s);
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), ErrorCode::kInvalidArgument);
}

TEST(SliceLayout, WholeTensorIsOneRun) {
  const TensorInfo t = Info(DType::kF32, {4, 5});
  EXPECT_EQ(LayoutOrDie(t, {}), (Runs{{0, 80, 80, 1}}));
  // Every range whole is the whole tensor too.
  EXPECT_EQ(LayoutOrDie(t, Box({{0, 4}, {0, 5}})), (Runs{{0, 80, 80, 1}}));
  EXPECT_EQ(*SliceBytes(t, {}), 80u);
}

TEST(SliceLayout, RowCutIsOneRun) {
  const TensorInfo t = Info(DType::kF32, {4, 5});
  EXPECT_EQ(LayoutOrDie(t, Box({{1, 3}, {0, 5}})), (Runs{{20, 40, 40, 1}}));
  EXPECT_EQ(LayoutOrDie(t, Box({{3, 4}, {0, 5}})), (Runs{{60, 20, 20, 1}}));
}

TEST(SliceLayout, ColumnCutIsStrided) {
  const TensorInfo t = Info(DType::kF32, {4, 5});
  EXPECT_EQ(LayoutOrDie(t, Box({{0, 4}, {1, 3}})), (Runs{{4, 8, 20, 4}}));
  EXPECT_EQ(LayoutOrDie(t, Box({{1, 3}, {2, 4}})), (Runs{{28, 8, 20, 2}}));
  // One row of a column cut is one plain run.
  EXPECT_EQ(LayoutOrDie(t, Box({{2, 3}, {2, 4}})), (Runs{{48, 8, 8, 1}}));
  EXPECT_EQ(*SliceBytes(t, Box({{0, 4}, {1, 3}})), 32u);
}

TEST(SliceLayout, NestedCutsOn3D) {
  const TensorInfo t = Info(DType::kU8, {2, 3, 4});
  // A length-1 range only moves the start: dim 0 whole is then the stride.
  EXPECT_EQ(LayoutOrDie(t, Box({{0, 2}, {1, 2}, {1, 3}})), (Runs{{5, 2, 12, 2}}));
  // Inner dimension whole: rows of 4, the middle cut strides.
  EXPECT_EQ(LayoutOrDie(t, Box({{1, 2}, {0, 2}, {0, 4}})), (Runs{{12, 8, 8, 1}}));
  EXPECT_EQ(LayoutOrDie(t, Box({{0, 2}, {1, 3}, {0, 4}})), (Runs{{4, 8, 12, 2}}));
  // Cuts on all three: one StridedRun per index of dim 0.
  EXPECT_EQ(LayoutOrDie(t, Box({{0, 2}, {1, 3}, {2, 3}})), (Runs{{6, 1, 4, 2}, {18, 1, 4, 2}}));
}

TEST(SliceLayout, NestedCutsOn4D) {
  const TensorInfo t = Info(DType::kU8, {3, 4, 5, 6});
  // Cut on dims 0 and 2, dim 1 whole: dims 0 and 1 stride together, one StridedRun.
  EXPECT_EQ(LayoutOrDie(t, Box({{1, 3}, {0, 4}, {1, 3}, {0, 6}})), (Runs{{120 + 6, 12, 30, 8}}));
  // Cuts on dims 0, 1 and 3 (dim 2 whole joins dim 1): one StridedRun per index of dim 0.
  EXPECT_EQ(LayoutOrDie(t, Box({{1, 3}, {0, 2}, {0, 5}, {2, 4}})),
            (Runs{{122, 2, 6, 10}, {242, 2, 6, 10}}));
  // Cuts everywhere: runs in C order, outer index slowest.
  EXPECT_EQ(LayoutOrDie(t, Box({{0, 2}, {1, 3}, {2, 4}, {3, 4}})),
            (Runs{{30 + 12 + 3, 1, 6, 2},
                  {60 + 12 + 3, 1, 6, 2},
                  {120 + 30 + 12 + 3, 1, 6, 2},
                  {120 + 60 + 12 + 3, 1, 6, 2}}));
}

TEST(SliceLayout, ZeroSizeDimensions) {
  const TensorInfo t = Info(DType::kF32, {3, 0});
  EXPECT_TRUE(LayoutOrDie(t, {}).empty());
  EXPECT_TRUE(LayoutOrDie(t, Box({{0, 3}, {0, 0}})).empty());
  EXPECT_TRUE(LayoutOrDie(t, Box({{1, 2}, {0, 0}})).empty());
  EXPECT_EQ(*SliceBytes(t, {}), 0u);
  ExpectInvalid(t, Box({{0, 3}, {0, 1}}));
}

TEST(SliceLayout, ZeroSizeRanges) {
  const TensorInfo t = Info(DType::kF32, {4, 5});
  EXPECT_TRUE(LayoutOrDie(t, Box({{2, 2}, {0, 5}})).empty());
  EXPECT_TRUE(LayoutOrDie(t, Box({{0, 4}, {5, 5}})).empty());
  EXPECT_EQ(*SliceBytes(t, Box({{0, 4}, {0, 0}})), 0u);
}

TEST(SliceLayout, Scalars) {
  const TensorInfo t = Info(DType::kBF16, {});
  EXPECT_EQ(LayoutOrDie(t, {}), (Runs{{0, 2, 2, 1}}));
  ExpectInvalid(t, Box({{0, 1}}));
}

TEST(SliceLayout, WrongRankAndOutOfRange) {
  const TensorInfo t = Info(DType::kI32, {4, 5, 6}, "layers.0.w");
  ExpectInvalid(t, Box({{0, 4}, {0, 5}}));
  ExpectInvalid(t, Box({{0, 4}, {0, 5}, {0, 6}, {0, 1}}));
  ExpectInvalid(t, Box({{0, 4}, {5, 3}, {0, 6}}));  // begin > end
  ExpectInvalid(t, Box({{0, 5}, {0, 5}, {0, 6}}));  // end past the dimension
  ExpectInvalid(t, Box({{7, 7}, {0, 5}, {0, 6}}));  // empty but outside
  Result<Runs> r = SliceLayout(t, Box({{0, 4}, {5, 3}, {0, 6}}));
  EXPECT_EQ(r.status().reason(), "range 1 is [5, 3) of a dimension of 5");
  r = SliceLayout(t, Box({{0, 4}, {0, 5}}));
  EXPECT_EQ(r.status().reason(), "slice has 2 ranges, the tensor 3 dimensions");
}

TEST(SliceLayout, EveryDTypeAllowsRowCuts) {
  for (DType dtype : AllDTypes()) {
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    const uint64_t bits = DTypeBits(dtype);
    const TensorInfo t = Info(dtype, {4, 8});
    const uint64_t row = 8 * bits / 8;
    EXPECT_EQ(LayoutOrDie(t, {}), (Runs{{0, 4 * row, 4 * row, 1}}));
    EXPECT_EQ(LayoutOrDie(t, Box({{1, 3}, {0, 8}})), (Runs{{row, 2 * row, 2 * row, 1}}));
    if (bits % 8 == 0) {
      const uint64_t e = bits / 8;
      EXPECT_EQ(LayoutOrDie(t, Box({{0, 4}, {3, 6}})), (Runs{{3 * e, 3 * e, row, 4}}));
    }
  }
}

TEST(SliceLayout, SubByteDTypesRefuseCutsInsideAByte) {
  const TensorInfo f4 = Info(DType::kF4, {4, 8});  // rows of 4 bytes
  EXPECT_EQ(LayoutOrDie(f4, Box({{0, 4}, {2, 6}})), (Runs{{1, 2, 4, 4}}));
  EXPECT_EQ(LayoutOrDie(f4, Box({{1, 2}, {0, 2}})), (Runs{{4, 1, 1, 1}}));
  ExpectInvalid(f4, Box({{0, 4}, {1, 3}}));  // starts inside a byte
  ExpectInvalid(f4, Box({{0, 4}, {2, 5}}));  // ends inside a byte
  Result<Runs> r = SliceLayout(f4, Box({{0, 4}, {1, 3}}));
  EXPECT_NE(r.status().reason().find("cut inside a byte"), std::string::npos);
  EXPECT_NE(r.status().reason().find("F4 elements are 4 bits"), std::string::npos);

  // Rows of 3 elements: 12 bits, so only every other row starts on a byte.
  const TensorInfo odd = Info(DType::kF4, {4, 3});
  EXPECT_EQ(LayoutOrDie(odd, Box({{0, 2}, {0, 3}})), (Runs{{0, 3, 3, 1}}));
  EXPECT_EQ(LayoutOrDie(odd, Box({{2, 4}, {0, 3}})), (Runs{{3, 3, 3, 1}}));
  ExpectInvalid(odd, Box({{1, 2}, {0, 3}}));  // starts at bit 12
  ExpectInvalid(odd, Box({{0, 4}, {0, 2}}));  // rows 12 bits apart

  for (DType f6 : {DType::kF6E2M3, DType::kF6E3M2}) {
    SCOPED_TRACE(std::string(DTypeName(f6)));
    const TensorInfo t = Info(f6, {4, 8});  // rows of 6 bytes
    EXPECT_EQ(LayoutOrDie(t, Box({{0, 4}, {4, 8}})), (Runs{{3, 3, 6, 4}}));
    ExpectInvalid(t, Box({{0, 4}, {2, 6}}));  // bit 12
    ExpectInvalid(t, Box({{0, 4}, {0, 2}}));  // rows of 12 bits
  }
}

TEST(SliceLayout, HugeShapesDoNotOverflow) {
  // 2^63 bytes: fits, and offsets are exact.
  const uint64_t n = uint64_t{1} << 21;
  const TensorInfo t = Info(DType::kU8, {n, n, n});
  EXPECT_EQ(LayoutOrDie(t, Box({{n - 1, n}, {0, n}, {5, 6}})),
            (Runs{{(n - 1) * n * n + 5, 1, n, n}}));
  EXPECT_EQ(*SliceBytes(t, Box({{n - 1, n}, {0, n}, {5, 6}})), n);

  // Shapes whose product or size does not fit: an error, never a wrap-around.
  TensorInfo bad = Info(DType::kU8, {1});
  bad.shape = {uint64_t{1} << 32, uint64_t{1} << 32, 2};
  ExpectInvalid(bad, Box({{0, 1}, {0, 1}, {0, 1}}));
  ExpectInvalid(bad, {});
  bad.dtype = DType::kI64;
  bad.shape = {uint64_t{1} << 31, uint64_t{1} << 31};
  ExpectInvalid(bad, Box({{0, 1}, {0, 1}}));
  // A shape disagreeing with the size.
  TensorInfo wrong = Info(DType::kF32, {4, 5});
  wrong.end = 79;
  ExpectInvalid(wrong, {});
}

// Element by element: the dense C-order bytes of the box, for elements of bits % 8 == 0 or F4.
std::vector<uint8_t> ReferenceGather(const std::vector<uint8_t>& src,
                                     const std::vector<uint64_t>& shape,
                                     const std::vector<DimRange>& box, uint64_t bits) {
  std::vector<uint8_t> out;
  uint64_t elements = 1;
  for (const DimRange& r : box) elements *= r.end - r.begin;
  out.resize(elements * bits / 8 + 1, 0);
  std::vector<uint64_t> idx(box.size());
  for (size_t k = 0; k < box.size(); ++k) idx[k] = box[k].begin;
  for (uint64_t j = 0; j < elements; ++j) {
    uint64_t flat = 0;
    for (size_t k = 0; k < shape.size(); ++k) flat = flat * shape[k] + idx[k];
    if (bits == 4) {
      const uint8_t nibble = (src[flat / 2] >> (4 * (flat % 2))) & 0xf;
      out[j / 2] |= static_cast<uint8_t>(nibble << (4 * (j % 2)));
    } else {
      for (uint64_t b = 0; b < bits / 8; ++b) out[j * bits / 8 + b] = src[flat * bits / 8 + b];
    }
    for (size_t k = box.size(); k-- > 0;) {
      if (++idx[k] < box[k].end) break;
      idx[k] = box[k].begin;
    }
  }
  out.resize(elements * bits / 8);
  return out;
}

TEST(SliceLayout, MatchesElementByElementGather) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const DType dtypes[] = {DType::kU8,  DType::kBF16, DType::kF32,
                          DType::kF64, DType::kC64,  DType::kF4};
  for (int iter = 0; iter < 3000; ++iter) {
    const DType dtype = dtypes[rng() % std::size(dtypes)];
    const uint64_t bits = DTypeBits(dtype);
    const size_t rank = bits == 4 ? rng() % 4 + 1 : rng() % 5;
    std::vector<uint64_t> shape(rank);
    for (uint64_t& d : shape) d = rng() % 5 + (rank > 0 && rng() % 8 == 0 ? 0 : 1);
    if (bits == 4 && rank > 0) shape.back() = 2 * (rng() % 3 + 1);  // whole bytes per row
    const TensorInfo t = Info(dtype, shape);
    std::vector<DimRange> box(rank);
    for (size_t k = 0; k < rank; ++k) {
      uint64_t a = rng() % (shape[k] + 1), b = rng() % (shape[k] + 1);
      if (a > b) std::swap(a, b);
      if (bits == 4 && k + 1 == rank) {  // even boundaries on the innermost dimension
        a -= a % 2;
        b -= b % 2;
      }
      box[k] = {a, b};
    }
    const bool whole = rank == 0 || rng() % 10 == 0;
    if (whole) {
      for (size_t k = 0; k < rank; ++k) box[k] = {0, shape[k]};
    }
    SCOPED_TRACE("iteration " + std::to_string(iter));
    std::vector<uint8_t> src(t.size_bytes());
    for (uint8_t& b : src) b = static_cast<uint8_t>(rng());
    Result<Runs> runs = SliceLayout(t, whole ? TensorSlice{} : Box(box));
    ASSERT_TRUE(runs.ok()) << runs.status().ToString();
    std::vector<uint8_t> got;
    uint64_t last_end = 0;
    for (const StridedRun& r : *runs) {
      ASSERT_GT(r.count, 0u);
      ASSERT_GT(r.run_bytes, 0u);
      if (r.count > 1) {
        ASSERT_GT(r.stride_bytes, r.run_bytes);  // compact: rows never touch
      }
      for (uint64_t i = 0; i < r.count; ++i) {
        const uint64_t at = r.offset + i * r.stride_bytes;
        ASSERT_GE(at, last_end);  // file order
        ASSERT_LE(at + r.run_bytes, src.size());
        got.insert(got.end(), src.begin() + at, src.begin() + at + r.run_bytes);
        last_end = at + r.run_bytes;
      }
    }
    EXPECT_EQ(got, ReferenceGather(src, shape, box, bits));
    EXPECT_EQ(*SliceBytes(t, whole ? TensorSlice{} : Box(box)), got.size());
  }
}

}  // namespace
}  // namespace stload::format
