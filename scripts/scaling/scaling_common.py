"""Shared by sweep.py, perf_model.py, plots.py and tests/scaling: the synthetic presets' shapes
(common/synthetic.cc), the wire format's sizes (common/wire_format.h), the expert placement
(common/placement.cc, whole experts only) and the conservation checks on one `moe bench --json`.

Only the Python standard library and Debian's python3-numpy.
"""
import json
import math

# Shapes of `moe bench --synthetic NAME` (common/synthetic.cc, from the models' config.json).
PRESETS = {
    "mistral-7b": dict(hidden=4096, ffn=14336, layers=32, heads=32, kv_heads=8, vocab=32000, experts=0),
    "mixtral-8x7b": dict(hidden=4096, ffn=14336, layers=32, heads=32, kv_heads=8, vocab=32000, experts=8),
    "mixtral-8x22b": dict(hidden=6144, ffn=16384, layers=56, heads=48, kv_heads=8, vocab=32768, experts=8),
    "bench-1b": dict(hidden=1024, ffn=3584, layers=8, heads=16, kv_heads=4, vocab=32000, experts=8),
}
TOP_K = 2
WEIGHT_BYTES = 2          # synthetic weights are bf16
ACT_BYTES = 4             # activations, KV cache and the wire are f32
HEADER_BYTES = 32         # sizeof(wire::DispatchHeader) == sizeof(wire::ResultHeader) == 32


def shape(preset):
    s = dict(PRESETS[preset])
    s["head_dim"] = s["hidden"] // s["heads"]
    return s


def row_bytes(k, d):
    """wire::RowBytes: int32 n, int32 expert[K], float weight[K], float hidden[D]."""
    return 4 * (1 + k) + 4 * k + 4 * d


def placement(workers, experts=8):
    """Expert -> rank for whole-expert placement (common/placement.cc, workers <= experts).
    workers == 0: everything on rank 0 (one process)."""
    if workers == 0:
        return [0] * experts
    if workers > experts:
        raise ValueError("the model handles whole-expert placement only (workers <= experts)")
    owner = [0] * experts
    for w in range(workers):
        for e in range(experts * w // workers, experts * (w + 1) // workers):
            owner[e] = w + 1
    return owner


def step_shapes(batch, prompt, gen):
    """Tokens per forward pass of one `moe bench` repetition: one prefill step (chunk == prompt
    for the Mixtral presets, which have no sliding window) and `gen` decode steps."""
    return [batch * prompt] + [batch] * gen


def exchanges_per_rank(layers, micro_batches, batch, prompt, gen, reps):
    """Dispatch exchanges of one run (each is answered by one combine): per forward pass, one
    per layer and micro-batch; a step of one token runs as one micro-batch (Model::Split)."""
    n = 0
    for t in step_shapes(batch, prompt, gen):
        n += layers * (2 if micro_batches == 2 and t >= 2 else 1)
    return n * reps


class ConservationError(RuntimeError):
    pass


def check_conservation(j, preset, layers, workers, batch, prompt, gen, reps, micro_batches):
    """Token and byte conservation of one `moe bench --json` answer; raises ConservationError
    naming every violation. Returns a dict of derived counts."""
    s = shape(preset)
    D, E = s["hidden"], s["experts"]
    st = j["stats"]
    cons = st["conservation"]
    errors = []
    if not cons.get("ok", False):
        errors.append("stats.conservation.ok is false")
    ranks = j["ranks"]
    if ranks != workers + 1 and not (workers == 0 and ranks == 1):
        errors.append(f"ranks {ranks} != workers {workers} + 1")
    tokens = reps * batch * (prompt + gen)
    et = st["expert_tokens"]
    if len(et) != layers:
        errors.append(f"expert_tokens has {len(et)} layers, expected {layers}")
    for l, row in enumerate(et):
        if len(row) != E:
            errors.append(f"layer {l}: {len(row)} experts, expected {E}")
        if sum(row) != tokens * TOP_K:
            errors.append(f"layer {l}: sum(expert_tokens) = {sum(row)} != tokens {tokens} x {TOP_K}")
    for name in ("rows_sent", "rows_received", "vectors_expected", "vectors_returned"):
        m = cons[name]
        if len(m) != layers or any(len(r) != ranks for r in m):
            errors.append(f"conservation.{name} is not [{layers}][{ranks}]")
    for l in range(min(layers, len(cons["rows_sent"]))):
        for r in range(ranks):
            if cons["rows_sent"][l][r] != cons["rows_received"][l][r]:
                errors.append(f"layer {l} rank {r}: rows sent {cons['rows_sent'][l][r]} != received "
                              f"{cons['rows_received'][l][r]}")
            if cons["vectors_expected"][l][r] != cons["vectors_returned"][l][r]:
                errors.append(f"layer {l} rank {r}: vectors expected {cons['vectors_expected'][l][r]} "
                              f"!= returned {cons['vectors_returned'][l][r]}")
        rows_l = sum(cons["rows_sent"][l])
        # Every token travels as at least one row and at most K rows (whole experts).
        if not tokens <= rows_l <= TOP_K * tokens:
            errors.append(f"layer {l}: {rows_l} rows for {tokens} tokens (expected within [T, {TOP_K}T])")
        # Rows per rank from the placement: a token has a row on rank r iff one of its experts
        # lives there; so rows on r <= tokens routed to r's experts.
        owner = placement(workers, E)
        for r in range(ranks):
            routed = sum(et[l][e] for e in range(E) if owner[e] == r)
            if cons["rows_sent"][l][r] > routed:
                errors.append(f"layer {l} rank {r}: {cons['rows_sent'][l][r]} rows but only {routed} "
                              "token-expert pairs routed there")
    # Bytes: what rank_bytes counted must equal the wire format applied to the row counts.
    n_ex = exchanges_per_rank(layers, micro_batches, batch, prompt, gen, reps)
    rb = row_bytes(TOP_K, D)
    rows_r = [sum(cons["rows_sent"][l][r] for l in range(layers)) for r in range(ranks)]
    vecs_r = [sum(cons["vectors_returned"][l][r] for l in range(layers)) for r in range(ranks)]
    bytes_expected = []
    for r in range(ranks):
        if ranks == 1:  # one process: dispatch counted, the in-process answer is not
            b = rows_r[r] * rb + HEADER_BYTES * n_ex
        elif r == 0:
            b = 0
        else:
            b = rows_r[r] * rb + vecs_r[r] * 4 * D + 2 * HEADER_BYTES * n_ex
        bytes_expected.append(b)
        if st["rank_bytes"][r] != b:
            errors.append(f"rank {r}: rank_bytes {st['rank_bytes'][r]} != {b} expected from "
                          f"{rows_r[r]} rows, {vecs_r[r]} vectors and {n_ex} exchanges")
    if sum(st["rank_rows"]) != sum(rows_r):
        errors.append(f"rank_rows sum {sum(st['rank_rows'])} != rows sent {sum(rows_r)}")
    if errors:
        raise ConservationError("; ".join(errors))
    # Bytes on the wire both ways, per layer pass (dispatch + combine, every rank).
    wire = sum(rows_r[r] * rb + vecs_r[r] * 4 * D + 2 * HEADER_BYTES * n_ex for r in range(ranks))
    return dict(tokens=tokens, exchanges=n_ex, wire_bytes=wire, rows=sum(rows_r))


def load_json_lines(text):
    """The JSON object in `moe bench --json` output (the last line that parses)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the output")


def fmt_s(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.0f} us"
