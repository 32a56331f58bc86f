// Fast, reproducible pseudo-normal fill for benchmark inputs. A long-context sweep fills tens of gigabytes;
// std::normal_distribution does that at a few hundred MB/s on one thread, which would dwarf the kernel time.
// Here each element is a pure function of (stream, index) — a splitmix64 hash — so the fill parallelises
// over OpenMP threads and gives the same tensor for any thread count.
#pragma once

#include <cstdint>

namespace race::bench {

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// data[i] ~ approximately N(0, sigma^2): the Irwin-Hall sum of four 16-bit uniforms from one hash,
// standardised. Its tails stop at +-3.46 sigma, which does not matter for timing or memory.
inline void fill_normal(float* data, std::int64_t n, std::uint64_t stream, float sigma) {
  const std::uint64_t key = splitmix64(stream);
  constexpr float kUnit = 1.f / 65536.f;
  const float scale = sigma * 1.7320508f;  // sqrt(12 / 4): a sum of 4 U(0,1) has variance 1/3
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t h = splitmix64(key ^ static_cast<std::uint64_t>(i));
    const float sum = static_cast<float>(h & 0xffff) + static_cast<float>((h >> 16) & 0xffff) +
                      static_cast<float>((h >> 32) & 0xffff) + static_cast<float>(h >> 48);
    data[i] = (sum * kUnit + 2.f * kUnit - 2.f) * scale;
  }
}

}  // namespace race::bench
