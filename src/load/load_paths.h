// The two loads, split where a distributed load steps in: plan what this rank reads, then run
// that plan through a read policy (the checkpoint's files, or the sources an exchange fills).
// Loader::Open and LoadInto are these steps back to back. Not public API.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "load/read_plan.h"
#include "load/read_policy.h"
#include "stload/loader.h"

namespace stload::load {

// The streaming load's plan: this rank's parts (every tensor without rank-aware keys) in
// config.order, grouped and chunked as Loader::Open reads them, aligned to `alignment`.
struct StreamPlan {
  ReadPlan plan;
  // TensorInfo of each part by request position (whole tensors' entries unused).
  std::shared_ptr<std::vector<TensorInfo>> part_infos;
  uint64_t tensors_skipped = 0;
};
Result<StreamPlan> PlanStream(const Checkpoint& checkpoint, const LoadConfig& config,
                              uint32_t alignment);

// Starts a Loader on `plan`, reading through `policy` (whose alignment the plan has). `warnings`
// go into its stats. `on_cancel` runs when Loader::Cancel is called (before the engine cancels).
Result<Loader> StartStream(const Checkpoint& checkpoint, const LoadConfig& config, StreamPlan plan,
                           std::shared_ptr<const ReadPolicy> policy,
                           std::vector<std::string> warnings, ProgressFn progress);

// LoadInto's checks of `destinations` against the checkpoint (sizes, kinds), and its plan.
Status CheckDestinations(const Checkpoint& checkpoint, std::span<const Destination> destinations);
Result<ReadPlan> PlanDestinations(const Checkpoint& checkpoint,
                                  std::span<const Destination> destinations,
                                  const LoadConfig& config, uint32_t alignment);

// LoadInto's run of `plan` (from PlanDestinations over the same destinations) through `policy`.
// Fills report.status and report.stats (keeping warnings already there).
void RunDestinations(const Checkpoint& checkpoint, std::span<const Destination> destinations,
                     const LoadIntoOptions& options, const ReadPlan& plan,
                     const ReadPolicy& policy, LoadReport& report);

}  // namespace stload::load
