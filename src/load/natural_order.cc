#include "load/natural_order.h"

namespace stload::load {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool NaturalLess(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  int zeros_tiebreak = 0;  // first difference in leading zeros, used only if all else is equal
  while (i < a.size() && j < b.size()) {
    if (IsDigit(a[i]) && IsDigit(b[j])) {
      size_t ia = i, jb = j;
      while (ia < a.size() && a[ia] == '0') ++ia;
      while (jb < b.size() && b[jb] == '0') ++jb;
      size_t ea = ia, eb = jb;
      while (ea < a.size() && IsDigit(a[ea])) ++ea;
      while (eb < b.size() && IsDigit(b[eb])) ++eb;
      // Fewer significant digits is the smaller number; equal length compares digit by digit.
      if (ea - ia != eb - jb) return ea - ia < eb - jb;
      int c = a.substr(ia, ea - ia).compare(b.substr(jb, eb - jb));
      if (c != 0) return c < 0;
      if (zeros_tiebreak == 0 && (ia - i) != (jb - j)) zeros_tiebreak = (ia - i) < (jb - j) ? -1 : 1;
      i = ea;
      j = eb;
      continue;
    }
    const unsigned char ca = static_cast<unsigned char>(a[i]);
    const unsigned char cb = static_cast<unsigned char>(b[j]);
    if (ca != cb) return ca < cb;
    ++i;
    ++j;
  }
  if ((a.size() - i) != (b.size() - j)) return (a.size() - i) < (b.size() - j);
  return zeros_tiebreak < 0;
}

}  // namespace stload::load
