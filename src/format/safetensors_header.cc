#include "format/safetensors_header.h"

#include <simdjson.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <chrono>
#include <cstring>
#include <string_view>
#include <unordered_set>

#include "format/json_errors.h"
#include "util/checked_math.h"

namespace stload::format {
namespace {

namespace dom = simdjson::dom;

// One tensor entry as read from the JSON, before the offset checks. Names are views into the
// parser's string buffer and shapes ranges of one shared pool, so reading a header costs no
// allocation per tensor; TensorInfo (two allocations each) is built only once the file is valid.
struct Entry {
  std::string_view name;
  uint64_t begin = 0;
  uint64_t end = 0;
  size_t shape_pos = 0;  // shape is pool[shape_pos, shape_pos + shape_len)
  uint32_t shape_len = 0;
  uint32_t ordinal = 0;  // position in the header: equal ranges keep header order
  DType dtype = DType::kU8;
};

using ShapeSpan = std::span<const uint64_t>;

// Error messages stay one readable line: a crafted shape may have tens of millions of dimensions.
std::string ShapeString(ShapeSpan shape) {
  constexpr size_t kShown = 8;
  std::string s = "[";
  for (size_t i = 0; i < std::min(shape.size(), kShown); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() > kShown) s += ", ... (" + std::to_string(shape.size()) + " dimensions)";
  return s + "]";
}

// Appends rather than `"[" + std::to_string(...)`: GCC 12 at -O3 warns (-Wrestrict, a false
// positive, GCC bug 105329) on operator+(const char*, std::string&&).
std::string RangeString(uint64_t begin, uint64_t end) {
  std::string s = "[";
  s += std::to_string(begin);
  s += ", ";
  s += std::to_string(end);
  s += ")";
  return s;
}

Status TensorError(std::string_view tensor, std::string reason) {
  return CorruptError(std::move(reason)).WithTensor(std::string(tensor));
}

// The set of tensor names seen so far, for the duplicate-key check: open addressing over indices
// into the entries (whose names are views into the parser's strings), no allocation per key.
// Seeded per process, so that a crafted header cannot aim for collisions: the walk must stay
// linear for a 100 MB header.
class NameSet {
 public:
  // Empties the set for a header of about `expected` tensors.
  void Reset(size_t expected) {
    size_ = 0;
    const size_t capacity = std::max<size_t>(16, std::bit_ceil(2 * expected + 1));
    if (slots_.size() == capacity) {
      std::fill(slots_.begin(), slots_.end(), Slot{});
    } else {
      slots_.assign(capacity, Slot{});
    }
    mask_ = capacity - 1;
  }

  // Adds entries[index]; false when an earlier entry has the same name.
  bool Insert(const std::vector<Entry>& entries, uint32_t index) {
    if (2 * (size_ + 1) > slots_.size()) Grow(entries);
    const std::string_view name = entries[index].name;
    const uint64_t h = Hash(name);
    const uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.index_plus_one == 0) {
        s = {index + 1, tag};
        ++size_;
        return true;
      }
      if (s.tag == tag && entries[s.index_plus_one - 1].name == name) return false;
    }
  }

  // Frees the memory of a set grown for a very large header.
  void Shrink(size_t keep_bytes) {
    if (slots_.size() * sizeof(Slot) > keep_bytes) slots_ = {};
  }

 private:
  struct Slot {
    uint32_t index_plus_one = 0;  // 0: empty
    uint32_t tag = 0;             // the hash's high half
  };

  static uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }

  static uint64_t Seed() {
    static const uint64_t seed = [] {
      uint64_t s = static_cast<uint64_t>(
          std::chrono::steady_clock::now().time_since_epoch().count());
      s ^= static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&s));  // randomized by ASLR
      return Mix(s);
    }();
    return seed;
  }

  // A word at a time (multiply and rotate, as in wyhash and xxh3), one full mix at the end.
  static uint64_t Hash(std::string_view s) {
    constexpr uint64_t kMul = 0x9e3779b97f4a7c15ull;
    uint64_t h = Seed() ^ (s.size() * kMul);
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      h = std::rotl((h ^ word) * kMul, 31);
    }
    if (i < s.size()) {
      uint64_t word = 0;
      std::memcpy(&word, s.data() + i, s.size() - i);
      h = std::rotl((h ^ word) * kMul, 31);
    }
    return Mix(h);
  }

  void Grow(const std::vector<Entry>& entries) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(2 * old.size(), Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.index_plus_one == 0) continue;
      size_t i = Hash(entries[s.index_plus_one - 1].name) & mask_;
      while (slots_[i].index_plus_one != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// "-0" is valid JSON and simdjson reads it as the integer 0, but it is not a non-negative integer
// in the format's sense: the reference (serde_json) reads it as the float -0.0 and rejects the
// file. The DOM keeps no text positions, so the text is scanned for them: the ordinals, among all
// the document's numbers in text order, of those written "-0". The walk reads numbers in text
// order, and a number it does not read ends it with an error (numbers are valid only in shape and
// data_offsets), so counting the numbers it reads tells which is which.
class NegativeZeros {
 public:
  // `text` is valid JSON. Scans it only when a "-0" could be a number, which headers never have.
  explicit NegativeZeros(std::string_view text) {
    if (MayHaveOne(text)) Scan(text);
  }

  // Called for each number the walk reads, in text order: whether it is written "-0".
  bool Next() {
    if (next_ == ordinals_.size()) return false;
    if (ordinals_[next_] != count_++) return false;
    ++next_;
    return true;
  }

 private:
  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

  // A number "-0" comes after '[', ',' or ':' (and whitespace) and is not followed by a fraction
  // or an exponent.
  static bool MayHaveOne(std::string_view text) {
    for (size_t at = text.find("-0"); at != std::string_view::npos; at = text.find("-0", at + 1)) {
      const char after = at + 2 < text.size() ? text[at + 2] : ' ';
      if (after == '.' || after == 'e' || after == 'E') continue;
      size_t before = at;
      while (before > 0 && IsSpace(text[before - 1])) --before;
      if (before > 0 && (text[before - 1] == '[' || text[before - 1] == ',' ||
                         text[before - 1] == ':')) {
        return true;
      }
    }
    return false;
  }

  void Scan(std::string_view text) {
    size_t ordinal = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if (c == '"') {  // skip the string (valid JSON: it ends, escapes are well formed)
        for (++i; i < text.size() && text[i] != '"'; ++i) {
          if (text[i] == '\\') ++i;
        }
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        size_t end = i + 1;
        while (end < text.size() && (std::isdigit(static_cast<unsigned char>(text[end])) ||
                                     text[end] == '.' || text[end] == 'e' || text[end] == 'E' ||
                                     text[end] == '+' || text[end] == '-')) {
          ++end;
        }
        if (end - i == 2 && c == '-' && text[i + 1] == '0') ordinals_.push_back(ordinal);
        ++ordinal;
        i = end - 1;
      }
    }
  }

  std::vector<size_t> ordinals_;
  size_t next_ = 0;   // the next ordinal to meet
  size_t count_ = 0;  // numbers read so far
};

// Reads an array of non-negative integers, calling `add(i, value)` for each. Fails (returning
// false and leaving `not_array` saying why) on anything else; no Status on the success path, which
// runs twice per tensor.
template <typename Add>
bool ReadUintArray(dom::element value, NegativeZeros& zeros, size_t& count, bool& not_array,
                   Add add) {
  dom::array array;
  not_array = value.get_array().get(array) != simdjson::SUCCESS;
  if (not_array) return false;
  count = 0;
  for (dom::element element : array) {
    uint64_t n = 0;
    if (element.get_uint64().get(n) || zeros.Next()) return false;
    add(count++, n);
  }
  return true;
}

Status UintArrayError(std::string_view tensor, std::string_view what, bool not_array) {
  if (not_array) return TensorError(tensor, std::string(what) + " is not an array");
  return TensorError(tensor, std::string(what) +
                                 " holds something other than a non-negative 64-bit integer");
}

Status ReadTensorEntry(dom::element value, Entry& entry, std::vector<uint64_t>& shapes,
                       NegativeZeros& zeros) {
  const std::string_view name = entry.name;
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
      entry.dtype = *dtype;
    } else if (field.key == "shape") {
      if (has_shape) return TensorError(name, "duplicate key 'shape'");
      has_shape = true;
      entry.shape_pos = shapes.size();
      size_t count = 0;
      bool not_array = false;
      if (!ReadUintArray(field.value, zeros, count, not_array,
                         [&](size_t, uint64_t n) { shapes.push_back(n); })) {
        return UintArrayError(name, "shape", not_array);
      }
      // Each element takes at least two bytes of a header of at most 100 MB.
      entry.shape_len = static_cast<uint32_t>(count);
    } else if (field.key == "data_offsets") {
      if (has_offsets) return TensorError(name, "duplicate key 'data_offsets'");
      has_offsets = true;
      uint64_t offsets[2] = {0, 0};
      size_t count = 0;
      bool not_array = false;
      if (!ReadUintArray(field.value, zeros, count, not_array, [&](size_t i, uint64_t n) {
            if (i < 2) offsets[i] = n;
          })) {
        return UintArrayError(name, "data_offsets", not_array);
      }
      if (count != 2) {
        return TensorError(name, "data_offsets has " + std::to_string(count) + " entries, not 2");
      }
      entry.begin = offsets[0];
      entry.end = offsets[1];
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

// Rule 4: the JSON object into entries and metadata, no offset checks yet. The DOM parser has
// validated the whole text (UTF-8, grammar, nothing after the object) before anything is read.
Status ReadJson(std::string_view text, dom::element root, Header& header,
                std::vector<Entry>& entries, std::vector<uint64_t>& shapes, NameSet& names) {
  dom::object root_object;
  if (root.get_object().get(root_object)) return CorruptError("header is not a JSON object");
  // Room for every entry up front. size() saturates at 2^24 - 1 and counts keys whose values may
  // be invalid, so cap it by what the text can hold: a valid entry takes at least 48 bytes
  // ("":{"dtype":"F4","shape":[],"data_offsets":[0,0]}), and a crafted header of 100 MB of
  // "k":0 pairs must not reserve gigabytes.
  const size_t count = std::min<size_t>(root_object.size(), text.size() / 48 + 1);
  names.Reset(count);
  entries.reserve(count);
  shapes.reserve(2 * count);
  NegativeZeros zeros(text);
  bool has_metadata = false;
  for (dom::key_value_pair field : root_object) {
    if (field.key == "__metadata__") {
      if (has_metadata) return CorruptError("duplicate key '__metadata__'");
      has_metadata = true;
      STLOAD_RETURN_IF_ERROR(ReadMetadata(field.value, header));
      continue;
    }
    // At most 100 MB of header, so fewer than 2^32 entries.
    const uint32_t index = static_cast<uint32_t>(entries.size());
    Entry& entry = entries.emplace_back();
    entry.name = field.key;
    entry.ordinal = index;
    if (!names.Insert(entries, index)) return TensorError(field.key, "listed twice in the header");
    STLOAD_RETURN_IF_ERROR(ReadTensorEntry(field.value, entry, shapes, zeros));
  }
  return OkStatus();
}

// Rules 5-7, on entries sorted by (begin, end, header order).
Status CheckOffsets(std::span<const Entry> entries, const std::vector<uint64_t>& shapes,
                    uint64_t data_start, uint64_t data_bytes) {
  uint64_t expected_begin = 0;
  const Entry* previous = nullptr;
  for (const Entry& t : entries) {
    const ShapeSpan shape(shapes.data() + t.shape_pos, t.shape_len);
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
                                     " overlap tensor '" +
                                     (previous ? std::string(previous->name) : "") +
                                     "', which ends at " + std::to_string(expected_begin));
    }
    uint64_t elements = 1;
    for (uint64_t dim : shape) {
      if (!CheckedMul(elements, dim, elements)) {
        return TensorError(t.name, "shape " + ShapeString(shape) + " overflows 64 bits");
      }
    }
    uint64_t bits = 0;
    if (!CheckedMul(elements, DTypeBits(t.dtype), bits)) {
      return TensorError(t.name, "shape " + ShapeString(shape) + " x " +
                                     std::string(DTypeName(t.dtype)) + " overflows 64 bits");
    }
    if (bits % 8 != 0) {
      return TensorError(t.name, "shape " + ShapeString(shape) + " x " +
                                     std::string(DTypeName(t.dtype)) + " is " +
                                     std::to_string(bits) + " bits, not a whole number of bytes");
    }
    if (t.end - t.begin != bits / 8) {
      return TensorError(t.name, "data_offsets " + RangeString(t.begin, t.end) + " hold " +
                                     std::to_string(t.end - t.begin) + " bytes but shape " +
                                     ShapeString(shape) + " x " +
                                     std::string(DTypeName(t.dtype)) + " is " +
                                     std::to_string(bits / 8) + " bytes");
    }
    if (t.end > data_bytes) {
      return TensorError(t.name, "data_offsets " + RangeString(t.begin, t.end) +
                                     " extend past the data buffer (" +
                                     std::to_string(data_bytes) + " bytes)");
    }
    expected_begin = t.end;
    previous = &t;
  }
  if (expected_begin != data_bytes) {
    return CorruptError(std::to_string(data_bytes - expected_begin) +
                        " trailing bytes after the last tensor (the data buffer is " +
                        std::to_string(data_bytes) + " bytes, the tensors end at " +
                        std::to_string(expected_begin) + ")")
        .WithOffset(data_start + expected_begin);
  }
  return OkStatus();
}

bool OffsetOrder(const Entry& a, const Entry& b) {
  if (a.begin != b.begin) return a.begin < b.begin;
  if (a.end != b.end) return a.end < b.end;
  return a.ordinal < b.ordinal;
}

// What one thread keeps between headers: simdjson's parser (its buffers are several bytes per
// byte of JSON) and the entry and shape arrays. Reuse saves allocating and first-touching them
// for every shard. Only sizes for ordinary headers are kept, so one huge header does not pin
// hundreds of MB for the thread's life.
struct Scratch {
  dom::parser parser;
  std::vector<Entry> entries;
  std::vector<uint64_t> shapes;
  NameSet names;
};

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
  std::string_view text(reinterpret_cast<const char*>(prefix.data()) + kHeaderLengthBytes,
                        data_start - kHeaderLengthBytes);

  constexpr size_t kKeepScratchBytes = 32u << 20;
  thread_local Scratch reused;
  Scratch one_off;
  const bool reuse = text.size() <= kKeepScratchBytes;
  Scratch& scratch = reuse ? reused : one_off;
  scratch.entries.clear();
  scratch.shapes.clear();

  // realloc_if_needed: simdjson copies the text into its own padded buffer, kept by the parser.
  dom::element root;
  simdjson::error_code err = scratch.parser.parse(text.data(), text.size(), true).get(root);
  if (err) return CorruptError("header is not valid JSON: " + JsonErrorText(err));

  Header header;
  header.data_start = data_start;
  Status status = ReadJson(text, root, header, scratch.entries, scratch.shapes, scratch.names);
  if (status.ok()) {
    std::vector<Entry>& entries = scratch.entries;
    // Writers list tensors in offset order, so the sort is usually skipped.
    if (!std::is_sorted(entries.begin(), entries.end(), OffsetOrder)) {
      std::sort(entries.begin(), entries.end(), OffsetOrder);
    }
    status = CheckOffsets(entries, scratch.shapes, data_start, file_size - data_start);
  }
  if (status.ok()) {
    header.tensors.reserve(scratch.entries.size());
    for (const Entry& e : scratch.entries) {
      TensorInfo& t = header.tensors.emplace_back();
      t.name = std::string(e.name);
      t.dtype = e.dtype;
      const uint64_t* shape = scratch.shapes.data() + e.shape_pos;
      t.shape = std::vector<uint64_t>(shape, shape + e.shape_len);
      t.begin = e.begin;
      t.end = e.end;
      t.file_offset = data_start + e.begin;
    }
  }
  if (reuse && scratch.entries.capacity() * sizeof(Entry) +
                       scratch.shapes.capacity() * sizeof(uint64_t) > kKeepScratchBytes) {
    scratch.entries = {};
    scratch.shapes = {};
  }
  if (reuse) scratch.names.Shrink(kKeepScratchBytes);
  if (!status.ok()) return status;
  return header;
}

}  // namespace stload::format
