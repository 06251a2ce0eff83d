// Each subcommand registers its options on the app and returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace stload::cli {

// Runs the subcommand after parsing; returns the exit status. May throw UsageError.
using Runner = std::function<int()>;

Runner AddInspectCommand(CLI::App& app);
Runner AddHashCommand(CLI::App& app);
Runner AddPlanCommand(CLI::App& app);
Runner AddRulesCommand(CLI::App& app);
Runner AddLoadCommand(CLI::App& app);
Runner AddMakeCheckpointCommand(CLI::App& app);
Runner AddBenchCommand(CLI::App& app);

}  // namespace stload::cli
