// The project's version, from CMake's project(VERSION): the CLI's --version and the Python module's
// __version__ print it, pyproject.toml repeats it (a test checks they agree).
#pragma once

namespace baichuan {

const char* version();

}  // namespace baichuan
