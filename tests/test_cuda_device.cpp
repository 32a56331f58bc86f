// CUDA device enumeration: never throws, and on a machine without a GPU says why. Skipped when this
// build has no CUDA backend.
#include <gtest/gtest.h>

#ifdef RACE_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif

TEST(CudaDevice, QueryReportsDevicesOrWhyNot) {
#ifndef RACE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA toolkit";
#else
  const auto query = race::kernels::cuda::query_devices();
  if (query.devices.empty()) {
    EXPECT_FALSE(query.unavailable_reason.empty());
    GTEST_SKIP() << "no GPU: " << query.unavailable_reason;
  }
  for (const auto& device : query.devices) {
    EXPECT_FALSE(device.name.empty());
    EXPECT_GT(device.memory_bytes, 0);
    EXPECT_GT(device.multiprocessors, 0);
    EXPECT_GT(device.memory_bandwidth_gbs, 100.0);
  }
#endif
}
