// GPU memory bandwidth probe: a read-only sum and a device-to-device copy over buffers far beyond
// the L2 cache, timed with events. Prints the median of R repetitions in GB/s as JSON (the copy
// counts bytes read plus bytes written). Decode on a GPU streams weights once per step, so the
// read figure is its ceiling.  Usage: moe_probe_gpu_bandwidth [--device D] [--mib M] [--reps R]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

#define CHECK(call)                                                                    \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                           \
      std::fprintf(stderr, "moe_probe_gpu_bandwidth: %s: %s\n", #call,                 \
                   cudaGetErrorString(e_));                                            \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

// Each thread sums 16-byte words, four loads in flight per iteration; one word per block is
// written so the loads cannot be dropped.
__global__ void ReadKernel(const uint4* __restrict__ in, size_t n, uint4* __restrict__ sink) {
  uint32_t acc = 0;
  const size_t stride = size_t{gridDim.x} * blockDim.x;
  size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = in[i], b = in[i + stride], c = in[i + 2 * stride], d = in[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^
           d.z ^ d.w;
  }
  for (; i < n; i += stride) acc ^= in[i].x ^ in[i].y ^ in[i].z ^ in[i].w;
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = make_uint4(acc, acc, acc, acc);
}

__global__ void FillKernel(uint4* p, size_t n) {
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    const uint32_t v = static_cast<uint32_t>(i * 2654435761u);
    p[i] = make_uint4(v, v + 1, v + 2, v + 3);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0, reps = 20;
  size_t mib = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--device")) device = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--mib")) mib = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  CHECK(cudaSetDevice(device));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, device));
  const size_t bytes = mib << 20, n = bytes / sizeof(uint4);
  uint4 *a = nullptr, *b = nullptr, *sink = nullptr;
  CHECK(cudaMalloc(&a, bytes));
  CHECK(cudaMalloc(&b, bytes));
  const int blocks = prop.multiProcessorCount * 8, threads = 512;
  CHECK(cudaMalloc(&sink, blocks * sizeof(uint4)));
  FillKernel<<<blocks, threads>>>(a, n);
  CHECK(cudaGetLastError());
  cudaEvent_t t0, t1;
  CHECK(cudaEventCreate(&t0));
  CHECK(cudaEventCreate(&t1));
  std::vector<double> read, copy;
  for (int r = 0; r < reps + 2; ++r) {  // the first two are warm-up
    float ms = 0;
    CHECK(cudaEventRecord(t0));
    ReadKernel<<<blocks, threads>>>(a, n, sink);
    CHECK(cudaEventRecord(t1));
    CHECK(cudaEventSynchronize(t1));
    CHECK(cudaGetLastError());
    CHECK(cudaEventElapsedTime(&ms, t0, t1));
    if (r >= 2) read.push_back(bytes / (ms * 1e-3) / 1e9);
    CHECK(cudaEventRecord(t0));
    CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
    CHECK(cudaEventRecord(t1));
    CHECK(cudaEventSynchronize(t1));
    CHECK(cudaEventElapsedTime(&ms, t0, t1));
    if (r >= 2) copy.push_back(2.0 * bytes / (ms * 1e-3) / 1e9);
  }
  std::printf("{\"device\": \"%s\", \"mib\": %zu, \"reps\": %d, \"read_gb_s\": %.1f, "
              "\"copy_gb_s\": %.1f}\n",
              prop.name, mib, reps, Median(read), Median(copy));
  return 0;
}
