// The matmul and dot kernels, written once over a 16-lane f32 vector type `V` and compiled
// per instruction set (kernels_generic.cc, kernels_avx2.cc, kernels_avx512.cc). Include only
// inside an anonymous namespace of such a file: each copy is compiled for its own ISA.
//
// The matmul order (common/kernels.h): each output is one chain of fused multiply-adds along K,
// acc = fma(x[k], w[k], acc) for k = 0, 1, ..., K-1 from acc = 0. The weights are in panels of
// 16 rows stored column by column, so one vector load gives column k of 16 rows and one
// broadcast of x[k] feeds them all: an outer product per k, no horizontal sums. Every V does
// exactly this, so every ISA gives the same bits, and an output never depends on T or tiling.
//
// Tiling (the same results, other memory traffic): threads take ranges of panels; a tile is
// TR activation rows x TN panels over the whole K, so a group of TN panels stays in cache while
// the activation rows stream past it. One activation row (decode) streams each panel once.
//
// The dot product (attention scores, norms) keeps its own fixed order: lane j accumulates
// a[k] * b[k] for k = j, j + 16, ... with fused multiply-adds, the tail k >= n/16*16 goes to
// lanes 0..n%16-1, then the lanes are added in the tree 16 -> 8 -> 4 -> 2 -> 1.
//
// V must provide: static V Zero(); static V Broadcast(float); static V Load(const float*);
// static void Store(float*, V); static V LoadBf16(const uint16_t*); static V LoadF16(const
// uint16_t*); static V Fma(V a, V b, V c) (a * b + c, fused); static float Reduce(V) (the tree).

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

constexpr int kPrefetchBytes = 1024;

// TR rows x TN panels over k in [0, K). x rows are ldx apart; panel c starts at w + c * ps and
// holds column k at + 16 k. Output j of panel c for row r goes to y[r * ldy + 16 c + j] when
// 16 c + j < valid.
template <typename V, typename W, int TR, int TN>
inline void Tile(const float* x, int64_t ldx, const typename W::T* w, int64_t ps, int64_t K,
                 float* y, int64_t ldy, int64_t valid) {
  using T = typename W::T;
  V acc[TR][TN];
  for (int r = 0; r < TR; ++r)
    for (int c = 0; c < TN; ++c) acc[r][c] = V::Zero();
  constexpr int64_t kLineK = 64 / (16 * sizeof(T)) > 0 ? 64 / (16 * sizeof(T)) : 1;
  for (int64_t k = 0; k < K; ++k) {
    // One activation row (decode) streams its panels once from memory: ask for each 64-byte
    // line kPrefetchBytes ahead, since the hardware prefetcher ramps up slowly on TN streams.
    if (TR == 1 && k % kLineK == 0)
      for (int c = 0; c < TN; ++c)
        __builtin_prefetch(reinterpret_cast<const char*>(w + c * ps + k * 16) + kPrefetchBytes);
    V wv[TN];
    for (int c = 0; c < TN; ++c) wv[c] = W::template Load<V>(w + c * ps + k * 16);
    for (int r = 0; r < TR; ++r) {
      const V xv = V::Broadcast(x[r * ldx + k]);
      for (int c = 0; c < TN; ++c) acc[r][c] = V::Fma(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < TR; ++r)
    for (int c = 0; c < TN; ++c) {
      float* out = y + r * ldy + 16 * c;
      if (16 * (c + 1) <= valid) {
        V::Store(out, acc[r][c]);
      } else {
        alignas(64) float lanes[16];
        V::Store(lanes, acc[r][c]);
        for (int64_t j = 0; j < valid - 16 * c; ++j) out[j] = lanes[j];
      }
    }
}

// Rows [0, T) against TN panels starting at w, in ceil(T / TR) tiles of as equal height as
// can be (33 rows: 7, 7, 7, 6, 6). A short tile leaves few independent chains of fused
// multiply-adds and reconverts the weights for few rows: 8 + 1 rows run at two thirds of the
// speed of 5 + 4.
template <typename V, typename W, int TR, int TN>
inline void PanelGroup(const float* x, int64_t T, int64_t ldx, const typename W::T* w, int64_t ps,
                       int64_t K, float* y, int64_t ldy, int64_t valid) {
  const int64_t tiles = (T + TR - 1) / TR, base = T / tiles, taller = T % tiles;
  for (int64_t i = 0, t = 0; i < tiles; ++i) {
    const int64_t rows = base + (i < taller);
    [&]<int... R>(std::integer_sequence<int, R...>) {
      ((rows == R + 1 ? Tile<V, W, R + 1, TN>(x + t * ldx, ldx, w, ps, K, y + t * ldy, ldy, valid)
                      : void()), ...);
    }(std::make_integer_sequence<int, TR>());
    t += rows;
  }
}

// Panels [p0, p1) of W (panel p at w + p * ps) against x [T, blocks * Kb]: y_b [T, ldy]
// (y + b * y_block) takes columns [b Kb, (b+1) Kb), outputs n in [16 p0, min(16 p1, n_end)).
// A group of TN panels does all its blocks before the next group, so its panels are read
// once, front to back.
template <typename V, typename W, int TR, int TN>
inline void MatMulPanelsT(const float* x, int64_t T, int64_t ldx, const void* wdata, int64_t ps,
                          int64_t Kb, int blocks, int64_t p0, int64_t p1, float* y, int64_t ldy,
                          int64_t n_end, int64_t y_block) {
  const auto* w = static_cast<const typename W::T*>(wdata);
  auto group = [&](int64_t p, auto tn) {
    constexpr int kTN = decltype(tn)::value;
    const int64_t valid = std::min<int64_t>(16 * kTN, n_end - 16 * p);
    for (int b = 0; b < blocks; ++b)
      PanelGroup<V, W, TR, kTN>(x + b * Kb, T, ldx, w + p * ps + b * Kb * 16, ps, Kb,
                                y + b * y_block + 16 * p, ldy, valid);
  };
  int64_t p = p0;
  for (; p + TN <= p1; p += TN) group(p, std::integral_constant<int, TN>());
  // The panels left in one group of their own width, as the rows left in PanelGroup.
  [&]<int... C>(std::integer_sequence<int, C...>) {
    ((p1 - p == C + 1 ? group(p, std::integral_constant<int, C + 1>()) : void()), ...);
  }(std::make_integer_sequence<int, TN - 1>());
}

// The entry point of kernels_isa.h for one ISA: tiles of TR x TN, and 1 x TN_DECODE when there
// is a single activation row (decode).
template <typename V, int TR, int TN, int TN_DECODE>
struct Entry {
  static constexpr int kGroupPanels = TN, kDecodeGroupPanels = TN_DECODE;
  template <typename W>
  static void Panels(const float* x, int64_t T, int64_t ldx, const void* w, int64_t ps,
                     int64_t Kb, int blocks, int64_t p0, int64_t p1, float* y, int64_t ldy,
                     int64_t n_end, int64_t y_block) {
    if (T == 1)
      return MatMulPanelsT<V, W, 1, TN_DECODE>(x, T, ldx, w, ps, Kb, blocks, p0, p1, y, ldy, n_end,
                                               y_block);
    MatMulPanelsT<V, W, TR, TN>(x, T, ldx, w, ps, Kb, blocks, p0, p1, y, ldy, n_end, y_block);
  }
  static void MatMulPanels(const float* x, int64_t T, int64_t ldx, const void* w, DType dtype,
                           int64_t ps, int64_t Kb, int blocks, int64_t p0, int64_t p1, float* y,
                           int64_t ldy, int64_t n_end, int64_t y_block) {
    switch (dtype) {
      case DType::kF32: return Panels<WF32>(x, T, ldx, w, ps, Kb, blocks, p0, p1, y, ldy, n_end, y_block);
      case DType::kBF16: return Panels<WBf16>(x, T, ldx, w, ps, Kb, blocks, p0, p1, y, ldy, n_end, y_block);
      case DType::kF16: return Panels<WF16>(x, T, ldx, w, ps, Kb, blocks, p0, p1, y, ldy, n_end, y_block);
    }
  }
};

// The dot product in its fixed order (above), for n >= 0.
template <typename V>
inline float DotT(const float* a, const float* b, int64_t n) {
  V acc = V::Zero();
  const int64_t main = n / 16 * 16;
  for (int64_t k = 0; k < main; k += 16) acc = V::Fma(V::Load(a + k), V::Load(b + k), acc);
  if (main < n) {
    // The tail through zero-padded copies: padding lanes add 0 * 0, which leaves them as is.
    alignas(64) float at[16] = {}, bt[16] = {};
    for (int64_t k = main; k < n; ++k) {
      at[k - main] = a[k];
      bt[k - main] = b[k];
    }
    acc = V::Fma(V::Load(at), V::Load(bt), acc);
  }
  return V::Reduce(acc);
}

// y[i] += a * x[i] with fused multiply-adds (in index order per element).
template <typename V>
inline void AxpyT(float a, const float* x, float* y, int64_t n) {
  const V av = V::Broadcast(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) V::Store(y + i, V::Fma(av, V::Load(x + i), V::Load(y + i)));
  for (; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}
