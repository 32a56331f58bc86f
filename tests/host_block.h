// A CUDA thread block emulated on the host, for the block programs of kernels/cuda (race_tile.h, warp_mma.h,
// race_span.h): `lanes` lanes (a multiple of 32), a barrier as __syncthreads, and per warp of 32 lanes an
// emulation of the tensor-core instruction mma.sync.m16n8k8.row.col.f32.tf32.tf32.f32 that CudaBlock runs on
// the GPU. Used by test_race_tile.cpp and test_warp_mma.cpp.
//
// Lanes are fibers (ucontext), not threads: the tile products meet at a warp barrier on every instruction,
// thousands of times per chunk, and OS threads on a 2-core CI machine took about a millisecond per meeting.
// Fibers switch in user space on one thread. Each lane runs until it waits at a barrier, then the next lane
// runs, in lane order; so within one barrier interval lane 0 runs to its end before lane 1 starts, and a
// missing barrier shows deterministically as a read of another lane's not yet written (NaN) result.
//
// The emulated instruction gathers the 32 lanes' fragment registers and decodes them with the PTX ISA's
// m16n8k8 .tf32 layout, written out here independently of warp_mma.h (which builds the fragments), so a wrong
// fragment index on either side makes the products wrong and the tests fail.
#pragma once

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

namespace race::test {

constexpr int kWarpLanes = 32;

// Runs `lanes` fibers on the calling thread, each until it finishes or waits (yield), in lane order. A waiting
// lane switches straight to the next unfinished one (one context switch per wait, not two through a scheduler).
class FiberScheduler {
 public:
  FiberScheduler(int lanes, std::function<void(int)> body) : body_(std::move(body)), fibers_(lanes), alive_(lanes) {
    for (int lane = 0; lane < lanes; ++lane) {
      Fiber& f = fibers_[static_cast<size_t>(lane)];
      f.stack.reset(new char[kStackBytes]);
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack.get();
      f.context.uc_stack.ss_size = kStackBytes;
      f.context.uc_link = nullptr;  // entry never returns: it switches to the next lane or back to run()
      // makecontext passes int arguments only: the scheduler as two 32-bit halves.
      const auto self = reinterpret_cast<uintptr_t>(this);
      makecontext(&f.context, reinterpret_cast<void (*)()>(&FiberScheduler::entry), 2,
                  static_cast<unsigned>(self >> 32), static_cast<unsigned>(self & 0xffffffffu));
    }
  }

  // Runs the lanes from lane 0 until all have finished.
  void run() {
    if (alive_ == 0) return;
    current_ = 0;
    swapcontext(&caller_, &fibers_[0].context);
  }

  // Called by the running lane while it waits: on to the next unfinished lane. Aborts when every unfinished lane
  // has waited in turn with no progress (a barrier some lane never reaches, e.g. a warp whose lanes disagree on
  // the number of mma_tf32 calls): a hang on the GPU, a clear failure here.
  void yield() {
    if (++idle_ > 2 * fibers_.size()) {
      std::fprintf(stderr, "host block: deadlock, %d lanes wait at barriers that cannot complete\n", alive_);
      std::abort();
    }
    const int from = current_;
    current_ = next_alive(from);
    if (current_ != from)
      swapcontext(&fibers_[static_cast<size_t>(from)].context, &fibers_[static_cast<size_t>(current_)].context);
  }
  void made_progress() { idle_ = 0; }

 private:
  static constexpr size_t kStackBytes = 64 * 1024;
  struct Fiber {
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    bool done = false;
  };

  int next_alive(int from) const {
    const int count = static_cast<int>(fibers_.size());
    for (int step = 1; step <= count; ++step) {
      const int lane = (from + step) % count;
      if (!fibers_[static_cast<size_t>(lane)].done) return lane;
    }
    return from;
  }

  static void entry(unsigned high, unsigned low) {
    auto* self = reinterpret_cast<FiberScheduler*>((uintptr_t{high} << 32) | uintptr_t{low});
    const int lane = self->current_;
    self->body_(lane);
    self->fibers_[static_cast<size_t>(lane)].done = true;
    self->made_progress();
    if (--self->alive_ == 0) setcontext(&self->caller_);
    self->current_ = self->next_alive(lane);
    setcontext(&self->fibers_[static_cast<size_t>(self->current_)].context);
  }

  std::function<void(int)> body_;
  std::vector<Fiber> fibers_;
  ucontext_t caller_;
  int alive_;
  int current_ = 0;
  size_t idle_ = 0;
};

// A barrier of `participants` fibers of one scheduler.
struct FiberBarrier {
  FiberScheduler* scheduler;
  int participants;
  int arrived = 0;
  uint64_t generation = 0;

  void arrive_and_wait() {
    scheduler->made_progress();
    const uint64_t mine = generation;
    if (++arrived == participants) {
      arrived = 0;
      ++generation;
      return;
    }
    while (generation == mine) scheduler->yield();
  }
};

// One warp's exchange for mma_tf32: each lane writes its registers into slot (its call count % 2), waits for the
// warp, and reads all 32 lanes' registers of that slot. Two slots make one barrier per call enough: a lane
// writes a slot again two calls later, after the next barrier, which every lane reaches only once done reading.
struct HostWarp {
  FiberBarrier barrier;
  uint32_t a[2][kWarpLanes][4];
  uint32_t b[2][kWarpLanes][2];
  int calls[kWarpLanes] = {};
};

struct HostBlock {
  int id, count;
  FiberBarrier* block_barrier;
  HostWarp* warp_state;  // count / 32 of them

  int lane() const { return id; }
  int lanes() const { return count; }
  void sync() const { block_barrier->arrive_and_wait(); }
  int warp() const { return id / kWarpLanes; }
  int warps() const { return count / kWarpLanes; }
  int warp_lane() const { return id % kWarpLanes; }

  // The value of a .tf32 operand register: the hardware reads its sign, exponent and top 10 mantissa bits.
  static float tf32_value(uint32_t bits) {
    bits &= 0xffffe000u;
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
  }

  // d += A (16 x 8) B (8 x 8) with the PTX ISA's fragments for m16n8k8 .tf32 (g = lane / 4, t = lane % 4):
  // A: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4); B: b0 (t, g), b1 (t + 4, g);
  // C, D: c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1). The tf32 products are exact in fp32
  // and are added in k order to the accumulator (the hardware's order of additions is not documented).
  void mma_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) const {
    HostWarp& w = warp_state[warp()];
    const int me = warp_lane(), slot = w.calls[me]++ % 2;
    std::memcpy(w.a[slot][me], a, sizeof w.a[slot][me]);
    std::memcpy(w.b[slot][me], b, sizeof w.b[slot][me]);
    w.barrier.arrive_and_wait();
    float A[16][8], B[8][8];
    for (int l = 0; l < kWarpLanes; ++l) {
      const int g = l / 4, t = l % 4;
      A[g][t] = tf32_value(w.a[slot][l][0]);
      A[g + 8][t] = tf32_value(w.a[slot][l][1]);
      A[g][t + 4] = tf32_value(w.a[slot][l][2]);
      A[g + 8][t + 4] = tf32_value(w.a[slot][l][3]);
      B[t][g] = tf32_value(w.b[slot][l][0]);
      B[t + 4][g] = tf32_value(w.b[slot][l][1]);
    }
    const int g = me / 4, t = me % 4;
    for (int r = 0; r < 4; ++r) {
      const int row = g + (r < 2 ? 0 : 8), col = 2 * t + r % 2;
      float sum = d[r];
      for (int k = 0; k < 8; ++k) sum += A[row][k] * B[k][col];
      d[r] = sum;
    }
  }
};

// Runs program(const HostBlock&) on one emulated block of `lanes` lanes.
template <class Program>
void run_lanes(int lanes, Program program) {
  if (lanes <= 0 || lanes % kWarpLanes != 0) throw std::invalid_argument("run_lanes: lanes must be whole warps");
  std::vector<HostWarp> warps(static_cast<size_t>(lanes / kWarpLanes));
  std::unique_ptr<FiberScheduler> scheduler;
  FiberBarrier barrier{nullptr, lanes};
  scheduler = std::make_unique<FiberScheduler>(
      lanes, [&](int lane) { program(HostBlock{lane, lanes, &barrier, warps.data()}); });
  barrier.scheduler = scheduler.get();
  for (HostWarp& w : warps) w.barrier = FiberBarrier{scheduler.get(), kWarpLanes};
  scheduler->run();
}

}  // namespace race::test
