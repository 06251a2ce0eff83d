#include "load/natural_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "synth/synthetic_checkpoint.h"

namespace stload::load {
namespace {

// Exactly one of a < b, b < a: for distinct names, NaturalLess is a strict total order.
testing::AssertionResult OrderedBefore(std::string_view a, std::string_view b) {
  const bool ab = NaturalLess(a, b);
  const bool ba = NaturalLess(b, a);
  if (ab && !ba) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "\"" << a << "\" < \"" << b << "\" is " << ab << ", \""
                                     << b << "\" < \"" << a << "\" is " << ba;
}

TEST(NaturalLess, NumbersCompareByValue) {
  EXPECT_TRUE(OrderedBefore("layers.2", "layers.10"));
  EXPECT_TRUE(OrderedBefore("layers.2.weight", "layers.10.weight"));
  EXPECT_TRUE(OrderedBefore("layers.9.mlp", "layers.10.attn"));  // the number decides first
  EXPECT_TRUE(OrderedBefore("9", "10"));
  EXPECT_TRUE(OrderedBefore("99", "100"));
  EXPECT_TRUE(OrderedBefore("x9y", "x10a"));
  // Numbers longer than 64 bits still compare by value.
  EXPECT_TRUE(OrderedBefore("n99999999999999999999", "n100000000000000000000"));
  EXPECT_TRUE(OrderedBefore("n123456789012345678901", "n123456789012345678902"));
}

TEST(NaturalLess, LettersThenNumbers) {
  EXPECT_TRUE(OrderedBefore("a9", "a10"));
  EXPECT_TRUE(OrderedBefore("a10", "b1"));
  EXPECT_TRUE(OrderedBefore("a9", "b1"));
  EXPECT_TRUE(OrderedBefore("a1b2", "a1b10"));
  EXPECT_TRUE(OrderedBefore("a2b1", "a10b0"));
}

TEST(NaturalLess, EqualNamesAreNotLess) {
  for (std::string_view s : {"", "a", "0", "01", "layers.10.weight", "a01b002"}) {
    EXPECT_FALSE(NaturalLess(s, s)) << s;
  }
}

TEST(NaturalLess, LeadingZerosKeepNamesDistinct) {
  // Equal values with different leading zeros are distinct and ordered by the number of zeros.
  EXPECT_TRUE(OrderedBefore("1", "01"));
  EXPECT_TRUE(OrderedBefore("01", "001"));
  EXPECT_TRUE(OrderedBefore("0", "00"));
  EXPECT_TRUE(OrderedBefore("a1", "a01"));
  EXPECT_TRUE(OrderedBefore("layers.1.w", "layers.01.w"));
  // The zeros only break ties: the value, and anything after the number, come first.
  EXPECT_TRUE(OrderedBefore("01", "2"));
  EXPECT_TRUE(OrderedBefore("9", "010"));
  EXPECT_TRUE(OrderedBefore("a01b", "a1c"));
  EXPECT_TRUE(OrderedBefore("a1b", "a01c"));
  EXPECT_TRUE(OrderedBefore("a01", "a1x"));
  // The first run whose zeros differ decides.
  EXPECT_TRUE(OrderedBefore("1.02", "01.2"));
  EXPECT_TRUE(OrderedBefore("01.2", "01.02"));
}

TEST(NaturalLess, DigitsAgainstOtherCharactersCompareAsBytes) {
  // '.' (0x2e) < digits (0x30-0x39) < 'A' (0x41) < '_' (0x5f) < 'a' (0x61).
  EXPECT_TRUE(OrderedBefore("a.1", "a0"));
  EXPECT_TRUE(OrderedBefore("a.1", "a9"));
  EXPECT_TRUE(OrderedBefore("a9", "aA"));
  EXPECT_TRUE(OrderedBefore("a0", "a_"));
  EXPECT_TRUE(OrderedBefore("a99", "aa"));
  EXPECT_TRUE(OrderedBefore("A", "a"));
  EXPECT_TRUE(OrderedBefore("layers.10", "layers_1"));
}

TEST(NaturalLess, PrefixesComeFirst) {
  EXPECT_TRUE(OrderedBefore("a", "a1"));
  EXPECT_TRUE(OrderedBefore("a1", "a1b"));
  EXPECT_TRUE(OrderedBefore("abc", "abcd"));
  EXPECT_TRUE(OrderedBefore("layers", "layers.0"));
  EXPECT_TRUE(OrderedBefore("layers.1", "layers.1.weight"));
  EXPECT_TRUE(OrderedBefore("1", "1a"));
  EXPECT_TRUE(OrderedBefore("1", "12"));  // a longer number, not a prefix match
}

TEST(NaturalLess, EmptyStringIsSmallest) {
  EXPECT_FALSE(NaturalLess("", ""));
  for (std::string_view s : {"a", "0", "00", ".", " ", "\x01"}) EXPECT_TRUE(OrderedBefore("", s)) << s;
}

TEST(NaturalLess, NonAsciiBytesCompareUnsigned) {
  EXPECT_TRUE(OrderedBefore("a", "\xc3\xa9"));  // 'a' < 0xc3
  EXPECT_TRUE(OrderedBefore("z9", "z\xff"));
}

// Checks that NaturalLess is a strict total order on `names` (distinct strings): irreflexive,
// asymmetric, total, transitive. Transitivity of incomparability follows from totality.
void ExpectStrictTotalOrder(const std::vector<std::string>& names) {
  const size_t n = names.size();
  std::vector<char> less(n * n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) less[i * n + j] = NaturalLess(names[i], names[j]);
  }
  int failures = 0;
  auto report = [&](const std::string& what) {
    if (++failures <= 10) ADD_FAILURE() << what;
  };
  for (size_t i = 0; i < n; ++i) {
    if (less[i * n + i]) report("irreflexivity: \"" + names[i] + "\" < itself");
    for (size_t j = i + 1; j < n; ++j) {
      if (less[i * n + j] && less[j * n + i]) {
        report("asymmetry: \"" + names[i] + "\" and \"" + names[j] + "\" each < the other");
      }
      if (!less[i * n + j] && !less[j * n + i]) {
        report("distinct \"" + names[i] + "\" and \"" + names[j] + "\" compare equal");
      }
    }
  }
  for (size_t a = 0; a < n; ++a) {
    for (size_t b = 0; b < n; ++b) {
      if (!less[a * n + b]) continue;
      for (size_t c = 0; c < n; ++c) {
        if (less[b * n + c] && !less[a * n + c]) {
          report("transitivity: \"" + names[a] + "\" < \"" + names[b] + "\" < \"" + names[c] +
                 "\" but not \"" + names[a] + "\" < \"" + names[c] + "\"");
        }
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(NaturalLess, IsAStrictTotalOrderOnTrickyNames) {
  ExpectStrictTotalOrder({"",       "0",        "00",      "000",     "01",      "001",
                          "1",      "10",       "010",     "9",       "09",      "a",
                          "a0",     "a00",      "a1",      "a01",     "a001",    "a9",
                          "a10",    "a010",     "a1b",     "a01b",    "a1c",     "a01c",
                          "b",      "b1",       "A",       "_",       ".",       "a.1",
                          "a.01",   "a_1",      "1.02",    "01.2",    "01.02",   "1.2",
                          "layers", "layers.0", "layers.1", "layers.01", "layers.2",
                          "layers.10", "layers.10.weight", "layers.2.weight", "layers.02.weight",
                          "n99999999999999999999", "n100000000000000000000", "\xff", "a\xff"});
}

TEST(NaturalLess, IsAStrictTotalOrderOnAllShortStrings) {
  // Every string of length <= 3 over an alphabet of zeros, other digits, a letter and a
  // separator: runs of zeros, numbers next to letters and prefixes in every combination.
  const std::string alphabet = "019a.";
  std::vector<std::string> names = {""};
  for (size_t begin = 0, len = 1; len <= 3; ++len) {
    const size_t end = names.size();
    for (size_t i = begin; i < end; ++i) {
      for (char c : alphabet) names.push_back(names[i] + c);
    }
    begin = end;
  }
  ASSERT_EQ(names.size(), 1u + 5 + 25 + 125);
  ExpectStrictTotalOrder(names);
}

int LayerOf(const std::string& name) {
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return -1;
  return std::stoi(name.substr(prefix.size()));
}

TEST(NaturalLess, SortsShuffledLlamaNamesLayerByLayer) {
  synth::Spec spec;
  spec.preset = synth::Preset::kLlama;
  spec.total_bytes = 64ull << 20;
  Result<std::vector<synth::TensorSpec>> tensors = synth::PlanTensors(spec);
  ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
  std::vector<std::string> names;
  int layers = 0;
  for (const synth::TensorSpec& t : *tensors) {
    names.push_back(t.name);
    layers = std::max(layers, LayerOf(t.name) + 1);
  }
  ASSERT_GE(layers, 12) << "the preset should give at least layers 0..11";

  const uint32_t seed = 20240531;
  SCOPED_TRACE("shuffle seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::shuffle(names.begin(), names.end(), rng);
  std::sort(names.begin(), names.end(), NaturalLess);

  // Layer numbers never go down, and every layer's tensors are together: 0, 1, 2, ..., 10, 11, ...
  std::vector<int> layer_sequence;
  for (const std::string& name : names) {
    const int layer = LayerOf(name);
    if (layer < 0) continue;
    if (layer_sequence.empty() || layer_sequence.back() != layer) layer_sequence.push_back(layer);
  }
  std::vector<int> expected(layers);
  for (int i = 0; i < layers; ++i) expected[i] = i;
  EXPECT_EQ(layer_sequence, expected);

  // Names outside the layers: "lm_head..." < "model.embed_tokens..." < "model.layers..." <
  // "model.norm...".
  EXPECT_EQ(names.front(), "lm_head.weight");
  EXPECT_EQ(names[1], "model.embed_tokens.weight");
  EXPECT_EQ(names.back(), "model.norm.weight");
  // Within a layer, names compare byte by byte.
  const auto first = std::find(names.begin(), names.end(), "model.layers.10.input_layernorm.weight");
  ASSERT_NE(first, names.end());
  const std::vector<std::string> layer10(first, first + 9);
  EXPECT_EQ(layer10, (std::vector<std::string>{
                         "model.layers.10.input_layernorm.weight",
                         "model.layers.10.mlp.down_proj.weight",
                         "model.layers.10.mlp.gate_proj.weight",
                         "model.layers.10.mlp.up_proj.weight",
                         "model.layers.10.post_attention_layernorm.weight",
                         "model.layers.10.self_attn.k_proj.weight",
                         "model.layers.10.self_attn.o_proj.weight",
                         "model.layers.10.self_attn.q_proj.weight",
                         "model.layers.10.self_attn.v_proj.weight",
                     }));
}

TEST(NaturalLess, SortsExplicitLayerList) {
  std::vector<std::string> names;
  for (int i = 0; i <= 11; ++i) names.push_back("layers." + std::to_string(i) + ".weight");
  std::vector<std::string> shuffled = names;
  std::mt19937 rng(7);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  std::sort(shuffled.begin(), shuffled.end(), NaturalLess);
  EXPECT_EQ(shuffled, names);
}

}  // namespace
}  // namespace stload::load
