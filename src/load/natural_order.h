// Natural key order for tensor names: runs of digits compare as numbers, so
// "layers.2.weight" < "layers.10.weight"; everything else compares byte by byte.
#pragma once

#include <string_view>

namespace stload::load {

// A strict weak order. Numbers equal in value but written with different leading zeros ("01",
// "1") order by length, so distinct names never compare equal.
bool NaturalLess(std::string_view a, std::string_view b);

}  // namespace stload::load
