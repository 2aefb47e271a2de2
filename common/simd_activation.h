// SiLU-times-up over 16-lane vectors, written once over `V` like common/simd_matmul.h and
// compiled per instruction set: include only inside an anonymous namespace of a kernels_*.cc.
//
// Every step is one IEEE-754 operation (multiply, add, divide, fused multiply-add, round to
// nearest even, and exponent arithmetic on exact values), so every ISA gives the same bits.
//
//   exp(a), a clamped to [-104, 89] (outside, exp is 0 or infinite in f32 either way):
//     n = round(a * log2(e));  r = a - n ln2 (two fused steps, ln2 split in a short high
//     part and the rest);  exp(r) = 1 + r + r^2 p(r), p of degree 5 on |r| <= ln2 / 2 (the
//     coefficients of the Cephes expf, within 2 ulp of exp);  then times 2^n1 and 2^n2 with
//     n1 = round(n / 2), n2 = n - n1, each a normal power of two: the first product is exact,
//     the second rounds once, into the subnormals or to infinity as exp itself would.
//   silu(g) * u = g / (1 + exp(-g)) * u  (g below -89: g / inf = -0).
//
// V must provide, beyond simd_matmul.h: static V Add(V, V), Sub(V, V), Mul(V, V), Div(V, V),
// Min(V, V), Max(V, V), Round(V) (to nearest, ties to even) and Pow2(V n) (2^n for an integral
// n in [-126, 127]).

template <typename V>
inline V ExpT(V a) {
  a = V::Min(V::Max(a, V::Broadcast(-104.0f)), V::Broadcast(89.0f));
  const V n = V::Round(V::Mul(a, V::Broadcast(1.44269504088896341f)));
  V r = V::Fma(n, V::Broadcast(-0.693359375f), a);
  r = V::Fma(n, V::Broadcast(2.12194440e-4f), r);
  V p = V::Broadcast(1.9875691500e-4f);
  p = V::Fma(p, r, V::Broadcast(1.3981999507e-3f));
  p = V::Fma(p, r, V::Broadcast(8.3334519073e-3f));
  p = V::Fma(p, r, V::Broadcast(4.1665795894e-2f));
  p = V::Fma(p, r, V::Broadcast(1.6666665459e-1f));
  p = V::Fma(p, r, V::Broadcast(5.0000001201e-1f));
  const V e = V::Add(V::Fma(p, V::Mul(r, r), r), V::Broadcast(1.0f));
  const V n1 = V::Round(V::Mul(n, V::Broadcast(0.5f)));
  return V::Mul(V::Mul(e, V::Pow2(n1)), V::Pow2(V::Sub(n, n1)));
}

template <typename V>
inline void SiluMulT(float* gate, const float* up, int64_t n) {
  auto one = [](const V& g, const V& u) {
    const V e = ExpT<V>(V::Mul(g, V::Broadcast(-1.0f)));
    return V::Mul(V::Div(g, V::Add(V::Broadcast(1.0f), e)), u);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) V::Store(gate + i, one(V::Load(gate + i), V::Load(up + i)));
  if (i < n) {
    alignas(64) float g[16] = {}, u[16] = {};
    std::copy(gate + i, gate + n, g);
    std::copy(up + i, up + n, u);
    V::Store(g, one(V::Load(g), V::Load(u)));
    std::copy(g, g + (n - i), gate + i);
  }
}
