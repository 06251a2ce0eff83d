// The first of a list of regular expressions that fully matches a tensor name, fast for
// checkpoints of many layers and experts.
//
// std::regex costs microseconds a match, and a checkpoint of 92k tensors times tens of rules is
// seconds. But names repeat: "model.layers.7.mlp.experts.113.down_proj.weight" differs from
// thousands of others only in its digits. A pattern whose source holds no digit character cannot
// tell one digit from another (\d, \w, '.', classes and ranges without digit endpoints treat the
// ten alike), so it matches a name exactly when it matches the name with every digit replaced by
// '0', with capture groups at the same positions. Results for those patterns are kept per such
// normalized name; patterns with digits (e.g. "layers\.61\..*") are matched name by name.
#pragma once

#include <cstdint>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stload::shard {

// std::regex(pattern, ECMAScript), safe to call from several threads at once: libstdc++'s
// ctype<char>::narrow, which the regex scanner calls, fills a per-locale cache lazily without
// synchronisation (GCC bug 77704; ThreadSanitizer reports it when ranks parse rules in threads
// of one process), so the cache of the global locale is filled once first. Throws
// std::regex_error as the constructor does.
std::regex CompileRegex(const std::string& pattern);

class FirstMatch {
 public:
  // `patterns` must be valid ECMAScript regexes. `groups[k]` (if given): the capture group of
  // pattern k whose text Find returns (0: none).
  explicit FirstMatch(std::span<const std::string> patterns, std::span<const int> groups = {});

  struct Match {
    int index = -1;          // the first pattern that matches, -1 for none
    std::string_view group;  // its capture group's text (a view into the name)
    bool group_matched = false;
  };
  // Not thread-safe (the memo).
  Match Find(std::string_view name);

 private:
  struct Memo {
    int index = -1;
    size_t group_begin = 0;
    size_t group_size = 0;
    bool group_matched = false;
  };
  bool MatchOne(size_t k, const std::string& name, Memo& out) const;

  std::vector<std::regex> regexes_;
  std::vector<int> groups_;
  std::vector<bool> has_digit_;
  std::unordered_map<std::string, Memo> memo_;  // normalized name -> first digit-free match
};

}  // namespace stload::shard
