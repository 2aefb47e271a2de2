#!/usr/bin/python3
"""Throughput and latency of `moe serve` at several concurrency levels (a benchmark, not a test).

Against a running server:
    scripts/bench_serve.py --address 127.0.0.1:50051
Or starting one (mpirun -np N moe serve on a free port; stopped with SIGTERM to rank 0 at the end):
    scripts/bench_serve.py --model tests/data/models/mixtral-f32 --np 3

Each level sends --requests requests (random prompt ids of --prompt-len tokens from --seed, the
same prompts at every level; --max-tokens tokens each with ignore_eos, greedy) from as many client
threads as the level's concurrency, and reports requests/s, output tokens/s, time to first token
(client side: from sending to the first message with a token), inter-token latency (between
consecutive token messages of a stream) and total latency. --json prints one JSON object instead
of the table. Run with Debian's /usr/bin/python3 (python3-grpcio). Note that the Python client
shares the machine's cores with the server, which matters at high concurrency.
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import grpc  # noqa: E402

import moe_grpc  # noqa: E402
from mpi_job import rank_pid, session_pids  # noqa: E402

pb, pb_grpc = moe_grpc.inference()
hpb, hpb_grpc = moe_grpc.health()


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """mpirun -np N moe serve on 127.0.0.1:<free port>."""

    def __init__(self, args):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="bench-serve-", suffix=".log", delete=False)
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1")
        cmd = ["mpirun", "--oversubscribe", "--mca", "btl", "self,vader,tcp", "-np", str(args.np),
               args.moe, "serve", "--model", args.model, "--listen", self.address]
        cmd += args.server_arg or []
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def wait_ready(self, channel, timeout):
        end = time.monotonic() + timeout
        stub = hpb_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if stub.Check(hpb.HealthCheckRequest(), timeout=1).status == \
                        hpb.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"the server was not SERVING after {timeout} s; see {self.log.name}")

    def stop(self):
        if self.proc.poll() is None:
            rank0 = rank_pid(self.proc.pid, 0)
            if rank0 is not None:
                os.kill(rank0, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        for pid in session_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        os.unlink(self.log.name)


def one_request(stub, req, metadata, timeout):
    """Streams one request; returns a dict of client-side timings, or the error."""
    t_send = time.perf_counter()
    token_times, tokens = [], 0
    try:
        last = None
        for msg in stub.Generate(req, metadata=metadata, timeout=timeout):
            if msg.tokens:
                token_times.append(time.perf_counter())
                tokens += len(msg.tokens)
            last = msg
        t_end = time.perf_counter()
    except grpc.RpcError as e:
        return {"error": e.code().name}
    if last is None or last.usage.completion_tokens != tokens:
        return {"error": "incomplete"}
    return {"ttft": token_times[0] - t_send if token_times else None,
            "itl": [b - a for a, b in zip(token_times, token_times[1:])],
            "total": t_end - t_send, "tokens": tokens}


def run_level(stub, reqs, concurrency, metadata, timeout):
    results = [None] * len(reqs)
    next_i = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(reqs):
                return
            results[i] = one_request(stub, reqs[i], metadata, timeout)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 60)
    wall = time.perf_counter() - t0
    ok = [r for r in results if r is not None and "error" not in r]
    errors = {}
    for r in results:
        key = "lost" if r is None else r.get("error")
        if key:
            errors[key] = errors.get(key, 0) + 1
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    itl = [x for r in ok for x in r["itl"]]
    total = [r["total"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {
        "concurrency": concurrency, "requests": len(reqs), "completed": len(ok), "errors": errors,
        "wall_s": round(wall, 3), "requests_per_s": round(len(ok) / wall, 2),
        "output_tokens_per_s": round(tokens / wall, 1), "output_tokens": tokens,
        "ttft_ms": {f"p{q}": ms(percentile(ttft, q)) for q in (50, 90, 99)},
        "itl_ms": {f"p{q}": ms(percentile(itl, q)) for q in (50, 90, 99)},
        "total_ms": {f"p{q}": ms(percentile(total, q)) for q in (50, 99)},
    }


def table(rows):
    head = ["conc", "req/s", "out tok/s", "TTFT p50", "p90", "p99", "ITL p50", "p90", "p99",
            "total p50", "p99", "errors"]
    lines = [head]
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        lines.append([str(r["concurrency"]), f"{r['requests_per_s']:.1f}",
                      f"{r['output_tokens_per_s']:.0f}",
                      f(r["ttft_ms"]["p50"]), f(r["ttft_ms"]["p90"]), f(r["ttft_ms"]["p99"]),
                      f(r["itl_ms"]["p50"]), f(r["itl_ms"]["p90"]), f(r["itl_ms"]["p99"]),
                      f(r["total_ms"]["p50"]), f(r["total_ms"]["p99"]),
                      ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "0"])
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = ["  ".join(c.rjust(w) for c, w in zip(l, widths)) for l in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n(latencies in ms, client side)"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", help="a running server (host:port)")
    p.add_argument("--model", help="start a server on this model instead")
    p.add_argument("--np", type=int, default=3, help="ranks for the started server")
    p.add_argument("--moe", default=os.path.join(ROOT, "build", "moe"), help="the moe binary")
    p.add_argument("--server-arg", action="append",
                   help="extra flag for the started server (repeat), e.g. --server-arg=--max-running=32")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--concurrency", default="1,4,16,64", help="comma-separated levels")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompts")
    p.add_argument("--warmup", type=int, default=4, help="requests sent before measuring")
    p.add_argument("--timeout", type=float, default=300, help="per-request deadline (s)")
    p.add_argument("--api-key")
    p.add_argument("--tls-ca", help="PEM of the server's CA (TLS)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args()
    if bool(args.address) == bool(args.model):
        p.error("give --address of a running server, or --model (and --np) to start one")
    levels = [int(c) for c in args.concurrency.split(",")]

    server = LocalServer(args) if args.model else None
    address = server.address if server else args.address
    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(address)
    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else None
    try:
        if server:
            server.wait_ready(channel, 120)
        stub = pb_grpc.InferenceServiceStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata, timeout=30)
        if args.prompt_len + args.max_tokens > info.context_length:
            p.error(f"--prompt-len + --max-tokens exceeds the context length {info.context_length}")
        rng = random.Random(args.seed)
        reqs = []
        for i in range(args.requests):
            req = pb.GenerateRequest(max_tokens=args.max_tokens, ignore_eos=True,
                                     request_id=f"bench-{i}")
            req.prompt_token_ids.ids.extend(
                [1] + [rng.randrange(3, info.vocab_size) for _ in range(args.prompt_len - 1)])
            reqs.append(req)
        for req in reqs[:args.warmup]:
            one_request(stub, req, metadata, args.timeout)
        rows = []
        for c in levels:
            rows.append(run_level(stub, reqs, c, metadata, args.timeout))
            if not args.json:
                print(f"concurrency {c}: {rows[-1]['wall_s']} s", file=sys.stderr, flush=True)
        result = {"address": address, "model": info.model_dir, "architecture": info.architecture,
                  "ranks": info.ranks, "requests": args.requests, "prompt_len": args.prompt_len,
                  "max_tokens": args.max_tokens, "seed": args.seed, "levels": rows}
        if args.json:
            print(json.dumps(result, indent=1))
        else:
            print(f"{info.architecture} {info.model_dir}, {info.ranks} rank(s); {args.requests} "
                  f"requests per level, prompt {args.prompt_len} tokens, {args.max_tokens} output "
                  f"tokens (ignore_eos, greedy)")
            print(table(rows))
    finally:
        channel.close()
        if server:
            server.stop()


if __name__ == "__main__":
    main()
