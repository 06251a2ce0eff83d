#include "format/slice_layout.h"

#include <string>
#include <utility>

#include "util/checked_math.h"

namespace stload::format {
namespace {

std::string Str(uint64_t v) { return std::to_string(v); }

// A run of dimensions of which all but the outermost are taken whole behaves as one dimension:
// its index range is contiguous in the flattened index. `stride_units` is the distance of one step
// of it, `begin`/`length` its range in those steps.
struct Level {
  uint64_t begin = 0;
  uint64_t length = 0;
  uint64_t stride_units = 0;
};

Status CutInsideByte(const TensorInfo& tensor, const std::string& what) {
  return InvalidArgumentError(std::string("cut inside a byte: ")
                                  .append(what)
                                  .append("; ")
                                  .append(DTypeName(tensor.dtype))
                                  .append(" elements are ")
                                  .append(Str(DTypeBits(tensor.dtype)))
                                  .append(" bits"))
      .WithTensor(tensor.name);
}

}  // namespace

Result<std::vector<StridedRun>> SliceLayout(const TensorInfo& tensor, const TensorSlice& slice) {
  const std::vector<uint64_t>& shape = tensor.shape;
  // Arithmetic in units: bytes for whole-byte dtypes (so tensors up to 2^64 bytes work), bits
  // for F4 and F6 (where a cut can fall inside a byte); `unit` units per element.
  const uint64_t dtype_bits = DTypeBits(tensor.dtype);
  const uint64_t per_byte = dtype_bits % 8 == 0 ? 1 : 8;
  const uint64_t unit = dtype_bits % 8 == 0 ? dtype_bits / 8 : dtype_bits;
  // Checkpoint has checked that product(shape) * dtype_bits / 8 is the size; a hand-made
  // TensorInfo may not have been, so overflow is still an error here, never a wrap-around.
  uint64_t elements = 1;
  bool empty = false;
  bool overflow = false;
  for (uint64_t d : shape) {
    if (d == 0) empty = true;
    if (!CheckedMul(elements, d, elements)) overflow = true;
  }
  uint64_t total_units = 0;
  if (!empty && (overflow || !CheckedMul(elements, unit, total_units))) {
    return InvalidArgumentError("the tensor's shape overflows 64 bits").WithTensor(tensor.name);
  }
  if (!empty && (total_units % per_byte != 0 || total_units / per_byte != tensor.size_bytes())) {
    return InvalidArgumentError(std::string("the tensor's shape is ")
                                    .append(Str(total_units))
                                    .append(per_byte == 1 ? " bytes" : " bits")
                                    .append(" but it holds ")
                                    .append(Str(tensor.size_bytes()))
                                    .append(" bytes"))
        .WithTensor(tensor.name);
  }

  std::vector<StridedRun> runs;
  if (slice.whole()) {
    if (!empty && tensor.size_bytes() > 0) {
      runs.push_back({0, tensor.size_bytes(), tensor.size_bytes(), 1});
    }
    return runs;
  }
  if (slice.dims.size() != shape.size()) {
    return InvalidArgumentError(std::string("slice has ")
                                    .append(Str(slice.dims.size()))
                                    .append(" ranges, the tensor ")
                                    .append(Str(shape.size()))
                                    .append(" dimensions"))
        .WithTensor(tensor.name);
  }
  bool no_elements = false;
  for (size_t k = 0; k < shape.size(); ++k) {
    const DimRange& r = slice.dims[k];
    if (r.begin > r.end || r.end > shape[k]) {
      return InvalidArgumentError(std::string("range ")
                                      .append(Str(k))
                                      .append(" is [")
                                      .append(Str(r.begin))
                                      .append(", ")
                                      .append(Str(r.end))
                                      .append(") of a dimension of ")
                                      .append(Str(shape[k])))
          .WithTensor(tensor.name);
    }
    if (r.begin == r.end) no_elements = true;
  }
  if (no_elements) return runs;  // also every tensor with a zero-size dimension

  // Collapse dimensions into levels, innermost first: a dimension taken whole joins the level
  // outside it. Every level but the outermost is then cut, so no two levels merge further.
  // Products stay below total_units, which fits.
  std::vector<Level> levels;    // innermost first
  uint64_t inner_units = unit;  // units of one step of dimension k
  uint64_t group_steps = 1;     // steps of the current level per step of dimension k
  uint64_t group_units = unit;  // stride of the current level
  for (size_t k = shape.size(); k-- > 0;) {
    const DimRange& r = slice.dims[k];
    const bool whole = r.begin == 0 && r.end == shape[k];
    if (whole && k > 0) {
      group_steps *= shape[k];
      inner_units *= shape[k];
      continue;
    }
    levels.push_back({r.begin * group_steps, (r.end - r.begin) * group_steps, group_units});
    inner_units *= shape[k];
    group_steps = 1;
    group_units = inner_units;
  }

  // Levels of length 1 only move the start; the innermost gives the run, the next the stride.
  uint64_t base_units = 0;
  std::vector<Level> outer;  // levels of length > 1 beyond the strided one, innermost first
  const Level& run_level = levels.front();
  base_units += run_level.begin * run_level.stride_units;
  const uint64_t run_units = run_level.length * run_level.stride_units;
  Level strided{0, 1, run_units};
  bool have_strided = false;
  for (size_t i = 1; i < levels.size(); ++i) {
    const Level& l = levels[i];
    base_units += l.begin * l.stride_units;
    if (l.length == 1) continue;
    if (!have_strided) {
      strided = l;
      have_strided = true;
    } else {
      outer.push_back(l);
    }
  }
  if (run_units % per_byte != 0) {
    return CutInsideByte(
        tensor, std::string("a row of the slice is ").append(Str(run_units)).append(" bits"));
  }
  if (strided.length > 1 && strided.stride_units % per_byte != 0) {
    return CutInsideByte(tensor, std::string("rows of the slice are ")
                                     .append(Str(strided.stride_units))
                                     .append(" bits apart"));
  }
  for (const Level& l : outer) {
    if (l.stride_units % per_byte != 0) {
      return CutInsideByte(tensor, std::string("blocks of the slice are ")
                                       .append(Str(l.stride_units))
                                       .append(" bits apart"));
    }
  }
  if (base_units % per_byte != 0) {
    return CutInsideByte(
        tensor,
        std::string("the slice starts at bit ").append(Str(base_units)).append(" of the tensor"));
  }

  const uint64_t run_bytes = run_units / per_byte;
  const uint64_t stride_bytes = strided.length > 1 ? strided.stride_units / per_byte : run_bytes;
  // One StridedRun per combination of the outer levels' indices, in C order (outermost slowest).
  std::vector<uint64_t> index(outer.size(), 0);
  while (true) {
    uint64_t offset_units = base_units;
    for (size_t i = 0; i < outer.size(); ++i) offset_units += index[i] * outer[i].stride_units;
    runs.push_back({offset_units / per_byte, run_bytes, stride_bytes, strided.length});
    size_t i = 0;
    while (i < outer.size() && ++index[i] == outer[i].length) index[i++] = 0;
    if (i == outer.size()) break;
  }
  return runs;
}

Result<uint64_t> SliceBytes(const TensorInfo& tensor, const TensorSlice& slice) {
  STLOAD_ASSIGN_OR_RETURN(std::vector<StridedRun> runs, SliceLayout(tensor, slice));
  uint64_t total = 0;
  for (const StridedRun& r : runs) total += r.bytes();  // at most the tensor's size
  return total;
}

}  // namespace stload::format
