// The matmul and dot kernels, written once over a 16-lane f32 vector type `V` and compiled
// per instruction set (kernels_generic.cc, kernels_avx2.cc, kernels_avx512.cc). Include only
// inside an anonymous namespace of such a file: each copy is compiled for its own ISA.
//
// The fixed order (common/kernels.h): lane j of an output accumulates x[k] * w[k] for
// k = j, j + 16, j + 32, ... with fused multiply-adds; the tail k >= K/16*16 goes to lanes
// 0..K%16-1; then the lanes are added in the tree 16 -> 8 -> 4 -> 2 -> 1. Every V provides
// exactly this, so every ISA gives the same bits.
//
// Tiling (the same results, other memory traffic): threads take panels of 16 weight rows; for
// each panel, tiles of TR activation rows x TN weight rows run over the whole K, so a panel
// (16 x K x 2 bytes) stays in cache while the activation rows stream past it.
//
// V must provide: static V Zero(); static V Load(const float*); static V LoadBf16(const uint16_t*);
// static V LoadF16(const uint16_t*); static V Fma(V a, V b, V c) (a * b + c, fused);
// static float Reduce(V) (the fixed tree).

// Weight element access by dtype.
struct WF32 {
  using T = float;
  template <typename V> static V Load(const T* p) { return V::Load(p); }
};
struct WBf16 {
  using T = uint16_t;
  template <typename V> static V Load(const T* p) { return V::LoadBf16(p); }
};
struct WF16 {
  using T = uint16_t;
  template <typename V> static V Load(const T* p) { return V::LoadF16(p); }
};

constexpr int kPrefetchBytes = 512;

// TR x TN outputs over the whole K. x rows are ldx apart, w rows ldw apart.
template <typename V, typename W, int TR, int TN>
inline void Tile(const float* x, int64_t ldx, const typename W::T* w, int64_t ldw, int64_t K,
                 float* y, int64_t ldy) {
  V acc[TR][TN];
  for (int r = 0; r < TR; ++r)
    for (int c = 0; c < TN; ++c) acc[r][c] = V::Zero();
  const int64_t k_main = K / 16 * 16;
  for (int64_t k = 0; k < k_main; k += 16) {
    // One activation row (decode) streams its weights once from memory: ask for each 64-byte
    // line kPrefetchBytes ahead, since the hardware prefetcher ramps up slowly on TN short streams.
    if (TR == 1 && k % (64 / sizeof(typename W::T)) == 0)
      for (int c = 0; c < TN; ++c)
        __builtin_prefetch(reinterpret_cast<const char*>(w + c * ldw + k) + kPrefetchBytes);
    V wv[TN];
    for (int c = 0; c < TN; ++c) wv[c] = W::template Load<V>(w + c * ldw + k);
    for (int r = 0; r < TR; ++r) {
      const V xv = V::Load(x + r * ldx + k);
      for (int c = 0; c < TN; ++c) acc[r][c] = V::Fma(xv, wv[c], acc[r][c]);
    }
  }
  if (k_main < K) {
    // The tail through zero-padded copies: padding lanes add 0 * 0, which leaves them as is.
    alignas(64) typename W::T wt[TN][16] = {};
    alignas(64) float xt[TR][16] = {};
    for (int c = 0; c < TN; ++c)
      for (int64_t k = k_main; k < K; ++k) wt[c][k - k_main] = w[c * ldw + k];
    for (int r = 0; r < TR; ++r)
      for (int64_t k = k_main; k < K; ++k) xt[r][k - k_main] = x[r * ldx + k];
    for (int r = 0; r < TR; ++r) {
      const V xv = V::Load(xt[r]);
      for (int c = 0; c < TN; ++c) acc[r][c] = V::Fma(xv, W::template Load<V>(wt[c]), acc[r][c]);
    }
  }
  for (int r = 0; r < TR; ++r)
    for (int c = 0; c < TN; ++c) y[r * ldy + c] = V::Reduce(acc[r][c]);
}

// Rows [t0, T) of x against weight rows [n0, n1) with tiles of TR x TN and the 1-row and
// 1-column remainders.
template <typename V, typename W, int TR, int TN>
inline void PanelRows(const float* x, int64_t T, int64_t ldx, const typename W::T* w, int64_t ldw,
                      int64_t K, int64_t n0, int64_t n1, float* y, int64_t N) {
  int64_t t = 0;
  for (; t + TR <= T; t += TR) {
    int64_t n = n0;
    for (; n + TN <= n1; n += TN)
      Tile<V, W, TR, TN>(x + t * ldx, ldx, w + n * ldw, ldw, K, y + t * N + n, N);
    for (; n < n1; ++n) Tile<V, W, TR, 1>(x + t * ldx, ldx, w + n * ldw, ldw, K, y + t * N + n, N);
  }
  for (; t < T; ++t) {
    int64_t n = n0;
    for (; n + TN <= n1; n += TN)
      Tile<V, W, 1, TN>(x + t * ldx, ldx, w + n * ldw, ldw, K, y + t * N + n, N);
    for (; n < n1; ++n) Tile<V, W, 1, 1>(x + t * ldx, ldx, w + n * ldw, ldw, K, y + t * N + n, N);
  }
}

template <typename V, typename W, int TR, int TN>
inline void MatMulRowsT(const float* x, int64_t T, int64_t ldx, const void* wdata, int64_t ldw,
                        int64_t K, int64_t n0, int64_t n1, float* y, int64_t N) {
  const auto* w = static_cast<const typename W::T*>(wdata);
  constexpr int64_t kPanel = 16;
  for (int64_t p = n0; p < n1; p += kPanel)
    PanelRows<V, W, TR, TN>(x, T, ldx, w, ldw, K, p, std::min(n1, p + kPanel), y, N);
}

// The same for `blocks` column blocks of Kb columns each: y_b [T, N] (y + b * y_block) takes
// columns [b Kb, (b+1) Kb). All blocks of a 16-row panel are done before the next panel, so a
// panel's rows are read once, front to back. With one activation row (decode), each group of TN
// weight rows is walked front to back through all its blocks, so the rows stream as TN long runs.
template <typename V, typename W, int TR, int TN>
inline void MatMulRowsBlockedT(const float* x, int64_t T, int64_t ldx, const void* wdata,
                               int64_t ldw, int64_t Kb, int blocks, int64_t n0, int64_t n1,
                               float* y, int64_t N, int64_t y_block) {
  const auto* w = static_cast<const typename W::T*>(wdata);
  if (T == 1) {
    int64_t n = n0;
    for (; n + TN <= n1; n += TN)
      for (int b = 0; b < blocks; ++b)
        Tile<V, W, 1, TN>(x + b * Kb, ldx, w + n * ldw + b * Kb, ldw, Kb, y + b * y_block + n, N);
    for (; n < n1; ++n)
      for (int b = 0; b < blocks; ++b)
        Tile<V, W, 1, 1>(x + b * Kb, ldx, w + n * ldw + b * Kb, ldw, Kb, y + b * y_block + n, N);
    return;
  }
  constexpr int64_t kPanel = 16;
  for (int64_t p = n0; p < n1; p += kPanel)
    for (int b = 0; b < blocks; ++b)
      PanelRows<V, W, TR, TN>(x + b * Kb, T, ldx, w + b * Kb, ldw, Kb, p, std::min(n1, p + kPanel),
                              y + b * y_block, N);
}

// The entry points of kernels_isa.h for one ISA: tiles of TR x TN, and TR_DECODE x TN_DECODE
// when there is a single activation row (decode).
template <typename V, int TR, int TN, int TN_DECODE>
struct Entry {
  template <typename W>
  static void Rows(const float* x, int64_t T, int64_t ldx, const void* w, int64_t ldw, int64_t K,
                   int64_t n0, int64_t n1, float* y, int64_t N) {
    if (T == 1) return MatMulRowsT<V, W, 1, TN_DECODE>(x, T, ldx, w, ldw, K, n0, n1, y, N);
    MatMulRowsT<V, W, TR, TN>(x, T, ldx, w, ldw, K, n0, n1, y, N);
  }
  template <typename W>
  static void Blocked(const float* x, int64_t T, int64_t ldx, const void* w, int64_t ldw,
                      int64_t Kb, int blocks, int64_t n0, int64_t n1, float* y, int64_t N,
                      int64_t y_block) {
    if (T == 1)
      return MatMulRowsBlockedT<V, W, 1, TN_DECODE>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
    MatMulRowsBlockedT<V, W, TR, TN>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
  }
  static void MatMulRows(const float* x, int64_t T, int64_t ldx, const void* w, DType dtype,
                         int64_t ldw, int64_t K, int64_t n0, int64_t n1, float* y, int64_t N) {
    switch (dtype) {
      case DType::kF32: return Rows<WF32>(x, T, ldx, w, ldw, K, n0, n1, y, N);
      case DType::kBF16: return Rows<WBf16>(x, T, ldx, w, ldw, K, n0, n1, y, N);
      case DType::kF16: return Rows<WF16>(x, T, ldx, w, ldw, K, n0, n1, y, N);
    }
  }
  static void MatMulBlocked(const float* x, int64_t T, int64_t ldx, const void* w, DType dtype,
                            int64_t ldw, int64_t Kb, int blocks, int64_t n0, int64_t n1, float* y,
                            int64_t N, int64_t y_block) {
    switch (dtype) {
      case DType::kF32: return Blocked<WF32>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
      case DType::kBF16: return Blocked<WBf16>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
      case DType::kF16: return Blocked<WF16>(x, T, ldx, w, ldw, Kb, blocks, n0, n1, y, N, y_block);
    }
  }
};

template <typename V>
inline float DotT(const float* a, const float* b, int64_t n) {
  float out;
  Tile<V, WF32, 1, 1>(a, 0, b, 0, n, &out, 0);
  return out;
}

// y[i] += a * x[i] with fused multiply-adds (in index order per element).
template <typename V>
inline void AxpyT(float a, const float* x, float* y, int64_t n) {
  const V av = V::Broadcast(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) V::Store(y + i, V::Fma(av, V::Load(x + i), V::Load(y + i)));
  for (; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}
