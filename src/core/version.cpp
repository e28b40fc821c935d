#include "core/version.h"

namespace baichuan {

// BAICHUAN_VERSION is defined for this file only, so a version bump recompiles one file.
const char* version() { return BAICHUAN_VERSION; }

}  // namespace baichuan
