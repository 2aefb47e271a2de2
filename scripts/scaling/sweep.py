#!/usr/bin/python3
"""Scaling sweep of `moe bench` on synthetic Mixtral shapes: worker ranks, batch, micro-batches
and router skew, one CSV row per run with its per-phase times; token and byte conservation
checked on every run (the sweep stops with exit status 1 at the first violation).

    /usr/bin/python3 scripts/scaling/sweep.py --quick            # bench-1b, a few minutes
    /usr/bin/python3 scripts/scaling/sweep.py --full             # mixtral-8x22b at 1-2 layers
    /usr/bin/python3 scripts/scaling/sweep.py --full --budget-min 23 --out build/scaling/full

What one run is: `[mpirun -np W+1] moe bench --synthetic PRESET --layers L --prompt 2 --gen G
--batch B --reps R --micro-batches M --router-skew S --json`: per repetition one prefill step of
2B tokens, then G decode steps of B tokens (one per sequence). The step time is B / the median
decode tok/s over the repetitions (decode steps only); the per-phase seconds moe bench sums over
the run are divided by the number of steps (perf_model.py models that mix of 2B- and B-token
steps). Two prompt tokens, BOS and a random one, make the B sequences differ: with --prompt 1
each is BOS alone, they decode identical tokens and the router sends the whole batch to the same
two experts. W = 0 means one process (no mpirun).

Besides the grid it runs:
  * machine probes (build/moe_probe_bandwidth, build/moe_probe_fma) on 1 and 2 threads, at the
    start and at the end -> machine.json;
  * the exchange probe -> exchange.csv: `moe bench` on bench-1b (hidden 1024) with B' = 6 B rows,
    so that each dispatch/combine carries the bytes of B rows x 6144 floats, for B in 1..256 and
    W in 0, 1, 2, 4, 8, uniform routing; dispatch + combine seconds per layer pass against the
    bytes on the wire. This is the runtime's own exchange (pack, counts, bytes point to point,
    unpack, weighted sum), not a bare MPI ping-pong: mpi4py is not available and the project has no
    C++ probe for it.

--full runs the whole grid (5 worker counts x 5 batches x 2 micro-batch settings x 3 skews at
1 layer, plus 2-layer runs) in priority order -- the slices the plots and the model need first,
then the rest of the cartesian product -- and stops starting runs when the next one would end
past --budget-min; the skipped configurations are listed in skipped.csv and on stderr.

Only one mpirun at a time. Outputs under --out (default build/scaling/{quick,full}): runs.csv,
exchange.csv, machine.json, skipped.csv, raw/*.json (every bench answer), sweep.log.
"""
import argparse
import csv
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scaling_common as sc  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")

RUN_FIELDS = [
    "run", "kind", "tags", "preset", "layers", "workers", "ranks", "threads", "batch", "prompt",
    "gen", "reps", "micro_batches", "router_skew", "steps", "step_s", "step_min_s", "step_max_s",
    "decode_tok_s", "decode_tok_s_min", "decode_tok_s_max", "prefill_tok_s", "decode_gb_s",
    "prefill_gflop_s", "forward_s", "attention_s", "routing_s", "dispatch_s", "expert_s",
    "combine_s", "lm_head_s", "moe_wait_s", "exposed_moe_share", "comm_per_layer_s",
    "wire_bytes_per_layer", "rows_per_layer", "rank_rows_max_over_mean", "expert_max_over_mean",
    "layer_passes", "conservation_ok", "load_s", "wall_s", "loadavg_1m", "ext_cores", "our_cores",
    "expert_tokens",
    "rank_rows",
]


def log(msg, logf=None):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, file=sys.stderr, flush=True)
    if logf:
        logf.write(line + "\n")
        logf.flush()


class Config:
    def __init__(self, preset, layers, workers, batch, micro=1, skew="real", gen=None, reps=None,
                 kind="grid", tags=(), prompt=None):
        self.preset, self.layers, self.workers, self.batch = preset, layers, workers, batch
        self.micro, self.skew, self.kind, self.tags = micro, skew, kind, set(tags)
        big = sc.shape(preset)["hidden"] >= 4096
        if gen is None:
            gen = ((10 if batch <= 4 else 6 if batch <= 16 else 4 if batch <= 64 else 2) if big
                   else (8 if batch <= 64 else 4))
        self.gen = gen
        self.reps = reps if reps is not None else (3 if big else 5)
        # Two prompt tokens: BOS and a random one, so that the B sequences differ (with one,
        # every sequence is BOS alone, decodes the same tokens, and the router sends the whole
        # batch to the same two experts). The exchange probe routes uniformly and keeps one.
        self.prompt = prompt if prompt is not None else (1 if kind == "exchange" else 2)

    def key(self):
        return (self.kind, self.preset, self.layers, self.workers, self.batch, self.micro, self.skew)

    def argv(self, moe, threads=0):
        cmd = [moe, "bench", "--synthetic", self.preset, "--layers", str(self.layers),
               "--prompt", str(self.prompt), "--gen", str(self.gen), "--batch", str(self.batch),
               "--reps", str(self.reps), "--micro-batches", str(self.micro),
               "--router-skew", self.skew, "--json"]
        if threads:
            cmd += ["--threads", str(threads)]
        if self.workers > 0:
            cmd = ["mpirun", "--oversubscribe", "-np", str(self.workers + 1)] + cmd
        return cmd

    def describe(self):
        w = "1 process" if self.workers == 0 else f"{self.workers} workers"
        return (f"{self.preset} L={self.layers} {w} B={self.batch} mb={self.micro} "
                f"skew={self.skew} gen={self.gen} reps={self.reps}")

    def guess_seconds(self, history):
        """Wall-time guess to keep to the budget: the slowest similar run so far, else a rough
        analytic figure (synthetic weights at ~4.5 s/GB, ~40 GFLOP/s, ~8 GB/s)."""
        similar = [w for (p, l, b, wk), w in history.items()
                   if p == self.preset and l == self.layers and b == self.batch and
                   (wk == self.workers or self.workers > 0 and wk > 0)]
        if similar:
            return max(similar) * 1.1
        s = sc.shape(self.preset)
        D, F, V, E = s["hidden"], s["ffn"], s["vocab"], s["experts"]
        attn = D * (2 * s["heads"] + 2 * s["kv_heads"]) * s["head_dim"]
        gb = ((E * 3 * D * F + attn) * self.layers + 2 * V * D) * 2 / 1e9
        steps = self.reps * (self.gen + 1)
        flops = 2 * self.batch * (self.layers * (attn + 2 * 3 * D * F) + D * V)
        touched = min(E, 2 * self.batch)
        step_bytes = (self.layers * (attn + touched * 3 * D * F) + D * V) * 2
        step = flops / 40e9 + step_bytes / 8e9
        return 4.5 * gb + 2 + steps * step


def stable_binary(path, wait_s=900):
    """Waits until `path` exists and has not changed for 10 s (others rebuild build/ while we
    run), then returns it."""
    t0 = time.time()
    while True:
        try:
            st = os.stat(path)
            if os.access(path, os.X_OK) and time.time() - st.st_mtime > 10:
                time.sleep(1)
                if os.stat(path).st_mtime == st.st_mtime and os.stat(path).st_size == st.st_size:
                    return path
        except FileNotFoundError:
            pass
        if time.time() - t0 > wait_s:
            raise RuntimeError(f"{path} is missing or still changing after {wait_s} s")
        time.sleep(5)


def snapshot(moe, out):
    """A private copy of the binary for the whole sweep, so that a rebuild of build/moe by
    someone else cannot change (or remove) it between runs."""
    import shutil
    dst_dir = os.path.join(out, "bin")
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, "moe")
    shutil.copy2(stable_binary(moe), dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    return dst


def run_probe(binary, threads, reps, timeout=120):
    out = subprocess.run([binary, "--threads", str(threads), "--reps", str(reps)],
                         capture_output=True, text=True, timeout=timeout, env=ENV)
    if out.returncode != 0:
        raise RuntimeError(f"{binary} failed: {out.stderr.strip()}")
    return sc.load_json_lines(out.stdout)


def machine_probes(build):
    res = {"loadavg": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
           "cores": os.cpu_count()}
    t0, busy0, ours0 = time.time(), cpu_busy_seconds(), children_cpu_seconds()
    for t in (1, 2):
        bw = run_probe(os.path.join(build, "moe_probe_bandwidth"), t, 3)
        fma = run_probe(os.path.join(build, "moe_probe_fma"), t, 2)
        res[f"read_gb_s_t{t}"] = bw["read_gb_s"]
        res[f"triad_gb_s_t{t}"] = bw["triad_gb_s"]
        res[f"fma_gflop_s_t{t}"] = fma["fma_gflop_s"]
    wall = time.time() - t0
    res["ext_cores"] = max(0.0, cpu_busy_seconds() - busy0 - (children_cpu_seconds() - ours0)) / wall
    return res


def cpu_busy_seconds():
    """Seconds of CPU time the whole machine has spent busy (all cores; /proc/stat), steal
    included: time a core was not ours to use."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def external_cores(sample=1.0):
    """Cores other jobs use right now (sampled while we run nothing)."""
    b0, c0, s0 = cpu_busy_seconds(), children_cpu_seconds(), time.process_time()
    time.sleep(sample)
    ours = children_cpu_seconds() - c0 + time.process_time() - s0
    return max(0.0, cpu_busy_seconds() - b0 - ours) / sample


def wait_for_quiet(max_wait, logf, threshold=0.3):
    """Waits (up to max_wait seconds) until other jobs use less than `threshold` cores, so that
    runs are measured on a quiet machine when it can be had. Returns (seconds waited, cores
    other jobs used at the last sample)."""
    t0 = time.time()
    ext = external_cores()
    said = False
    while ext > threshold and time.time() - t0 < max_wait:
        if not said:
            log(f"  other jobs use {ext:.2f} cores; waiting up to {max_wait:.0f} s for a quieter machine", logf)
            said = True
        time.sleep(4)
        ext = external_cores()
    return time.time() - t0, ext


def execute(cfg, moe, raw_dir, run_id, timeout, logf=None):
    """Runs one configuration in its own session; kills that session (only it) on timeout.
    Returns (bench JSON, wall seconds, environment) where environment holds the 1-minute load
    average at the start and the cores that other jobs used on average during the run:
    (machine busy CPU seconds - our processes' CPU seconds) / wall."""
    cmd = cfg.argv(moe)
    t0 = time.time()
    load1 = os.getloadavg()[0]
    busy0, ours0 = cpu_busy_seconds(), children_cpu_seconds()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
    wall = time.time() - t0
    ours = children_cpu_seconds() - ours0
    ext = max(0.0, cpu_busy_seconds() - busy0 - ours) / wall
    envm = dict(loadavg_1m=load1, ext_cores=ext, our_cores=ours / wall)
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}: {' '.join(cmd)}\n{err.strip()[-2000:]}")
    j = sc.load_json_lines(out)
    with open(os.path.join(raw_dir, f"{run_id}.json"), "w") as f:
        json.dump({"argv": cmd, "wall_s": wall, "env": envm, "bench": j}, f)
    return j, wall, envm


def row_from(cfg, j, wall, envm, run_id):
    """One CSV row; raises ConservationError when tokens or bytes are not conserved."""
    derived = sc.check_conservation(j, cfg.preset, cfg.layers, cfg.workers, cfg.batch, cfg.prompt,
                                    cfg.gen, cfg.reps, cfg.micro)
    st = j["stats"]
    sec = st["seconds"]
    steps = cfg.reps * (1 + cfg.gen)
    lp = st["layer_passes"]
    dec = j["decode_tok_s"]
    worker_rows = st["rank_rows"][1:] if cfg.workers > 0 else st["rank_rows"]
    mean_rows = sum(worker_rows) / len(worker_rows)
    et0 = st["expert_tokens"][0]
    r = {
        "run": run_id, "kind": cfg.kind, "tags": "+".join(sorted(cfg.tags)), "preset": cfg.preset,
        "layers": cfg.layers, "workers": cfg.workers, "ranks": j["ranks"],
        "threads": j["threads_rank0"], "batch": cfg.batch, "prompt": cfg.prompt, "gen": cfg.gen,
        "reps": cfg.reps, "micro_batches": cfg.micro, "router_skew": cfg.skew, "steps": steps,
        "step_s": cfg.batch / dec["median"], "step_min_s": cfg.batch / dec["max"],
        "step_max_s": cfg.batch / dec["min"], "decode_tok_s": dec["median"],
        "decode_tok_s_min": dec["min"], "decode_tok_s_max": dec["max"],
        "prefill_tok_s": j["prefill_tok_s"]["median"], "decode_gb_s": j["decode_gb_s"]["median"],
        "prefill_gflop_s": j["prefill_gflop_s"]["median"],
        "forward_s": sec["forward"] / steps,
        "exposed_moe_share": st["exposed_moe_share"],
        "comm_per_layer_s": (sec["dispatch"] + sec["combine"]) / lp,
        "wire_bytes_per_layer": derived["wire_bytes"] / lp,
        "rows_per_layer": derived["rows"] / lp,
        "rank_rows_max_over_mean": max(worker_rows) / mean_rows if mean_rows else 1.0,
        "expert_max_over_mean": max(et0) / (sum(et0) / len(et0)),
        "layer_passes": lp, "conservation_ok": 1, "load_s": j["load_s"], "wall_s": wall,
        "loadavg_1m": envm["loadavg_1m"], "ext_cores": envm["ext_cores"], "our_cores": envm["our_cores"],
        "expert_tokens": json.dumps(st["expert_tokens"]),
        "rank_rows": json.dumps(st["rank_rows"]),
    }
    for k in ("attention", "routing", "dispatch", "expert", "combine", "lm_head", "moe_wait"):
        r[f"{k}_s"] = sec[k] / steps
    return r


# ------------------------------------------------------------------------------------------------
# The grids


def grid(mode):
    """Configurations in priority order (duplicates dropped later)."""
    if mode == "quick":
        P, core_b, extra_b, mb_b, skew_b = "bench-1b", [1, 16, 64], [4, 256], [16, 64], [64]
        full_b = [1, 4, 16, 64, 256]
        depth = [(0, 16, 1, "depth-anchor"), (4, 16, 1, "depth"), (1, 64, 1, "depth"),
                 (8, 1, 1, "depth"), (4, 16, 2, "depth")]
    else:
        P, core_b, extra_b, mb_b, skew_b = "mixtral-8x22b", [1, 16, 256], [4, 64], [16], [16]
        full_b = [1, 4, 16, 64, 256]
        depth = [(0, 16, 1, "depth-anchor"), (4, 1, 1, "depth"), (4, 16, 1, "depth")]
    W = [0, 1, 2, 4, 8]
    out = []
    for b in core_b:                                   # strong scaling x batch
        for w in W:
            out.append(Config(P, 1, w, b, tags=["core"]))
    for b in extra_b:                                  # batch sweep at 4 workers
        out.append(Config(P, 1, 4, b, tags=["batch"]))
    for b in mb_b:                                     # ping-pong against one micro-batch
        for w in (1, 4, 8):
            out.append(Config(P, 1, w, b, micro=2, tags=["micro"]))
    if mode == "full":
        out.append(Config(P, 1, 4, 64, micro=2, tags=["micro"]))
    for b in skew_b:                                   # load imbalance against skew
        for w in (4, 8):
            for s in ("uniform", "zipf:1.2"):
                out.append(Config(P, 1, w, b, skew=s, tags=["skew"]))
    if mode == "full":
        for s in ("uniform", "zipf:1.2"):
            out.append(Config(P, 1, 4, 64, skew=s, tags=["skew"]))
    for w, b, mb, tag in depth:                        # 2 layers: linear in depth?
        out.append(Config(P, 2, w, b, micro=mb, tags=[tag]))
    if mode == "full":                                 # the rest of the cartesian grid
        for s, mb, b, w in itertools.product(["real", "uniform", "zipf:1.2"], [1, 2], full_b, W):
            if mb == 2 and w == 0:
                continue  # one process: nothing to overlap
            out.append(Config(P, 1, w, b, micro=mb, skew=s, tags=["grid"]))
    seen, uniq = {}, []
    for c in out:
        if c.key() in seen:
            seen[c.key()].tags |= c.tags
            continue
        seen[c.key()] = c
        uniq.append(c)
    return uniq


def exchange_grid(mode):
    """bench-1b with 6x the rows: each exchange carries the bytes of B rows x 6144 floats."""
    sizes = [1, 4, 16, 64] if mode == "quick" else [1, 4, 16, 64, 256]
    out = []
    for b in sizes:
        rows = 6 * b
        layers = 4 if rows <= 96 else 2 if rows <= 384 else 1
        gen = 3 if rows <= 384 else 1
        for w in (0, 1, 2, 4, 8):
            out.append(Config("bench-1b", layers, w, rows, skew="uniform", gen=gen, reps=2,
                              kind="exchange", tags=[f"equiv_rows={b}"]))
    return out


def write_csv(path, rows, fields):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m = ap.add_mutually_exclusive_group()
    m.add_argument("--quick", action="store_true", help="bench-1b, a subset of the grid (default)")
    m.add_argument("--full", action="store_true", help="mixtral-8x22b at 1-2 layers, the whole grid")
    ap.add_argument("--out", help="results folder (default build/scaling/quick or build/scaling/full)")
    ap.add_argument("--moe", default=os.environ.get("MOE", os.path.join(ROOT, "build", "moe")))
    ap.add_argument("--budget-min", type=float, help="stop starting runs after this many minutes "
                    "(default 6 for --quick, 20 for --full)")
    ap.add_argument("--no-exchange", action="store_true", help="skip the exchange probe")
    ap.add_argument("--no-probes", action="store_true", help="skip the bandwidth/FMA probes")
    ap.add_argument("--only-tags", help="comma-separated tags: run only configurations with one")
    ap.add_argument("--only-batch", help="comma-separated batch sizes: run only those")
    ap.add_argument("--only-workers", help="comma-separated worker counts: run only those")
    ap.add_argument("--dry-run", action="store_true", help="list the configurations and exit")
    ap.add_argument("--fit", action="store_true", help="run perf_model.py on the results at the end")
    ap.add_argument("--quiet-wait", type=float, default=45.0,
                    help="before each run, wait up to this many seconds while other jobs use more "
                         "than 0.3 cores (0: never wait); the cores they used during each run are "
                         "measured and recorded either way (ext_cores)")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="run --moe in place instead of a private copy taken at the start")
    args = ap.parse_args()
    mode = "full" if args.full else "quick"
    out = os.path.abspath(args.out or os.path.join(ROOT, "build", "scaling", mode))
    budget = 60 * (args.budget_min if args.budget_min is not None else (6 if mode == "quick" else 20))
    moe = os.path.abspath(args.moe)
    build = os.path.dirname(moe)

    configs = grid(mode)
    if args.only_tags:
        want = set(args.only_tags.split(","))
        configs = [c for c in configs if c.tags & want]
    if args.only_batch:
        configs = [c for c in configs if c.batch in {int(x) for x in args.only_batch.split(",")}]
    if args.only_workers:
        configs = [c for c in configs if c.workers in {int(x) for x in args.only_workers.split(",")}]
    exch = [] if args.no_exchange else exchange_grid(mode)
    if args.dry_run:
        for c in exch + configs:
            print(f"{c.kind:8} {'+'.join(sorted(c.tags)):22} {c.describe()}")
        print(f"{len(exch)} exchange-probe runs, {len(configs)} grid runs")
        return 0
    os.makedirs(os.path.join(out, "raw"), exist_ok=True)
    try:
        moe = stable_binary(moe, wait_s=60) if args.no_snapshot else snapshot(moe, out)
    except RuntimeError as e:
        print(f"sweep: {e} (build it first, or pass --moe)", file=sys.stderr)
        return 2
    logf = open(os.path.join(out, "sweep.log"), "a")
    t_start = time.time()
    deadline = t_start + budget
    log(f"sweep --{mode}: {len(exch)} exchange-probe runs, {len(configs)} grid runs, budget "
        f"{budget / 60:.0f} min, results in {out}", logf)

    machine = {}
    if not args.no_probes:
        for probe in ("moe_probe_bandwidth", "moe_probe_fma"):
            stable_binary(os.path.join(build, probe), wait_s=300)
        machine["start"] = machine_probes(build)
        log(f"probes: {json.dumps(machine['start'])}", logf)

    rows, xrows, skipped, history = [], [], [], {}
    status = 0
    # Reference runs: two grid configurations run again at the end, to show how much the
    # machine's speed drifted during the sweep (other jobs share it). Their time is reserved.
    P = configs[0].preset if configs else "bench-1b"
    refs = [] if (args.only_tags or args.only_batch or args.only_workers) else [Config(P, 1, 4, 16, kind="reference", tags=["reference"]),
                                      Config(P, 1, 0, 16, kind="reference", tags=["reference"])]
    reserve = sum(c.guess_seconds({}) for c in refs)
    for idx, cfg in enumerate(exch + configs + refs):
        guess = cfg.guess_seconds(history)
        now = time.time()
        if now + guess > deadline - (reserve if cfg.kind != "reference" else 0):
            skipped.append(cfg)
            continue
        if args.quiet_wait > 0:
            wait_for_quiet(min(args.quiet_wait, max(0.0, deadline - time.time() - guess)), logf)
        run_id = f"{cfg.kind[0]}{idx:03d}"
        log(f"[{run_id}] {cfg.describe()} (~{guess:.0f} s, {(deadline - now) / 60:.1f} min left)", logf)
        try:
            j, wall, envm = execute(cfg, moe, os.path.join(out, "raw"), run_id,
                                    max(120.0, 4 * guess), logf)
            r = row_from(cfg, j, wall, envm, run_id)
        except sc.ConservationError as e:
            log(f"[{run_id}] CONSERVATION VIOLATED: {e}", logf)
            status = 1
            break
        except Exception as e:  # a failed run stops the sweep: its numbers would be missing
            log(f"[{run_id}] FAILED: {e}", logf)
            status = 1
            break
        history[(cfg.preset, cfg.layers, cfg.batch, cfg.workers)] = wall
        (xrows if cfg.kind == "exchange" else rows).append(r)
        log(f"[{run_id}] step {sc.fmt_s(r['step_s'])}, {r['decode_tok_s']:.1f} tok/s, exposed "
            f"{r['exposed_moe_share']:.2f}, comm/layer {sc.fmt_s(r['comm_per_layer_s'])}, "
            f"conservation ok, wall {wall:.0f} s, other jobs {r['ext_cores']:.2f} cores", logf)
        write_csv(os.path.join(out, "runs.csv"), rows, RUN_FIELDS)
        write_csv(os.path.join(out, "exchange.csv"), xrows, RUN_FIELDS)

    if not args.no_probes and status == 0:
        machine["end"] = machine_probes(build)
        log(f"probes: {json.dumps(machine['end'])}", logf)
    machine["moe"] = moe
    machine["mode"] = mode
    machine["budget_s"] = budget
    machine["elapsed_s"] = time.time() - t_start
    with open(os.path.join(out, "machine.json"), "w") as f:
        json.dump(machine, f, indent=1)
    write_csv(os.path.join(out, "runs.csv"), rows, RUN_FIELDS)
    write_csv(os.path.join(out, "exchange.csv"), xrows, RUN_FIELDS)
    with open(os.path.join(out, "skipped.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "tags", "preset", "layers", "workers", "batch", "micro_batches", "router_skew"])
        for c in skipped:
            w.writerow([c.kind, "+".join(sorted(c.tags)), c.preset, c.layers, c.workers, c.batch,
                        c.micro, c.skew])
    done = len(rows) + len(xrows)
    log(f"done: {done} runs in {(time.time() - t_start) / 60:.1f} min; conservation checked on "
        f"every run{'' if status == 0 else ' that finished (stopped early: see above)'}", logf)
    if skipped:
        log(f"BUDGET: skipped {len(skipped)} of {len(exch) + len(configs)} configurations to stay "
            f"within {budget / 60:.0f} min (listed in {os.path.join(out, 'skipped.csv')}; "
            f"raise --budget-min to run them)", logf)
    if status == 0 and args.fit:
        cmd = [sys.executable, os.path.join(HERE, "perf_model.py"), "--results", out]
        log("fit: " + " ".join(cmd), logf)
        status = subprocess.call(cmd)
    return status


if __name__ == "__main__":
    sys.exit(main())
