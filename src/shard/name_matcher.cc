#include "shard/name_matcher.h"

#include <algorithm>
#include <locale>
#include <mutex>

namespace stload::shard {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::regex CompileRegex(const std::string& pattern) {
  static std::once_flag primed;
  std::call_once(primed, [] {
    const auto& ctype = std::use_facet<std::ctype<char>>(std::locale());
    for (int c = 0; c < 256; ++c) static_cast<void>(ctype.narrow(static_cast<char>(c), '\0'));
  });
  return std::regex(pattern, std::regex::ECMAScript);
}

FirstMatch::FirstMatch(std::span<const std::string> patterns, std::span<const int> groups) {
  regexes_.reserve(patterns.size());
  for (size_t k = 0; k < patterns.size(); ++k) {
    regexes_.push_back(CompileRegex(patterns[k]));
    groups_.push_back(k < groups.size() ? groups[k] : 0);
    has_digit_.push_back(std::any_of(patterns[k].begin(), patterns[k].end(), IsDigit));
  }
}

bool FirstMatch::MatchOne(size_t k, const std::string& name, Memo& out) const {
  std::smatch m;
  if (!std::regex_match(name, m, regexes_[k])) return false;
  out.index = static_cast<int>(k);
  if (const int g = groups_[k]; g > 0 && static_cast<size_t>(g) < m.size() && m[g].matched) {
    out.group_matched = true;
    out.group_begin = static_cast<size_t>(m.position(g));
    out.group_size = static_cast<size_t>(m.length(g));
  }
  return true;
}

FirstMatch::Match FirstMatch::Find(std::string_view name) {
  std::string normalized(name);
  for (char& c : normalized) {
    if (IsDigit(c)) c = '0';
  }
  auto [it, inserted] = memo_.try_emplace(normalized);
  if (inserted) {
    for (size_t k = 0; k < regexes_.size(); ++k) {
      if (!has_digit_[k] && MatchOne(k, normalized, it->second)) break;
    }
  }
  Memo found = it->second;
  const size_t limit = found.index < 0 ? regexes_.size() : static_cast<size_t>(found.index);
  const std::string original(name);
  for (size_t k = 0; k < limit; ++k) {
    Memo direct;
    if (has_digit_[k] && MatchOne(k, original, direct)) {
      found = direct;
      break;
    }
  }
  Match out;
  out.index = found.index;
  out.group_matched = found.group_matched;
  if (found.group_matched) out.group = name.substr(found.group_begin, found.group_size);
  return out;
}

}  // namespace stload::shard
