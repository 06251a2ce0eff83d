// Reading and writing rules files (include/stload/sharding.h).
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <unordered_set>

#include "shard/model_config.h"
#include "shard/name_matcher.h"
#include "shard/presets.h"
#include "stload/load_config.h"
#include "stload/sharding.h"

namespace stload {
namespace {

Status RulesError(const std::string& why) { return InvalidArgumentError("rules: " + why); }

std::string RuleName(size_t index, std::string_view match) {
  std::string name = "rule " + std::to_string(index + 1);
  if (!match.empty()) name += " (\"" + std::string(match) + "\")";
  return name;
}

// The number of capture groups of `pattern`, or an error when it is no valid regex.
Result<unsigned> CompileForCheck(const std::string& pattern, const std::string& who) {
  try {
    const std::regex re = shard::CompileRegex(pattern);
    return static_cast<unsigned>(re.mark_count());
  } catch (const std::regex_error& e) {
    return RulesError(who + ": 'match' is not a valid regular expression: " + e.what());
  }
}

Result<uint64_t> GetPositive(simdjson::dom::element value, const std::string& who,
                             std::string_view key, uint64_t min) {
  int64_t n = 0;
  if (value.get_int64().get(n) || n < static_cast<int64_t>(min)) {
    return RulesError(who + ": '" + std::string(key) + "' must be an integer >= " +
                      std::to_string(min));
  }
  return static_cast<uint64_t>(n);
}

Result<bool> GetTrue(simdjson::dom::element value, const std::string& who, std::string_view key) {
  bool b = false;
  if (value.get_bool().get(b) || !b) {
    return RulesError(who + ": '" + std::string(key) + "' must be true (leave it out otherwise)");
  }
  return true;
}

Result<ShardingRule> ParseRule(simdjson::dom::element element, size_t index) {
  simdjson::dom::object object;
  if (element.get_object().get(object)) {
    return RulesError(RuleName(index, "") + " must be a JSON object");
  }
  ShardingRule rule;
  std::string_view match;
  if (simdjson::dom::element m; !object["match"].get(m)) {
    if (m.get_string().get(match)) {
      return RulesError(RuleName(index, "") + ": 'match' must be a string");
    }
    rule.match = std::string(match);
  } else {
    return RulesError(RuleName(index, "") + " has no 'match'");
  }
  const std::string who = RuleName(index, match);
  std::unordered_set<std::string_view> seen;
  for (simdjson::dom::key_value_pair field : object) {
    const std::string_view key = field.key;
    if (!seen.insert(key).second) return RulesError(who + ": '" + std::string(key) + "' given twice");
    if (key == "match") continue;
    if (key == "split") {
      STLOAD_ASSIGN_OR_RETURN(uint64_t d, GetPositive(field.value, who, key, 0));
      if (d > 64) return RulesError(who + ": 'split' must be a dimension from 0 to 64");
      rule.split = static_cast<int>(d);
    } else if (key == "parts") {
      STLOAD_ASSIGN_OR_RETURN(rule.parts, GetPositive(field.value, who, key, 1));
    } else if (key == "pad_to") {
      STLOAD_ASSIGN_OR_RETURN(rule.pad_to, GetPositive(field.value, who, key, 1));
    } else if (key == "block") {
      STLOAD_ASSIGN_OR_RETURN(rule.block, GetPositive(field.value, who, key, 1));
    } else if (key == "replicate") {
      STLOAD_ASSIGN_OR_RETURN(rule.replicate, GetTrue(field.value, who, key));
    } else if (key == "skip") {
      STLOAD_ASSIGN_OR_RETURN(rule.skip, GetTrue(field.value, who, key));
    } else if (key == "expert") {
      STLOAD_ASSIGN_OR_RETURN(uint64_t g, GetPositive(field.value, who, key, 1));
      if (g > 1000) return RulesError(who + ": 'expert' must be a capture group number");
      rule.expert = static_cast<int>(g);
    } else if (key == "num_experts") {
      STLOAD_ASSIGN_OR_RETURN(rule.num_experts, GetPositive(field.value, who, key, 1));
    } else {
      return RulesError(who + ": unknown key '" + std::string(key) +
                        "' (known: match, split, parts, pad_to, block, replicate, expert, "
                        "num_experts, skip)");
    }
  }
  const int actions = int{rule.split.has_value()} + int{rule.replicate} + int{rule.skip};
  if (actions == 0 && !rule.expert) {
    return RulesError(who + " has no action (one of 'split', 'replicate', 'skip', 'expert')");
  }
  if (actions > 1 || (rule.skip && rule.expert)) {
    return RulesError(who + " has two actions (give one of 'split', 'replicate', 'skip')");
  }
  if (!rule.split && (rule.parts || rule.pad_to || rule.block)) {
    return RulesError(who + ": 'parts', 'pad_to' and 'block' need 'split'");
  }
  if (rule.parts && rule.pad_to) return RulesError(who + ": 'parts' and 'pad_to' exclude each other");
  if (rule.num_experts && !rule.expert) return RulesError(who + ": 'num_experts' needs 'expert'");
  STLOAD_ASSIGN_OR_RETURN(unsigned groups, CompileForCheck(rule.match, who));
  if (rule.expert && static_cast<unsigned>(*rule.expert) > groups) {
    return RulesError(who + ": 'expert' names capture group " + std::to_string(*rule.expert) +
                      " but the regex has " + std::to_string(groups));
  }
  return rule;
}

Result<std::vector<std::string>> ParseRegexList(simdjson::dom::element value,
                                                std::string_view key) {
  simdjson::dom::array array;
  if (value.get_array().get(array)) {
    return RulesError("'" + std::string(key) + "' must be a list of regular expressions");
  }
  std::vector<std::string> out;
  for (simdjson::dom::element e : array) {
    std::string_view text;
    if (e.get_string().get(text)) {
      return RulesError("'" + std::string(key) + "' must be a list of regular expressions");
    }
    STLOAD_RETURN_IF_ERROR(
        CompileForCheck(std::string(text), "'" + std::string(key) + "' entry \"" +
                                               std::string(text) + "\"")
            .status());
    out.emplace_back(text);
  }
  return out;
}

void AppendJsonString(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

void AppendRegexList(std::string& out, std::string_view key, const std::vector<std::string>& list) {
  out += ",\n \"";
  out += key;
  out += "\": [";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i) out += ", ";
    AppendJsonString(out, list[i]);
  }
  out += "]";
}

}  // namespace

Result<ShardingRules> ShardingRules::Parse(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  if (simdjson::error_code err = parser.parse(padded).get(root)) {
    return RulesError(std::string("not valid JSON: ") + simdjson::error_message(err));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object)) return RulesError("must be a JSON object");
  ShardingRules rules;
  bool have_rules = false;
  std::unordered_set<std::string_view> seen;
  for (simdjson::dom::key_value_pair field : object) {
    const std::string_view key = field.key;
    if (!seen.insert(key).second) return RulesError("'" + std::string(key) + "' given twice");
    if (key == "rules") {
      simdjson::dom::array array;
      if (field.value.get_array().get(array)) return RulesError("'rules' must be a list");
      for (simdjson::dom::element e : array) {
        STLOAD_ASSIGN_OR_RETURN(ShardingRule rule, ParseRule(e, rules.rules.size()));
        rules.rules.push_back(std::move(rule));
      }
      have_rules = true;
    } else if (key == "default") {
      std::string_view d;
      if (field.value.get_string().get(d) || (d != "replicate" && d != "error")) {
        return RulesError("'default' must be \"replicate\" or \"error\"");
      }
      rules.unmatched = d == "error" ? Default::kError : Default::kReplicate;
    } else if (key == "first_stage") {
      STLOAD_ASSIGN_OR_RETURN(rules.first_stage, ParseRegexList(field.value, key));
    } else if (key == "last_stage") {
      STLOAD_ASSIGN_OR_RETURN(rules.last_stage, ParseRegexList(field.value, key));
    } else if (key == "pp_layers") {
      simdjson::dom::array array;
      if (field.value.get_array().get(array)) {
        return RulesError("'pp_layers' must be a list of layer counts");
      }
      for (simdjson::dom::element e : array) {
        int64_t n = 0;
        if (e.get_int64().get(n) || n < 0) {
          return RulesError("'pp_layers' must be a list of layer counts (integers >= 0)");
        }
        rules.pp_layers.push_back(static_cast<uint64_t>(n));
      }
      if (rules.pp_layers.empty()) return RulesError("'pp_layers' must not be empty");
    } else {
      return RulesError("unknown key '" + std::string(key) +
                        "' (known: rules, default, first_stage, last_stage, pp_layers)");
    }
  }
  if (!have_rules) return RulesError("no 'rules' list");
  return rules;
}

std::string ShardingRules::ToJson() const {
  std::string out = "{\"rules\": [";
  for (size_t i = 0; i < rules.size(); ++i) {
    const ShardingRule& r = rules[i];
    out += i ? ",\n  {" : "\n  {";
    out += "\"match\": ";
    AppendJsonString(out, r.match);
    if (r.expert) out += ", \"expert\": " + std::to_string(*r.expert);
    if (r.num_experts) out += ", \"num_experts\": " + std::to_string(*r.num_experts);
    if (r.split) out += ", \"split\": " + std::to_string(*r.split);
    if (r.parts) out += ", \"parts\": " + std::to_string(*r.parts);
    if (r.pad_to) out += ", \"pad_to\": " + std::to_string(*r.pad_to);
    if (r.block) out += ", \"block\": " + std::to_string(*r.block);
    if (r.replicate) out += ", \"replicate\": true";
    if (r.skip) out += ", \"skip\": true";
    out += "}";
  }
  out += rules.empty() ? "],\n" : "\n ],\n";
  out += " \"default\": ";
  out += unmatched == Default::kError ? "\"error\"" : "\"replicate\"";
  AppendRegexList(out, "first_stage", first_stage);
  AppendRegexList(out, "last_stage", last_stage);
  if (!pp_layers.empty()) {
    out += ",\n \"pp_layers\": [";
    for (size_t i = 0; i < pp_layers.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(pp_layers[i]);
    }
    out += "]";
  }
  out += "}\n";
  return out;
}

Result<ShardingRules> ShardingRules::Resolve(std::string_view spec, const Checkpoint& checkpoint) {
  if (spec.empty()) return RulesError("empty (give a preset name, a rules file or its JSON)");
  for (std::string_view name : ShardingPresetNames()) {
    if (spec != name) continue;
    Result<std::optional<std::string>> config = ReadModelConfig(checkpoint);
    if (!config.ok()) {
      return InvalidArgumentError("preset '" + std::string(spec) +
                                  "': cannot read config.json: " + config.status().ToString());
    }
    if (!*config) {
      return InvalidArgumentError("preset '" + std::string(spec) + "' needs the model's " +
                                  "config.json, and there is none in " +
                                  shard::ModelConfigDirectory(checkpoint));
    }
    return Preset(spec, **config);
  }
  if (spec.front() == '{') return Parse(spec);
  std::error_code ec;
  std::ifstream file;
  if (std::filesystem::is_regular_file(std::string(spec), ec)) {
    file.open(std::string(spec), std::ios::binary);
  }
  if (!file.is_open()) {
    std::string known;
    for (std::string_view name : ShardingPresetNames()) known += (known.empty() ? "" : ", ") + std::string(name);
    return InvalidArgumentError("rules '" + std::string(spec) +
                                "': neither a preset (" + known + ") nor a readable rules file");
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return InvalidArgumentError("rules '" + std::string(spec) + "': cannot read it");
  Result<ShardingRules> rules = Parse(text.str());
  if (!rules.ok()) {
    return InvalidArgumentError(std::string(spec) + ": " + rules.status().reason());
  }
  return rules;
}

}  // namespace stload
