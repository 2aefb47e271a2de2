// A fingerprint of what a rank runs: the binary, config.json, the checkpoint's tensor table and
// the expert placement.
// Ranks compare fingerprints at start, so a job mixing models or builds is refused.
#pragma once

#include <cstdint>
#include <string>

#include "common/checkpoint.h"
#include "common/placement.h"

namespace moe {

uint64_t Fnv1a(const void* data, size_t n, uint64_t seed = 1469598103934665603ull);

uint64_t BinaryFingerprint();  // of /proc/self/exe
uint64_t ModelFingerprint(const std::string& config_json, const Checkpoint& ckpt);
uint64_t PlacementFingerprint(const Placement& placement);  // who holds which expert blocks

}  // namespace moe
