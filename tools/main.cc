// The `stload` command-line tool. Exit status: 0 success; 1 invalid, corrupt or unreadable
// checkpoint; 2 usage error.
#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "cli_common.h"
#include "commands.h"

#ifndef STLOAD_VERSION
#define STLOAD_VERSION "unknown"
#endif

namespace {

// Every exit goes through here: output that could not be written fails the command, as in
// coreutils (`sha256sum > /dev/full`: "sha256sum: write error: No space left on device", 1).
int Finish(int exit_code) {
  using namespace stload::cli;
  if (const int error = FinishStdout(); error != 0) {
    std::cerr << "stload: error: write error: " << std::strerror(error) << "\n";
    return exit_code == kExitOk ? static_cast<int>(kExitBadCheckpoint) : exit_code;
  }
  return exit_code;
}

int Run(int argc, char** argv) {
  using namespace stload::cli;
  CLI::App app{"stload: a fast, strict loader of safetensors checkpoints", "stload"};
  app.set_version_flag("--version", "stload " STLOAD_VERSION);
  app.require_subcommand(1, 1);
  app.failure_message(CLI::FailureMessage::help);

  std::map<CLI::App*, Runner> runners;
  auto add = [&](Runner (*adder)(CLI::App&)) {
    Runner runner = adder(app);
    runners.emplace(app.get_subcommands({}).back(), std::move(runner));
  };
  add(AddInspectCommand);
  add(AddLoadCommand);
  add(AddHashCommand);
  add(AddPlanCommand);
  add(AddRulesCommand);
  add(AddBenchCommand);
  add(AddMakeCheckpointCommand);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // CLI11 reports "stload foo" and "stload --foo" as "A subcommand is required"; name the word
    // it did not know instead.
    std::string message = e.what();
    if (argc >= 2) {
      const std::string first = std::string(argv[1]).substr(0, std::string(argv[1]).find('='));
      bool known = false;
      std::string names;
      for (const CLI::App* command : app.get_subcommands({})) {
        known |= command->check_name(first);
        names += (names.empty() ? "" : ", ") + command->get_name();
      }
      if (!known && first.empty()) {
        message = "empty command (the commands are " + names + ")";
      } else if (!known && first[0] != '-') {
        message = "unknown command '" + first + "' (the commands are " + names + ")";
      } else if (!known && app.get_option_no_throw(first) == nullptr) {
        message = "unknown option '" + first + "'";
      }
    }
    std::cerr << "stload: usage error: " << message << "\n"
              << "Run 'stload --help' or 'stload <command> --help' for usage.\n";
    return kExitUsage;
  }
  try {
    for (auto& [command, runner] : runners) {
      if (command->parsed()) return runner();
    }
  } catch (const UsageError& e) {
    std::cerr << "stload: usage error: " << e.message << "\n";
    return kExitUsage;
  }
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  stload::cli::GuardStandardDescriptors();
  return Finish(Run(argc, argv));
}
