// How much memory this machine has, for checks that refuse a plan before it runs out of memory.
#pragma once
#include <cstdint>
#include <string>

namespace baichuan {

uint64_t physical_memory_bytes();  // installed RAM (sysconf), 0 if unknown
std::string gibibytes(double bytes);  // "12.3 GiB"

}  // namespace baichuan
