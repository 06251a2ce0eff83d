// FirstMatch: the first fully matching pattern, memoized over names that differ only in digits,
// must agree with matching every pattern against every name.
#include "shard/name_matcher.h"

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

namespace stload::shard {
namespace {

// The answer without the memo: every pattern, in order, on the name itself.
int Reference(const std::vector<std::string>& patterns, const std::string& name) {
  for (size_t k = 0; k < patterns.size(); ++k) {
    if (std::regex_match(name, std::regex(patterns[k]))) return static_cast<int>(k);
  }
  return -1;
}

TEST(FirstMatch, AgreesWithMatchingEveryPatternOnEveryName) {
  const std::vector<std::string> patterns = {
      R"((.*\.)?layers\.61\..*)",                 // digits: matched name by name
      R"(.*\.layers\.\d\.mlp\.gate_proj\.weight)",  // one digit only
      R"(.*\.experts\.(\d+)\.down_proj\.weight)",
      R"(.*\.mlp\.[a-z_]+\.weight)",
      R"(model\.layers\.1[0-9]\..*)",              // digits in a class
      R"(.*\.w\d\d)",
      R"(.*)",
  };
  std::vector<std::string> names;
  for (int layer : {0, 1, 7, 9, 10, 15, 19, 61, 610, 161}) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    names.push_back(p + "mlp.gate_proj.weight");
    names.push_back(p + "mlp.up_proj.weight");
    names.push_back(p + "mlp.experts.3.down_proj.weight");
    names.push_back(p + "mlp.experts.117.down_proj.weight");
    names.push_back(p + "self_attn.o_proj.weight");
    names.push_back(p + "x.w12");
    names.push_back(p + "x.w1");
  }
  FirstMatch matcher(patterns);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass answers from the memo
    for (const std::string& name : names) {
      EXPECT_EQ(matcher.Find(name).index, Reference(patterns, name)) << name << " pass " << pass;
    }
  }
}

TEST(FirstMatch, CaptureGroupIsTheNamesOwnText) {
  const std::vector<std::string> patterns = {R"(.*\.experts\.(\d+)\.(gate|up)_proj\.weight)"};
  const std::vector<int> groups = {1};
  FirstMatch matcher(patterns, groups);
  for (const std::string id : {"0", "7", "12", "255", "07"}) {
    const std::string name = "model.layers.3.mlp.experts." + id + ".up_proj.weight";
    const FirstMatch::Match m = matcher.Find(name);
    ASSERT_EQ(m.index, 0) << name;
    EXPECT_TRUE(m.group_matched);
    EXPECT_EQ(m.group, id) << name;
  }
  EXPECT_EQ(matcher.Find("model.layers.3.mlp.experts.x.up_proj.weight").index, -1);
}

TEST(FirstMatch, AnEarlierPatternWithDigitsWinsOverAMemoizedLaterOne) {
  const std::vector<std::string> patterns = {R"(model\.layers\.2\..*)", R"(model\.layers\.\d+\..*)"};
  FirstMatch matcher(patterns);
  EXPECT_EQ(matcher.Find("model.layers.3.norm").index, 1);  // memoizes "model.layers.0.norm"
  EXPECT_EQ(matcher.Find("model.layers.2.norm").index, 0);  // same normalized name
  EXPECT_EQ(matcher.Find("model.layers.5.norm").index, 1);
  EXPECT_EQ(matcher.Find("lm_head.weight").index, -1);
}

TEST(FirstMatch, NoPatternsMatchNothing) {
  FirstMatch matcher({});
  EXPECT_EQ(matcher.Find("anything").index, -1);
}

}  // namespace
}  // namespace stload::shard
