// <immintrin.h> for the AVX-512 kernel files. GCC 12's AVX-512 intrinsics start from
// `_mm512_undefined_*()`, a self-initialised variable that -Wmaybe-uninitialized and -Wuninitialized
// report wherever they are inlined (GCC bug 105593); the warnings are silenced for the header only.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and would warn about the name)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
