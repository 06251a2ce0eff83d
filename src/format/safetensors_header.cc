#include "format/safetensors_header.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <unordered_set>

#include "format/json_errors.h"
#include "util/checked_math.h"

namespace stload::format {
namespace {

namespace dom = simdjson::dom;

std::string ShapeString(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string RangeString(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

Status TensorError(const std::string& tensor, std::string reason) {
  return CorruptError(std::move(reason)).WithTensor(tensor);
}

// Reads an array of non-negative integers into `out`; `what` names the field in errors.
Status ReadUintArray(dom::element value, std::string_view what, const std::string& tensor,
                     std::vector<uint64_t>& out) {
  dom::array array;
  if (value.get_array().get(array)) {
    return TensorError(tensor, std::string(what) + " is not an array");
  }
  out.reserve(array.size());
  for (dom::element element : array) {
    uint64_t n = 0;
    if (element.get_uint64().get(n)) {
      return TensorError(tensor, std::string(what) +
                                     " holds something other than a non-negative 64-bit integer");
    }
    out.push_back(n);
  }
  return OkStatus();
}

Status ReadTensorEntry(dom::element value, TensorInfo& info) {
  const std::string& name = info.name;
  dom::object object;
  if (value.get_object().get(object)) {
    return TensorError(name, "entry is not an object with dtype, shape and data_offsets");
  }
  bool has_dtype = false, has_shape = false, has_offsets = false;
  for (dom::key_value_pair field : object) {
    if (field.key == "dtype") {
      if (has_dtype) return TensorError(name, "duplicate key 'dtype'");
      has_dtype = true;
      std::string_view dtype_name;
      if (field.value.get_string().get(dtype_name)) {
        return TensorError(name, "dtype is not a string");
      }
      std::optional<DType> dtype = ParseDType(dtype_name);
      if (!dtype) return TensorError(name, "unknown dtype '" + std::string(dtype_name) + "'");
      info.dtype = *dtype;
    } else if (field.key == "shape") {
      if (has_shape) return TensorError(name, "duplicate key 'shape'");
      has_shape = true;
      STLOAD_RETURN_IF_ERROR(ReadUintArray(field.value, "shape", name, info.shape));
    } else if (field.key == "data_offsets") {
      if (has_offsets) return TensorError(name, "duplicate key 'data_offsets'");
      has_offsets = true;
      std::vector<uint64_t> offsets;
      STLOAD_RETURN_IF_ERROR(ReadUintArray(field.value, "data_offsets", name, offsets));
      if (offsets.size() != 2) {
        return TensorError(name, "data_offsets has " + std::to_string(offsets.size()) +
                                     " entries, not 2");
      }
      info.begin = offsets[0];
      info.end = offsets[1];
    } else {
      return TensorError(name, "unknown key '" + std::string(field.key) + "' in tensor entry");
    }
  }
  if (!has_dtype) return TensorError(name, "entry has no dtype");
  if (!has_shape) return TensorError(name, "entry has no shape");
  if (!has_offsets) return TensorError(name, "entry has no data_offsets");
  return OkStatus();
}

Status ReadMetadata(dom::element value, Header& header) {
  if (value.is_null()) return OkStatus();
  dom::object object;
  if (value.get_object().get(object)) {
    return CorruptError("__metadata__ is not an object of string -> string");
  }
  std::unordered_set<std::string_view> seen;  // views into the parser's strings
  for (dom::key_value_pair field : object) {
    std::string_view text;
    if (field.value.get_string().get(text)) {
      return CorruptError("__metadata__ value of '" + std::string(field.key) + "' is not a string");
    }
    if (!seen.insert(field.key).second) {
      return CorruptError("duplicate key '" + std::string(field.key) + "' in __metadata__");
    }
    header.metadata.emplace_back(std::string(field.key), std::string(text));
  }
  return OkStatus();
}

// Rule 4: the JSON text into tensors and metadata, no offset checks yet. The DOM parser validates
// the whole text (UTF-8, grammar, nothing after the object) before anything is read from it.
Status ReadJson(std::string_view text, Header& header) {
  // simdjson's parser keeps its buffers (several bytes per byte of JSON) between documents; reuse
  // saves allocating and first-touching them for every shard. Only parsers sized for ordinary
  // headers are kept, so one huge header does not pin hundreds of MB for the thread's life.
  constexpr size_t kKeepParserBytes = 32u << 20;
  thread_local dom::parser reused_parser;
  dom::parser one_off_parser;
  dom::parser& parser = text.size() <= kKeepParserBytes ? reused_parser : one_off_parser;
  simdjson::padded_string padded(text);
  dom::element root;
  simdjson::error_code err = parser.parse(padded).get(root);
  if (err) return CorruptError("header is not valid JSON: " + JsonErrorText(err));
  dom::object root_object;
  if (root.get_object().get(root_object)) return CorruptError("header is not a JSON object");
  std::unordered_set<std::string_view> keys;  // views into the parser's strings
  keys.reserve(root_object.size());
  header.tensors.reserve(root_object.size());
  for (dom::key_value_pair field : root_object) {
    if (!keys.insert(field.key).second) {
      if (field.key == "__metadata__") return CorruptError("duplicate key '__metadata__'");
      return TensorError(std::string(field.key), "listed twice in the header");
    }
    if (field.key == "__metadata__") {
      STLOAD_RETURN_IF_ERROR(ReadMetadata(field.value, header));
      continue;
    }
    TensorInfo& info = header.tensors.emplace_back();
    info.name = std::string(field.key);
    STLOAD_RETURN_IF_ERROR(ReadTensorEntry(field.value, info));
  }
  return OkStatus();
}

// Rules 5-7.
Status CheckOffsets(Header& header, uint64_t data_bytes) {
  std::vector<TensorInfo>& tensors = header.tensors;
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  const TensorInfo* previous = nullptr;
  for (TensorInfo& t : tensors) {
    if (t.end < t.begin) {
      return TensorError(t.name, "data_offsets " + RangeString(t.begin, t.end) +
                                     " end before they begin");
    }
    if (t.begin != expected_begin) {
      if (t.begin > expected_begin) {
        return TensorError(t.name, "data_offsets " + RangeString(t.begin, t.end) +
                                       " leave a gap: the previous tensor ends at " +
                                       std::to_string(expected_begin));
      }
      return TensorError(t.name, "data_offsets " + RangeString(t.begin, t.end) +
                                     " overlap tensor '" + (previous ? previous->name : "") +
                                     "', which ends at " + std::to_string(expected_begin));
    }
    uint64_t elements = 1;
    for (uint64_t dim : t.shape) {
      if (!CheckedMul(elements, dim, elements)) {
        return TensorError(t.name, "shape " + ShapeString(t.shape) + " overflows 64 bits");
      }
    }
    uint64_t bits = 0;
    if (!CheckedMul(elements, DTypeBits(t.dtype), bits)) {
      return TensorError(t.name, "shape " + ShapeString(t.shape) + " x " +
                                     std::string(DTypeName(t.dtype)) + " overflows 64 bits");
    }
    if (bits % 8 != 0) {
      return TensorError(t.name, "shape " + ShapeString(t.shape) + " x " +
                                     std::string(DTypeName(t.dtype)) + " is " +
                                     std::to_string(bits) + " bits, not a whole number of bytes");
    }
    if (t.end - t.begin != bits / 8) {
      return TensorError(t.name, "data_offsets " + RangeString(t.begin, t.end) + " hold " +
                                     std::to_string(t.end - t.begin) + " bytes but shape " +
                                     ShapeString(t.shape) + " x " +
                                     std::string(DTypeName(t.dtype)) + " is " +
                                     std::to_string(bits / 8) + " bytes");
    }
    if (t.end > data_bytes) {
      return TensorError(t.name, "data_offsets " + RangeString(t.begin, t.end) +
                                     " extend past the data buffer (" +
                                     std::to_string(data_bytes) + " bytes)");
    }
    t.file_offset = header.data_start + t.begin;
    expected_begin = t.end;
    previous = &t;
  }
  if (expected_begin != data_bytes) {
    return CorruptError(std::to_string(data_bytes - expected_begin) +
                        " trailing bytes after the last tensor (the data buffer is " +
                        std::to_string(data_bytes) + " bytes, the tensors end at " +
                        std::to_string(expected_begin) + ")")
        .WithOffset(header.data_start + expected_begin);
  }
  return OkStatus();
}

}  // namespace

Result<uint64_t> ParseHeaderLength(std::span<const std::byte> prefix, uint64_t file_size) {
  if (file_size < kHeaderLengthBytes || prefix.size() < kHeaderLengthBytes) {
    return CorruptError("header too small: the file has " + std::to_string(file_size) +
                        " bytes, fewer than the 8 of the header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(prefix[i]);
  if (n > kMaxHeaderBytes) {
    return CorruptError("header too large: " + std::to_string(n) + " bytes, the limit is " +
                        std::to_string(kMaxHeaderBytes))
        .WithOffset(0);
  }
  // n <= 1e8, so 8 + n cannot overflow.
  if (kHeaderLengthBytes + n > file_size) {
    return CorruptError("invalid header length: " + std::to_string(n) +
                        " bytes of header, but the file has only " + std::to_string(file_size) +
                        " bytes")
        .WithOffset(0);
  }
  return kHeaderLengthBytes + n;
}

Result<Header> ParseHeader(std::span<const std::byte> prefix, uint64_t file_size) {
  STLOAD_ASSIGN_OR_RETURN(uint64_t data_start, ParseHeaderLength(prefix, file_size));
  if (prefix.size() < data_start) {
    return InternalError("ParseHeader was given " + std::to_string(prefix.size()) +
                         " bytes, fewer than the header's " + std::to_string(data_start));
  }
  Header header;
  header.data_start = data_start;
  std::string_view text(reinterpret_cast<const char*>(prefix.data()) + kHeaderLengthBytes,
                        data_start - kHeaderLengthBytes);
  STLOAD_RETURN_IF_ERROR(ReadJson(text, header));
  STLOAD_RETURN_IF_ERROR(CheckOffsets(header, file_size - data_start));
  return header;
}

}  // namespace stload::format
