// What the AVX2 and AVX-512 packed products (packed_matmul_avx2.cpp, packed_matmul_avx512.cpp) share
// besides the packed layout (packed_matrix.h): the tile sizes, the prefetch of streamed weights, and
// the wrapper that makes a tile function template a class template run_tiles can take. Included by
// those two files, each compiled for its own ISA, and by bench/read_stream.h for the prefetch distance.
#pragma once
#include <xmmintrin.h>  // _mm_prefetch

#include <cstddef>
#include <cstdint>

namespace baichuan::kernels::packed_tiles {

constexpr int kTileTokens = 4;        // tokens sharing one unpacking of the weights
constexpr int64_t kTileGroups = 16;   // 128 rows, kept in L2 while every token tile passes over them
constexpr size_t kScaleBytes = 16;    // 8 f16 scales at the head of each packed Q4_0 / Q8_0 block

// Decoding streams each weight once from memory: ask for the lines a few blocks ahead, so the
// loads find them in cache (the hardware prefetcher alone leaves one thread short of bandwidth).
// `Stream` is set when the tokens fit in one tile (decoding, also batched): then every weight is used
// once per pass and comes from memory, not from L2.
constexpr size_t kPrefetchAhead = 1024;
template <bool Stream>
inline void prefetch_block(const std::byte* block, size_t bytes) {
  if constexpr (Stream)
    for (size_t line = 0; line < bytes; line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(block + kPrefetchAhead + line), _MM_HINT_T0);
}

}  // namespace baichuan::kernels::packed_tiles

// Name<T, Stream>::fn is fn_<T, Stream> as the file's TileFn<Act_> (a function template cannot be a
// template argument; a class template can).
#define BAICHUAN_PACKED_TILE(Name, fn_, Act_)         \
  template <int T, bool Stream>                       \
  struct Name {                                       \
    using Act = Act_;                                 \
    static constexpr TileFn<Act> fn = fn_<T, Stream>; \
  };
