// The plain read that decoding is held to (the memory roofline): every byte loaded once, in the
// widest registers the start-up backend allows (scalar, AVX2, AVX-512), over the project's thread
// pool split as decoding splits a matrix, with the decoding tiles' software prefetch. Anything less
// (the scalar, unprefetched loop this replaced) is a floor decoding can pass, not a ceiling.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/thread_pool.h"
#include "kernels/packed_tiles.h"

namespace baichuan::bench {

// The prefetch distance of the decoding tiles, so the roofline prefetches as they do.
constexpr size_t kDecodePrefetchBytes = kernels::packed_tiles::kPrefetchAhead;

// Sums `bytes` bytes (a multiple of 256) as 64-bit words, prefetching `prefetch` bytes ahead of
// each 64-byte line (0: no software prefetch); returns the sum, so the caller can check that every
// byte was read.
uint64_t read_stream(ThreadPool& pool, const std::byte* data, size_t bytes, size_t prefetch);

}  // namespace baichuan::bench
