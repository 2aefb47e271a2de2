#!/usr/bin/python3
"""End-to-end tests of `moe serve`: real servers under `mpirun -np 3` (a coordinator and two expert
workers) on 127.0.0.1, driven through the gRPC API (moe.v1.InferenceService, health, reflection)
and the Prometheus endpoint.

    MOE=build/moe DATA=tests/data ROOT=. /usr/bin/python3 tests/serve/test_serve.py [NAME...]

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf). The Python stubs are made
into a temporary folder (MOE_PY_STUBS) unless MOE_PY_STUBS is already set. With NAMEs, only the
tests whose names contain one of them run (the servers they need are started anyway).

Every wait is bounded; every server (mpirun and its ranks, found by session id) is killed on the
way out, whatever happened. Prints one line per test with its time; exits 1 if any test failed.
"""
import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

MOE = os.path.abspath(os.environ.get("MOE", "build/moe"))
# The emulated device (tests/emulated_gpu/), for a server on the GPU path; unset: that test skips.
GPU_EMULATED = os.environ.get("GPU_EMULATED", "")
DATA = os.path.abspath(os.environ.get("DATA", "tests/data"))
ROOT = os.path.abspath(os.environ.get("ROOT", "."))
SCRATCH = tempfile.mkdtemp(prefix="moe-serve-test-")
os.environ.setdefault("MOE_PY_STUBS", os.path.join(SCRATCH, "stubs"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import grpc  # noqa: E402

import moe_grpc  # noqa: E402
from mpi_job import rank_pid, session_pids  # noqa: E402

pb, pb_grpc = moe_grpc.inference()
hpb, hpb_grpc = moe_grpc.health()
rpb, rpb_grpc = moe_grpc.reflection()

MODEL = os.path.join(DATA, "models", "mixtral-f32")  # vocab 512, context 256
VOCAB, CONTEXT, EOS = 512, 256, 2
SERVING = hpb.HealthCheckResponse.SERVING
NOT_SERVING = hpb.HealthCheckResponse.NOT_SERVING
F = pb.FinishReason
API_KEY = "test-key-0123456789"


# ------------------------------------------------------------------------------------------------
# Helpers


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns a truthy value; fails after `timeout` seconds."""
    end = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > end:
            raise TestFailure(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def fbits(x):
    """The float32 bit pattern, so that logprobs compare exactly (NaN included)."""
    return struct.pack("<f", x)


def _die_with_parent():
    """In the mpirun child: SIGTERM when this test process dies, even by SIGKILL (a ctest
    timeout); mpirun forwards it to the ranks and ends the job."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    """`mpirun -np N moe serve` on 127.0.0.1 with a free port (and a metrics port)."""

    all = []

    def __init__(self, name, model, extra=(), np=3, tls=None, gpu_library=None):
        self.name, self.model, self.extra, self.np, self.tls = name, model, list(extra), np, tls
        self.gpu_library = gpu_library  # every rank loads this GPU path (MOE_GPU_LIBRARY)
        self.port, self.metrics_port = free_ports(2)
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(SCRATCH, f"{name}.log")
        self.proc = None
        self._channel = None
        Server.all.append(self)

    def start(self):
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1")
        cmd = ["mpirun", "--oversubscribe", "--mca", "btl", "self,vader,tcp", "-np", str(self.np)]
        if self.gpu_library:
            env["MOE_GPU_LIBRARY"] = self.gpu_library
            cmd += ["-x", "MOE_GPU_LIBRARY"]
        cmd += [MOE, "serve", "--model", self.model, "--listen", self.address,
                "--metrics", f"127.0.0.1:{self.metrics_port}"] + self.extra
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent)

    def restart_on_other_ports(self):
        """After losing a race for the free ports: new ports, start again."""
        self.close_channel()
        self.kill()
        self.port, self.metrics_port = free_ports(2)
        self.address = f"127.0.0.1:{self.port}"
        self.start()

    def channel(self):
        if self._channel is None:
            if self.tls:
                creds = grpc.ssl_channel_credentials(root_certificates=self.tls)
                self._channel = grpc.secure_channel(self.address, creds)
            else:
                self._channel = grpc.insecure_channel(self.address)
        return self._channel

    def stub(self):
        return pb_grpc.InferenceServiceStub(self.channel())

    def health(self, service="", timeout=2):
        r = hpb_grpc.HealthStub(self.channel()).Check(
            hpb.HealthCheckRequest(service=service), timeout=timeout)
        return r.status

    def wait_ready(self, timeout):
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise TestFailure(f"server {self.name} exited with {self.proc.returncode} while "
                                  f"starting:\n{self.log_tail()}")
            try:
                if self.health(timeout=1) == SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > end:
                raise TestFailure(f"server {self.name} not SERVING after {timeout} s:\n"
                                  f"{self.log_tail()}")
            time.sleep(0.05)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            return parse_metrics(r.read().decode())

    def metric(self, name, **labels):
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def rank0(self):
        """Rank 0's pid, by the rank Open MPI gave it."""
        pid = rank_pid(self.proc.pid, 0)
        check(pid is not None, f"server {self.name}: rank 0 not found")
        return pid

    def sigterm_rank0(self):
        os.kill(self.rank0(), signal.SIGTERM)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure(f"server {self.name}: mpirun still running {timeout} s after "
                              f"SIGTERM to rank 0:\n{self.log_tail()}")

    def stop(self, timeout=30):
        """Clean shutdown: SIGTERM to rank 0; mpirun must exit 0."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.close_channel()
        self.sigterm_rank0()
        rc = self.wait_exit(timeout)
        check(rc == 0, f"server {self.name}: mpirun exited {rc}:\n{self.log_tail()}")

    def close_channel(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def kill(self):
        if self.proc is None:
            return
        sid = self.proc.pid
        for _ in range(3):
            pids = session_pids(sid)
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(f"  [{self.name}] {l}" for l in lines[-n:])
        except OSError:
            return ""


def ids_req(ids, **kw):
    req = pb.GenerateRequest(**{k: v for k, v in kw.items() if k not in ("top_p", "logprobs")})
    req.prompt_token_ids.ids.extend(ids)
    if kw.get("top_p") is not None:
        req.top_p = kw["top_p"]
    if kw.get("logprobs") is not None:
        req.logprobs = kw["logprobs"]
    return req


class Result:
    """Everything one Generate stream returned."""

    def __init__(self):
        self.msgs = []
        self.code = None  # grpc.StatusCode.OK or the error
        self.details = ""
        self.first_at = None

    @property
    def final(self):
        return self.msgs[-1] if self.msgs else None

    def tokens(self):
        """[(id, logprob bits or None, ((id, bits), ...))] over every message."""
        out = []
        for m in self.msgs:
            for t in m.tokens:
                lp = fbits(t.logprob) if t.HasField("logprob") else None
                out.append((t.token_id, lp,
                            tuple((a.token_id, fbits(a.logprob)) for a in t.top_logprobs)))
        return out

    def ids(self):
        return [t.token_id for m in self.msgs for t in m.tokens]

    def text(self):
        return "".join(m.text for m in self.msgs)

    def check_complete(self, where):
        """A complete answer: OK status, finish_reason in the last message only, usage matching."""
        check(self.code == grpc.StatusCode.OK,
              f"{where}: ended with {self.code} {self.details!r}, not OK")
        check(self.msgs, f"{where}: no messages")
        for m in self.msgs[:-1]:
            check(m.finish_reason == F.Value("FINISH_REASON_UNSPECIFIED"),
                  f"{where}: finish_reason in a message before the last")
        fin = self.final
        check(fin.finish_reason != F.Value("FINISH_REASON_UNSPECIFIED"),
              f"{where}: the last message has no finish_reason")
        check(fin.usage.completion_tokens == len(self.ids()),
              f"{where}: usage.completion_tokens {fin.usage.completion_tokens} != "
              f"{len(self.ids())} streamed tokens")
        t = fin.timing
        check(0 <= t.queue_seconds <= t.total_seconds and t.time_to_first_token_seconds <=
              t.total_seconds and (not self.ids() or t.queue_seconds <=
                                   t.time_to_first_token_seconds),
              f"{where}: inconsistent timing {t}")


def generate(stub, req, timeout=60, metadata=None, on_message=None):
    r = Result()
    try:
        call = stub.Generate(req, timeout=timeout, metadata=metadata)
        for m in call:
            if r.first_at is None:
                r.first_at = time.monotonic()
            r.msgs.append(m)
            if on_message:
                on_message(r, call)
        r.code = grpc.StatusCode.OK
    except grpc.RpcError as e:
        r.code, r.details = e.code(), e.details()
    return r


def expect_error(code, fn, what):
    try:
        out = fn()
    except grpc.RpcError as e:
        check(e.code() == code, f"{what}: expected {code.name}, got {e.code().name} "
                                f"({e.details()!r})")
        check(e.details(), f"{what}: {code.name} without a message")
        return e.details()
    raise TestFailure(f"{what}: expected {code.name}, got OK ({out!r:.200})")


def expect_generate_error(stub, req, code, what, **kw):
    r = generate(stub, req, **kw)
    check(r.code == code, f"{what}: expected {code.name}, got {r.code} {r.details!r} "
                          f"after {len(r.msgs)} messages")
    check(r.details, f"{what}: {code.name} without a message")
    check(not r.msgs, f"{what}: {len(r.msgs)} messages before the error")
    return r.details


def wait_blocks_free(server, timeout=10):
    wait_until(lambda: server.metric("moe_kv_blocks_in_use") == 0
               and server.metric("moe_running_sequences") == 0
               and server.metric("moe_queue_depth") == 0,
               timeout, f"{server.name}: moe_kv_blocks_in_use, running and queue back to 0")


def run_threads(targets, timeout, what):
    """Starts one thread per callable, joins them all within `timeout` seconds."""
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    check(alive == 0, f"{what}: {alive} of {len(threads)} threads still running after {timeout} s")


# ------------------------------------------------------------------------------------------------
# The servers


def make_long_model():
    """mixtral-f32 with a 65536 context, for generations that last seconds."""
    path = os.path.join(SCRATCH, "mixtral-long")
    shutil.copytree(MODEL, path)
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["max_position_embeddings"] = 65536
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def make_cert():
    """A self-signed certificate for 127.0.0.1, or None without openssl."""
    if shutil.which("openssl") is None:
        return None
    cert, key = os.path.join(SCRATCH, "cert.pem"), os.path.join(SCRATCH, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class Servers:
    pass


S = Servers()


def start_servers():
    long_model = make_long_model()
    key_file = os.path.join(SCRATCH, "api-key")
    with open(key_file, "w") as f:
        f.write(API_KEY + "\n")
    small = ["--kv-cache-mib", "64"]
    S.main = Server("main", MODEL)  # the defaults
    S.long = Server("long", long_model, small + ["--drain-seconds", "20"])
    S.limits = Server("limits", long_model, small + ["--max-running", "1", "--max-queue", "2",
                                                     "--max-request-bytes", "1024"])
    S.drain_short = Server("drain-short", long_model, small + ["--drain-seconds", "1"])
    S.apikey = Server("apikey", MODEL, small + ["--api-key-file", key_file])
    S.window = Server("window", os.path.join(DATA, "models", "mixtral-window"),
                      small + ["--kv-block-size", "4"])
    S.dense = Server("dense", os.path.join(DATA, "models", "mistral-window"), small)
    S.gpu = None
    if GPU_EMULATED:
        S.gpu = Server("gpu", MODEL, small + ["--device", "cuda", "--gpu-exchange", "mpi-link",
                                              "--micro-batches", "2"],
                       gpu_library=GPU_EMULATED)
    cert = make_cert()
    S.tls = None
    if cert:
        with open(cert[0], "rb") as f:
            pem = f.read()
        S.tls = Server("tls", MODEL, small + ["--tls-cert", cert[0], "--tls-key", cert[1]], tls=pem)
    # Every subprocess is started before the first gRPC channel exists (grpc and fork).
    for s in Server.all:
        s.start()
    end = time.monotonic() + 120
    for s in Server.all:
        try:
            s.wait_ready(max(1.0, end - time.monotonic()))
        except TestFailure:
            if "cannot listen" not in s.log_tail():
                raise
            s.restart_on_other_ports()  # another process took the port meanwhile: once more
            s.wait_ready(max(30.0, end - time.monotonic()))


# ------------------------------------------------------------------------------------------------
# The tests


def concurrent_requests(rng):
    """32 requests: text and id prompts, greedy and sampled, some with logprobs."""
    words = ["Hello", "world", "the", "cat", "sat", "on", "a", "mat", "Once", "upon", "time",
             "there", "was", "an", "expert", "router", "and", "many", "tokens"]
    reqs = []
    for i in range(32):
        kw = dict(max_tokens=rng.randint(12, 64), request_id=f"conc-{i}",
                  ignore_eos=(i % 2 == 0))
        if i % 3 != 0:  # sampled
            kw.update(temperature=rng.choice([0.5, 0.8, 1.0, 1.3]), seed=1000 + 7919 * i,
                      top_p=rng.choice([None, 0.95, 0.7]), top_k=rng.choice([0, 5, 40]))
        if i % 4 == 1:
            kw["logprobs"] = 0
        elif i % 4 == 3:
            kw["logprobs"] = rng.choice([1, 5, 20])
        if i % 2:
            req = ids_req([1] + [rng.randrange(3, VOCAB) for _ in range(rng.randint(1, 60))], **kw)
        else:
            req = ids_req([], **kw)
            req.prompt = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        reqs.append(req)
    return reqs


def concurrent_equals_solo(srv, reqs, timeout=90):
    """Runs each request alone (one after another), then all at once; every concurrent result
    must equal its solo run bit for bit. Returns (results, peak running, peak KV blocks)."""
    stub = srv.stub()
    solo = []
    for req in reqs:
        r = generate(stub, req)
        r.check_complete(f"solo {req.request_id}")
        solo.append(r)
    conc = [None] * len(reqs)
    # The server's own peak decides where no earlier test ran requests together on it; polling
    # the live gauge can miss a short overlap on a loaded machine.
    peak_key = ("moe_running_sequences_peak", frozenset())
    peak_before = srv.metrics().get(peak_key, 0)
    barrier = threading.Barrier(len(reqs))
    peak = {"running": 0.0, "blocks": 0.0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                m = srv.metrics()
                peak["running"] = max(peak["running"],
                                      m.get(("moe_running_sequences", frozenset()), 0))
                peak["blocks"] = max(peak["blocks"], m.get(("moe_kv_blocks_in_use", frozenset()), 0))
            except OSError:
                pass
            time.sleep(0.005)

    def one(i):
        def run():
            barrier.wait(30)
            conc[i] = generate(stub, reqs[i])
        return run

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_threads([one(i) for i in range(len(reqs))], timeout, "concurrent requests")
    finally:
        stop.set()
        watcher.join(5)
    if peak_before < 2:
        peak["running"] = max(peak["running"], srv.metrics().get(peak_key, 0))
    for i, (req, a, b) in enumerate(zip(reqs, solo, conc)):
        where = f"request {req.request_id} ({'sampled' if req.temperature else 'greedy'}, " \
                f"logprobs={req.logprobs if req.HasField('logprobs') else None})"
        b.check_complete(f"concurrent {where}")
        check(all(m.request_id == req.request_id for m in b.msgs), f"{where}: request_id not echoed")
        ta, tb = a.tokens(), b.tokens()
        if ta != tb:
            first = next((k for k in range(min(len(ta), len(tb))) if ta[k] != tb[k]),
                         min(len(ta), len(tb)))
            raise TestFailure(f"{where}: concurrent run differs from the solo run at token {first}: "
                              f"solo {ta[first:first + 2]} vs concurrent {tb[first:first + 2]}")
        check(a.text() == b.text(), f"{where}: text differs: {a.text()!r} vs {b.text()!r}")
        check(a.final.finish_reason == b.final.finish_reason, f"{where}: finish reason differs")
        check(a.final.usage == b.final.usage, f"{where}: usage differs")
        want_lp = req.HasField("logprobs")
        for t in [t for m in b.msgs for t in m.tokens]:
            check(t.HasField("logprob") == want_lp, f"{where}: logprob presence wrong")
            check(len(t.top_logprobs) == (req.logprobs if want_lp else 0),
                  f"{where}: {len(t.top_logprobs)} top_logprobs")
    check(peak["running"] >= 2,
          f"the requests never ran together (peak moe_running_sequences {peak['running']})")
    wait_blocks_free(srv)
    return conc, int(peak["running"]), int(peak["blocks"])


def test_01_concurrent_equals_solo():
    """32 concurrent streams give bit-identical tokens, logprobs and text to their solo runs."""
    reqs = concurrent_requests(random.Random(1234))
    conc, peak, _ = concurrent_equals_solo(S.main, reqs)
    n_tok = sum(len(r.ids()) for r in conc)
    return f"{len(reqs)} requests, {n_tok} tokens, peak running {peak}"


def test_02_cancel_frees_blocks():
    """A client cancel mid-stream frees the sequence's KV blocks and counts as cancelled."""
    srv = S.long
    wait_blocks_free(srv)
    before = srv.metric("moe_requests_total", outcome="cancelled")
    in_use = []

    def on_message(r, call):
        if len(r.msgs) == 3:
            in_use.append(srv.metric("moe_kv_blocks_in_use"))
            call.cancel()

    r = generate(srv.stub(), ids_req([1, 17, 33, 99], max_tokens=60000, ignore_eos=True),
                 timeout=60, on_message=on_message)
    check(r.code == grpc.StatusCode.CANCELLED, f"expected CANCELLED on the client, got {r.code}")
    check(in_use and in_use[0] > 0, f"no KV blocks in use while streaming ({in_use})")
    wait_until(lambda: srv.metric("moe_kv_blocks_in_use") == 0, 10, "KV blocks back to 0")
    wait_until(lambda: srv.metric("moe_requests_total", outcome="cancelled") == before + 1, 10,
               'moe_requests_total{outcome="cancelled"} to increment')
    wait_blocks_free(srv)
    return f"{int(in_use[0])} blocks in use before the cancel, 0 after"


def test_03_deadline():
    """A 50 ms deadline on a long generation: DEADLINE_EXCEEDED, and the blocks come back."""
    srv = S.long
    wait_blocks_free(srv)
    m0 = srv.metrics()
    outcome = lambda m, o: m.get(("moe_requests_total", frozenset({("outcome", o)})), 0.0)  # noqa
    t0 = time.monotonic()
    r = generate(srv.stub(), ids_req([1, 5, 6, 7], max_tokens=60000, ignore_eos=True), timeout=0.05)
    took = time.monotonic() - t0
    check(r.code == grpc.StatusCode.DEADLINE_EXCEEDED,
          f"expected DEADLINE_EXCEEDED, got {r.code} after {len(r.msgs)} messages")
    check(took < 5, f"the deadline took {took:.2f} s to fire")
    wait_blocks_free(srv)

    def counted():
        m = srv.metrics()
        d = {o: outcome(m, o) - outcome(m0, o) for o in ("cancelled", "deadline_exceeded")}
        return d if sum(d.values()) == 1 else None

    d = wait_until(counted, 10, "the expired request to be counted (cancelled or deadline_exceeded)")
    return f"{len(r.msgs)} messages before the deadline; counted as " + \
        ",".join(k for k, v in d.items() if v)


def test_04_invalid_arguments():
    """Every invalid input answers INVALID_ARGUMENT with a message, before any token."""
    stub = S.main.stub()
    IA = grpc.StatusCode.INVALID_ARGUMENT
    cases = []
    r = pb.GenerateRequest(max_tokens=4)
    r.prompt = ""  # sets the oneof to an empty prompt
    cases.append(("empty prompt", r))
    r = pb.GenerateRequest(max_tokens=4)
    r.prompt_token_ids.SetInParent()
    cases.append(("empty prompt_token_ids", r))
    # Neither prompt nor ids. (Both at once cannot be sent: `input` is a oneof, so setting one
    # clears the other in every client; the wire format would keep only the last one.)
    cases.append(("neither prompt nor ids", pb.GenerateRequest(max_tokens=4)))
    cases.append(("id 99999", ids_req([1, 99999], max_tokens=4)))
    cases.append(("id -1", ids_req([1, -1], max_tokens=4)))
    cases.append(("id 512 (= vocab)", ids_req([1, VOCAB], max_tokens=4)))
    cases.append(("temperature -0.5", ids_req([1, 5], max_tokens=4, temperature=-0.5)))
    cases.append(("temperature NaN", ids_req([1, 5], max_tokens=4, temperature=float("nan"))))
    cases.append(("top_p 0", ids_req([1, 5], max_tokens=4, temperature=1.0, top_p=0.0)))
    cases.append(("top_p 1.5", ids_req([1, 5], max_tokens=4, temperature=1.0, top_p=1.5)))
    cases.append(("top_k -1", ids_req([1, 5], max_tokens=4, top_k=-1)))
    cases.append(("max_tokens 0", ids_req([1, 5], max_tokens=0)))
    cases.append(("max_tokens -3", ids_req([1, 5], max_tokens=-3)))
    cases.append(("prompt 10 + max_tokens 247 > 256", ids_req([1] * 10, max_tokens=CONTEXT - 9)))
    cases.append(("prompt 257 ids", ids_req([1] * (CONTEXT + 1), max_tokens=1)))
    cases.append(("logprobs 21", ids_req([1, 5], max_tokens=4, logprobs=21)))
    cases.append(("logprobs -1", ids_req([1, 5], max_tokens=4, logprobs=-1)))
    cases.append(("17 stop strings", ids_req([1, 5], max_tokens=4, stop=[f"s{i}" for i in range(17)])))
    cases.append(("stop_token_ids 512", ids_req([1, 5], max_tokens=4, stop_token_ids=[VOCAB])))
    cases.append(("257 stop_token_ids", ids_req([1, 5], max_tokens=4, stop_token_ids=[7] * 257)))
    cases.append(("request_id of 257 bytes", ids_req([1, 5], max_tokens=4, request_id="r" * 257)))
    messages = []
    for what, req in cases:
        messages.append(f"{what}: " + expect_generate_error(stub, req, IA, what, timeout=10))
    # The limits themselves are accepted.
    for what, req in [("prompt 10 + max_tokens 246 = 256", ids_req([1] * 10, max_tokens=CONTEXT - 10)),
                      ("logprobs 20, 16 stops, top_p 1", ids_req(
                          [1, 5], max_tokens=2, logprobs=20, stop=[f"s{i}" for i in range(16)],
                          temperature=1.0, top_p=1.0)),
                      ("256 stop_token_ids, request_id of 256 bytes", ids_req(
                          [1, 5], max_tokens=2, stop_token_ids=[7] * 256, request_id="r" * 256))]:
        generate(stub, req, timeout=30).check_complete(what)
    for ids in ([VOCAB], [99999], [-1], [1, 2, 600]):
        messages.append(f"detokenize {ids}: " + expect_error(
            IA, lambda: stub.Detokenize(pb.DetokenizeRequest(ids=ids), timeout=10),
            f"Detokenize {ids}"))
    print("\n".join("      " + m for m in messages))
    return f"{len(cases)} Generate cases and 4 Detokenize cases"


def test_05_queue_full():
    """--max-running 1 --max-queue 2: a burst of long requests; some get RESOURCE_EXHAUSTED and
    every other one completes."""
    srv = S.limits
    wait_blocks_free(srv)
    re0 = srv.metric("moe_requests_total", outcome="resource_exhausted")
    stub = srv.stub()
    n, max_tokens = 8, 300
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        def run():
            barrier.wait(30)
            results[i] = generate(stub, ids_req([1, 40 + i, 7], max_tokens=max_tokens,
                                                ignore_eos=True), timeout=60)
        return run

    run_threads([one(i) for i in range(n)], 90, "queue-full burst")
    exhausted = [r for r in results if r.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    others = [r for r in results if r.code != grpc.StatusCode.RESOURCE_EXHAUSTED]
    for r in exhausted:
        check(not r.msgs and r.details, "RESOURCE_EXHAUSTED after messages or without a message")
    for k, r in enumerate(others):
        r.check_complete(f"accepted request {k}")
        check(r.final.finish_reason == F.Value("FINISH_REASON_LENGTH")
              and len(r.ids()) == max_tokens, f"accepted request {k} did not run to LENGTH")
    check(exhausted, f"none of {n} requests got RESOURCE_EXHAUSTED")
    wait_until(lambda: srv.metric("moe_requests_total", outcome="resource_exhausted")
               == re0 + len(exhausted), 5, "moe_requests_total{resource_exhausted} to match")
    wait_blocks_free(srv)
    return f"{len(exhausted)} RESOURCE_EXHAUSTED ({exhausted[0].details!r}), {len(others)} completed"


def test_05b_queue_bound():
    """--max-queue 2 is a bound: while one long request holds the only running slot, a burst of
    8 requests gets at most 2 accepted (waiting), the rest RESOURCE_EXHAUSTED; moe_queue_depth
    never exceeds 2. Three bursts."""
    srv = S.limits
    wait_blocks_free(srv)
    stub = srv.stub()
    holder = {}

    def on_message(r, call):
        holder["call"] = call
        holder["n"] = len(r.ids())

    t = threading.Thread(target=lambda: holder.setdefault("r", generate(
        stub, ids_req([1, 2, 3], max_tokens=30000, ignore_eos=True), timeout=120,
        on_message=on_message)), daemon=True)
    t.start()
    notes = []
    try:
        # Steps grow slower with the context; wait for ~1 ms steps.
        wait_until(lambda: holder.get("n", 0) >= 800 or "r" in holder, 30, "the long request")
        check("r" not in holder, "the long request ended early")
        for trial in range(3):
            results = [None] * 8
            barrier = threading.Barrier(8)
            depth = []

            def one(i):
                def run():
                    barrier.wait(30)
                    # Accepted requests wait behind the long one until their deadline.
                    results[i] = generate(stub, ids_req([1, 50 + i], max_tokens=1), timeout=1.5)
                return run

            def watch():
                end = time.monotonic() + 1.3
                while time.monotonic() < end:
                    depth.append(srv.metric("moe_queue_depth"))
                    time.sleep(0.01)

            run_threads([one(i) for i in range(8)] + [watch], 30, "queue-bound burst")
            check("r" not in holder, "the long request ended during the burst")
            codes = [r.code for r in results]
            accepted = codes.count(grpc.StatusCode.DEADLINE_EXCEEDED)
            exhausted = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
            check(accepted + exhausted == 8, f"burst {trial}: unexpected outcomes {codes}")
            notes.append(f"{accepted} accepted/peak depth {int(max(depth))}")
            check(accepted <= 2 and max(depth) <= 2,
                  f"burst {trial}: {accepted} of 8 requests accepted into the queue and "
                  f"moe_queue_depth peaked at {max(depth)} while the one running slot was taken; "
                  f"--max-queue 2 allows 2")
            wait_until(lambda: srv.metric("moe_queue_depth") == 0, 10, "the queue to empty")
    finally:
        if "call" in holder:
            holder["call"].cancel()
        t.join(30)
        wait_blocks_free(srv)  # what was accepted expires within 1.5 s
    return "; ".join(notes)


def test_05c_free_slots():
    """--max-queue counts only requests beyond the free running slots: on the idle server with
    --max-running 1 --max-queue 2, a burst of 3 (one to run, two to wait) is taken whole, three
    times."""
    srv = S.limits
    stub = srv.stub()
    for trial in range(3):
        wait_blocks_free(srv)
        results = [None] * 3
        barrier = threading.Barrier(3)

        def one(i):
            def run():
                barrier.wait(30)
                results[i] = generate(stub, ids_req([1, 60 + i], max_tokens=4), timeout=60)
            return run

        run_threads([one(i) for i in range(3)], 90, "free-slot burst")
        for i, r in enumerate(results):
            r.check_complete(f"burst {trial}, request {i} (with the running slot free)")
    wait_blocks_free(srv)
    return "3 bursts of 3 taken whole"


def test_06_oversized_request():
    """A request over --max-request-bytes (1024), or over the default 4 MiB, is
    RESOURCE_EXHAUSTED; one under the limit is served."""
    wait_blocks_free(S.limits)
    stub = S.limits.stub()
    generate(stub, ids_req([1, 2, 3], max_tokens=2), timeout=30).check_complete("small request")
    req = pb.GenerateRequest(max_tokens=2, prompt="hello " * 400)  # ~2.4 KB
    d1 = expect_generate_error(stub, req, grpc.StatusCode.RESOURCE_EXHAUSTED, "2.4 KB request",
                               timeout=30)
    req = pb.GenerateRequest(max_tokens=2, prompt="x" * (5 << 20))  # 5 MiB on the default server
    d2 = expect_generate_error(S.main.stub(), req, grpc.StatusCode.RESOURCE_EXHAUSTED,
                               "5 MiB request", timeout=30)
    generate(stub, ids_req([1, 2, 3], max_tokens=2), timeout=30).check_complete("after the limit")
    S.limits.stop()
    return f"{d1!r}; {d2!r}"


def test_07_drain():
    """SIGTERM to rank 0: health NOT_SERVING at once, new requests UNAVAILABLE, the in-flight
    request finishes (LENGTH), mpirun exits 0. With --drain-seconds 1 a longer request ends
    CANCELLED after about a second, and mpirun still exits 0."""
    notes = []
    # 1. A drain that the in-flight request fits in (--drain-seconds 20; ~2 s of work).
    srv = S.long
    check(srv.health() == SERVING and srv.health("moe.v1.InferenceService") == SERVING,
          "not SERVING before the drain")
    max_tokens = 1500
    started = threading.Event()
    box = {}

    def on_message(r, call):
        if len(r.msgs) == 3:
            started.set()

    def inflight():
        box["r"] = generate(srv.stub(), ids_req([1, 9, 8, 7], max_tokens=max_tokens,
                                                ignore_eos=True), timeout=60, on_message=on_message)
        box["end"] = time.monotonic()
        started.set()

    t = threading.Thread(target=inflight, daemon=True)
    t.start()
    check(started.wait(30), "the long request never started streaming")
    check("r" not in box, f"the long request ended early: {box.get('r') and box['r'].code}")
    t_sig = time.monotonic()
    srv.sigterm_rank0()
    wait_until(lambda: srv.health() == NOT_SERVING, 5, "health NOT_SERVING after SIGTERM",
               interval=0.005)
    t_ns = time.monotonic() - t_sig
    check(srv.health("moe.v1.InferenceService") == NOT_SERVING,
          "moe.v1.InferenceService still SERVING during the drain")
    check("r" not in box, "the in-flight request ended before health went NOT_SERVING "
                          "(make it longer)")
    d = expect_generate_error(srv.stub(), ids_req([1, 2], max_tokens=2),
                              grpc.StatusCode.UNAVAILABLE, "a new request during the drain",
                              timeout=10)
    check("r" not in box, "the in-flight request ended before the new request was refused "
                          "(make it longer)")
    t.join(40)
    check(not t.is_alive(), "the in-flight request hung during the drain")
    r = box["r"]
    r.check_complete("the in-flight request")
    check(r.final.finish_reason == F.Value("FINISH_REASON_LENGTH") and len(r.ids()) == max_tokens,
          f"the in-flight request ended {F.Name(r.final.finish_reason)} after {len(r.ids())} "
          f"tokens, not LENGTH after {max_tokens}")
    rc = srv.wait_exit(30)
    check(rc == 0, f"mpirun exited {rc} after the drain:\n{srv.log_tail()}")
    notes.append(f"NOT_SERVING {t_ns * 1000:.0f} ms after SIGTERM, new request refused ({d!r}), "
                 f"in-flight finished LENGTH {box['end'] - t_sig:.2f} s after SIGTERM, mpirun 0")

    # 2. A drain shorter than the request: it is cancelled (finish CANCELLED, status OK).
    srv = S.drain_short
    started.clear()
    box.clear()

    def inflight_long():
        box["r"] = generate(srv.stub(), ids_req([1, 9, 8, 7], max_tokens=60000, ignore_eos=True),
                            timeout=60, on_message=on_message)
        box["end"] = time.monotonic()
        started.set()

    t = threading.Thread(target=inflight_long, daemon=True)
    t.start()
    check(started.wait(30), "the long request never started streaming")
    t_sig = time.monotonic()
    srv.sigterm_rank0()
    t.join(30)
    check(not t.is_alive(), "the request hung past --drain-seconds 1")
    r = box["r"]
    r.check_complete("the request cut by the drain")
    check(r.final.finish_reason == F.Value("FINISH_REASON_CANCELLED"),
          f"the request cut by the drain ended {F.Name(r.final.finish_reason)}, not CANCELLED")
    took = box["end"] - t_sig
    check(0.8 <= took <= 10, f"the request was cancelled {took:.2f} s after SIGTERM "
                             f"(--drain-seconds 1)")
    rc = srv.wait_exit(30)
    check(rc == 0, f"mpirun exited {rc} after the cut drain:\n{srv.log_tail()}")
    notes.append(f"--drain-seconds 1: CANCELLED after {len(r.ids())} tokens, {took:.2f} s after "
                 f"SIGTERM, mpirun 0")
    return "; ".join(notes)


def test_08_reflection():
    """v1alpha ServerReflection lists the inference and health services and describes them."""
    stub = rpb_grpc.ServerReflectionStub(S.main.channel())
    resps = list(stub.ServerReflectionInfo(
        iter([rpb.ServerReflectionRequest(list_services=""),
              rpb.ServerReflectionRequest(file_containing_symbol="moe.v1.InferenceService")]),
        timeout=10))
    check(len(resps) == 2, f"{len(resps)} reflection responses")
    names = sorted(s.name for s in resps[0].list_services_response.service)
    for want in ("moe.v1.InferenceService", "grpc.health.v1.Health"):
        check(want in names, f"reflection lists {names}, without {want}")
    fd = resps[1].file_descriptor_response.file_descriptor_proto
    check(fd and any(b"GenerateRequest" in x for x in fd),
          "file_containing_symbol moe.v1.InferenceService gave no descriptor")
    return ", ".join(names)


def test_09_api_key():
    """--api-key-file: no key or a wrong key is UNAUTHENTICATED; the Bearer key (or x-api-key)
    is served."""
    srv = S.apikey
    stub = srv.stub()
    UA = grpc.StatusCode.UNAUTHENTICATED
    good = [("authorization", f"Bearer {API_KEY}")]
    req = ids_req([1, 2, 3], max_tokens=3)
    d = expect_error(UA, lambda: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10),
                     "GetModelInfo without a key")
    expect_error(UA, lambda: stub.Tokenize(pb.TokenizeRequest(text="hi"), timeout=10,
                                           metadata=[("authorization", "Bearer wrong")]),
                 "Tokenize with a wrong key")
    expect_error(UA, lambda: stub.Detokenize(pb.DetokenizeRequest(ids=[5]), timeout=10,
                                             metadata=[("authorization", API_KEY)]),
                 "Detokenize with the key but no 'Bearer '")
    expect_generate_error(stub, req, UA, "Generate without a key", timeout=10)
    expect_generate_error(stub, req, UA, "Generate with a wrong key", timeout=10,
                          metadata=[("authorization", "Bearer " + API_KEY + "x")])
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10, metadata=good)
    check(info.vocab_size == VOCAB, "GetModelInfo with the key")
    generate(stub, req, timeout=30, metadata=good).check_complete("Generate with the key")
    generate(stub, req, timeout=30, metadata=[("x-api-key", API_KEY)]).check_complete(
        "Generate with x-api-key")
    check(srv.health() == SERVING, "health needs no key")
    check(srv.metric("moe_requests_total", outcome="unauthenticated") == 2,
          "moe_requests_total{unauthenticated} is not 2")
    srv.stop()
    return repr(d)


def test_10_model_info_and_tokenizer():
    """GetModelInfo describes mixtral-f32 on 3 ranks; Tokenize/Detokenize round-trip."""
    stub = S.main.stub()
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    check(info.architecture == "MixtralForCausalLM", f"architecture {info.architecture}")
    for field, want in [("layers", 2), ("hidden_size", 64), ("num_experts", 8),
                        ("experts_per_token", 2), ("vocab_size", VOCAB),
                        ("context_length", CONTEXT), ("sliding_window", 0), ("ranks", 3)]:
        check(getattr(info, field) == want, f"{field} {getattr(info, field)}, expected {want}")
    check(os.path.samefile(info.model_dir, MODEL), f"model_dir {info.model_dir}")
    experts = sorted(o.expert for o in info.placement)
    check(experts == list(range(8)), f"placement lists experts {experts}")
    ranks = sorted({o.rank for o in info.placement})
    check(ranks == [1, 2], f"placement uses ranks {ranks}, expected 1 and 2")
    for o in info.placement:
        check(0 <= o.block_begin < o.block_end, f"expert {o.expert} blocks "
                                                f"[{o.block_begin}, {o.block_end})")
    ids = list(stub.Tokenize(pb.TokenizeRequest(text="Hello world"), timeout=10).ids)
    check(len(ids) >= 2 and ids[0] == 1, f"Tokenize 'Hello world' = {ids}: no BOS first")
    check(all(0 <= i < VOCAB for i in ids), f"Tokenize gave ids outside the vocabulary: {ids}")
    no_bos = list(stub.Tokenize(pb.TokenizeRequest(text="Hello world", add_bos=False),
                                timeout=10).ids)
    check(no_bos == ids[1:], f"add_bos=false gave {no_bos}, expected {ids[1:]}")
    text = stub.Detokenize(pb.DetokenizeRequest(ids=ids), timeout=10).text
    check(text == "Hello world", f"Detokenize(Tokenize('Hello world')) = {text!r}")
    by_rank = {r: sorted(o.expert for o in info.placement if o.rank == r) for r in ranks}
    return f"placement {by_rank}; 'Hello world' -> {ids}"


def test_11_stops():
    """stop_token_ids = [the 5th greedy token] ends with EOS after 5 tokens; a stop string from
    the greedy text ends with STOP and the text ends before it."""
    stub = S.main.stub()
    rng = random.Random(11)
    base = None
    for attempt in range(50):
        prompt = [1] + [rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 12))]
        r = generate(stub, ids_req(prompt, max_tokens=64, ignore_eos=True), timeout=30)
        r.check_complete("greedy run")
        ids = r.ids()
        if ids[4] not in ids[:4]:
            base = (prompt, r)
            break
    check(base, "no greedy continuation whose 5th token is new")
    prompt, r = base
    ids, text = r.ids(), r.text()
    s = generate(stub, ids_req(prompt, max_tokens=64, ignore_eos=True, stop_token_ids=[ids[4]]),
                 timeout=30)
    s.check_complete("stop_token_ids run")
    check(s.final.finish_reason == F.Value("FINISH_REASON_EOS"),
          f"stop_token_ids: finish {F.Name(s.final.finish_reason)}, expected EOS")
    check(s.ids() == ids[:5], f"stop_token_ids: tokens {s.ids()}, expected {ids[:5]}")

    # A stop string: 2-3 plain ASCII characters of the greedy text, first occurring past the
    # first few characters, from a prompt whose text has one.
    found = None
    for attempt in range(60):
        if attempt:
            prompt = [1] + [rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 12))]
            r = generate(stub, ids_req(prompt, max_tokens=64, ignore_eos=True), timeout=30)
            r.check_complete("greedy run")
            text = r.text()
        for a in range(3, len(text) - 3):
            for n in (3, 2):
                cand = text[a:a + n]
                if re.fullmatch(r"[A-Za-z]+", cand) and text.find(cand) == a and \
                        "\ufffd" not in text[:a + n + 1]:
                    found = (prompt, text, cand, a)
                    break
            if found:
                break
        if found:
            break
    check(found, "no greedy text with a usable stop string")
    prompt, text, stop, at = found
    s = generate(stub, ids_req(prompt, max_tokens=64, ignore_eos=True, stop=["#never#", stop]),
                 timeout=30)
    s.check_complete("stop string run")
    check(s.final.finish_reason == F.Value("FINISH_REASON_STOP"),
          f"stop {stop!r}: finish {F.Name(s.final.finish_reason)}, expected STOP")
    check(s.text() == text[:at], f"stop {stop!r}: text {s.text()!r}, expected {text[:at]!r}")
    check(len(s.ids()) < 64, "stop string: ran to max_tokens")
    return f"stop id {ids[4]} after 5 tokens; stop string {stop!r} cut the text at {at}"


def test_12_load():
    """500 requests from 16 threads (max_tokens 4-16, some invalid) within 120 s: each ends
    complete (finish set, usage == streamed tokens) or with an explicit status; none lost."""
    srv = S.main
    wait_blocks_free(srv)
    m0 = srv.metrics()
    stub = srv.stub()
    rng = random.Random(500)
    reqs = []
    for i in range(500):
        kw = dict(max_tokens=rng.randint(4, 16), request_id=f"load-{i}",
                  ignore_eos=rng.random() < 0.5)
        if rng.random() < 0.5:
            kw.update(temperature=rng.choice([0.7, 1.0]), seed=i, top_k=rng.choice([0, 10]),
                      top_p=rng.choice([None, 0.9]))
        if rng.random() < 0.2:
            kw["logprobs"] = rng.choice([0, 3])
        if rng.random() < 0.1:
            kw["stop"] = ["e", "th"]
        prompt = [1] + [rng.randrange(3, VOCAB) for _ in range(rng.randint(1, 32))]
        invalid = i % 25 == 7
        if invalid:
            kind = (i // 25) % 4
            if kind == 0:
                prompt = [1, 99999]
            elif kind == 1:
                kw["temperature"] = -1.0
            elif kind == 2:
                kw["max_tokens"] = 0
            else:
                kw["top_p"] = 1.5
        reqs.append((invalid, prompt, ids_req(prompt, **kw)))
    outcomes = [None] * len(reqs)
    next_i = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + 120

    def worker():
        while time.monotonic() < deadline:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(reqs):
                return
            invalid, prompt, req = reqs[i]
            r = generate(stub, req, timeout=60)
            if r.code != grpc.StatusCode.OK:
                outcomes[i] = ("error", r.code.name, not r.msgs, r)
                continue
            try:
                r.check_complete(req.request_id)
                check(r.final.usage.prompt_tokens == len(prompt), "prompt_tokens")
                check(all(m.request_id == req.request_id for m in r.msgs), "request_id")
                if r.final.finish_reason == F.Value("FINISH_REASON_LENGTH"):
                    check(len(r.ids()) == req.max_tokens, "LENGTH before max_tokens")
                outcomes[i] = ("complete", F.Name(r.final.finish_reason), True, r)
            except TestFailure as e:
                outcomes[i] = ("lost", str(e), False, r)

    t0 = time.monotonic()
    run_threads([worker] * 16, 130, "load test")
    took = time.monotonic() - t0
    counts = {}
    for o in outcomes:
        key = "not run" if o is None else f"{o[0]}:{o[1]}"
        counts[key] = counts.get(key, 0) + 1
    print("      outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    check(all(o is not None for o in outcomes),
          f"{sum(o is None for o in outcomes)} requests not run within 120 s")
    lost = [(reqs[i][2].request_id, o[1]) for i, o in enumerate(outcomes) if o[0] == "lost"]
    check(not lost, f"{len(lost)} requests lost: {lost[:5]}")
    bad = [(reqs[i][2].request_id, o[1]) for i, o in enumerate(outcomes) if o[0] == "error"
           and not o[2]]
    check(not bad, f"errors after streamed messages: {bad[:5]}")
    wrong = [(reqs[i][2].request_id, reqs[i][0], o[0], o[1]) for i, o in enumerate(outcomes)
             if (reqs[i][0] and o[1] != "INVALID_ARGUMENT") or (not reqs[i][0] and o[0] != "complete")]
    check(not wrong, f"{len(wrong)} requests with the wrong outcome (id, invalid, outcome): "
                     f"{wrong[:5]}")
    wait_blocks_free(srv)
    m1 = srv.metrics()
    delta = lambda o: m1.get(("moe_requests_total", frozenset({("outcome", o)})), 0) - \
        m0.get(("moe_requests_total", frozenset({("outcome", o)})), 0)  # noqa
    n_ok = sum(o[0] == "complete" for o in outcomes)
    n_bad = sum(o[1] == "INVALID_ARGUMENT" for o in outcomes)
    check(delta("ok") == n_ok, f"moe_requests_total{{ok}} grew by {delta('ok')}, not {n_ok}")
    check(delta("invalid_argument") == n_bad,
          f"moe_requests_total{{invalid_argument}} grew by {delta('invalid_argument')}, not {n_bad}")
    gen = sum(len(o[3].ids()) for o in outcomes if o[0] == "complete")
    gen_delta = m1[("moe_generation_tokens_total", frozenset())] - \
        m0[("moe_generation_tokens_total", frozenset())]
    check(gen_delta == gen, f"moe_generation_tokens_total grew by {gen_delta}, not {gen}")
    return f"{len(reqs)} requests in {took:.1f} s ({len(reqs) / took:.0f}/s), {gen} tokens"


def test_13_tls():
    """--tls-cert/--tls-key: a TLS client trusting the self-signed cert is served; a plaintext
    client is not."""
    if S.tls is None:
        return "SKIPPED (no openssl)"
    srv = S.tls
    stub = srv.stub()
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    check(info.vocab_size == VOCAB, "GetModelInfo over TLS")
    generate(stub, ids_req([1, 2, 3], max_tokens=4), timeout=30).check_complete("Generate over TLS")
    check(srv.health() == SERVING, "health over TLS")
    plain = grpc.insecure_channel(srv.address)
    try:
        expect_error(grpc.StatusCode.UNAVAILABLE,
                     lambda: pb_grpc.InferenceServiceStub(plain).GetModelInfo(
                         pb.GetModelInfoRequest(), timeout=5),
                     "a plaintext call to the TLS server")
    finally:
        plain.close()
    srv.stop()
    return "TLS call served, plaintext refused"


def window_requests(rng, n):
    """Prompts and generations much longer than the window of 8."""
    reqs = []
    for i in range(n):
        plen = rng.randint(1, 60)
        kw = dict(max_tokens=rng.randint(40, CONTEXT - plen - 1), request_id=f"win-{i}",
                  ignore_eos=True)
        if i % 2:
            kw.update(temperature=1.0, seed=77 + i, top_k=rng.choice([0, 20]))
        if i % 3 == 1:
            kw["logprobs"] = rng.choice([0, 4])
        reqs.append(ids_req([1] + [rng.randrange(3, VOCAB) for _ in range(plen)], **kw))
    return reqs


def test_14_sliding_window():
    """mixtral-window (window 8) with --kv-block-size 4: a lone 200-token generation never holds
    more than the window's 5 blocks, and 12 concurrent long requests equal their solo runs."""
    srv = S.window
    info = srv.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    check(info.sliding_window == 8, f"sliding_window {info.sliding_window}")
    wait_blocks_free(srv)
    blocks = []
    r = generate(srv.stub(), ids_req([1] + list(range(10, 40)), max_tokens=200, ignore_eos=True),
                 timeout=60, on_message=lambda r, call: blocks.append(
                     srv.metric("moe_kv_blocks_in_use")) if len(r.msgs) % 10 == 0 else None)
    r.check_complete("the lone long generation")
    # BlocksNeeded: ceil((2 * window - 1) / block) + 1 = 5 blocks at most, whatever the length.
    check(blocks and max(blocks) <= 5, f"a lone sequence held up to {max(blocks or [0])} KV blocks "
                                       f"(window 8, block 4: at most 5)")
    wait_blocks_free(srv)
    reqs = window_requests(random.Random(14), 12)
    conc, peak, peak_blocks = concurrent_equals_solo(srv, reqs)
    check(peak_blocks <= 5 * len(reqs), f"{peak_blocks} KV blocks in use for {len(reqs)} sequences")
    srv.stop()
    return f"lone sequence peak {int(max(blocks))} blocks; {len(reqs)} concurrent, " \
           f"{sum(len(r.ids()) for r in conc)} tokens, peak running {peak}, peak blocks {peak_blocks}"


def test_15_dense():
    """mistral-window (dense, window 8) on 3 ranks: GetModelInfo says no experts, and 8
    concurrent requests equal their solo runs."""
    srv = S.dense
    info = srv.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    check(info.architecture == "MistralForCausalLM", f"architecture {info.architecture}")
    check(info.num_experts == 0 and info.experts_per_token == 0 and info.ranks == 3,
          f"dense model info: experts {info.num_experts}, top-k {info.experts_per_token}, "
          f"ranks {info.ranks}")
    reqs = window_requests(random.Random(15), 8)
    conc, peak, _ = concurrent_equals_solo(srv, reqs)
    srv.stop()
    return f"{len(info.placement)} placement entries; {len(reqs)} concurrent, peak running {peak}"


def emulated_requests(rng):
    """4 short requests (the emulated device runs its kernels on the host, slowly): greedy and
    sampled, one with logprobs."""
    reqs = []
    for i in range(4):
        kw = dict(max_tokens=rng.randint(4, 8), request_id=f"gpu-{i}", ignore_eos=True)
        if i % 2:
            kw.update(temperature=0.8, seed=31 + i, top_k=rng.choice([0, 20]))
        if i == 3:
            kw["logprobs"] = 3
        reqs.append(ids_req([1] + [rng.randrange(3, VOCAB) for _ in range(rng.randint(1, 20))],
                            **kw))
    return reqs


def test_16_emulated_gpu():
    """The GPU path on the emulated device (tests/emulated_gpu/), 3 ranks over mpi-link with
    two micro-batches: the engine's batched steps on it (prefill chunks beside decode rows,
    sequences joining and leaving, each step cut in two between its sequences or inside one)
    give 4 concurrent requests their solo results bit for bit. (Its tokens against the CPU's:
    the gpu_emulated test, on bf16 checkpoints.)"""
    if S.gpu is None:
        return "skipped: GPU_EMULATED is not set"
    reqs = emulated_requests(random.Random(16))
    conc, peak, _ = concurrent_equals_solo(S.gpu, reqs, timeout=300)
    S.gpu.stop()
    return f"{len(reqs)} concurrent on the emulated GPU, peak running {peak}"


TESTS = [
    # The servers that one test stops go first, so that fewer idle ranks share the CPUs later.
    test_09_api_key,
    test_13_tls,
    test_05_queue_full,
    test_05b_queue_bound,
    test_05c_free_slots,
    test_06_oversized_request,
    test_02_cancel_frees_blocks,
    test_03_deadline,
    test_07_drain,
    test_14_sliding_window,
    test_15_dense,
    test_10_model_info_and_tokenizer,
    test_08_reflection,
    test_04_invalid_arguments,
    test_11_stops,
    test_16_emulated_gpu,
    test_01_concurrent_equals_solo,
    test_12_load,
]


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup on a ctest timeout
    only = sys.argv[1:]
    for path in (MOE, MODEL):
        if not os.path.exists(path):
            print(f"FAIL: {path} is missing (set MOE, DATA, ROOT)")
            return 1
    failed = []
    t_all = time.monotonic()
    try:
        t0 = time.monotonic()
        try:
            start_servers()
        except Exception:
            traceback.print_exc()
            for s in Server.all:
                print(s.log_tail())
            print(f"FAIL  starting servers ({time.monotonic() - t0:.1f} s)")
            return 1
        print(f"ok    servers ready: {', '.join(s.name for s in Server.all)} "
              f"({time.monotonic() - t0:.1f} s)", flush=True)
        for test in TESTS:
            name = test.__name__
            if only and not any(o in name for o in only):
                continue
            t0 = time.monotonic()
            try:
                note = test()
                print(f"ok    {name} ({time.monotonic() - t0:.2f} s): {note}", flush=True)
            except Exception as e:
                failed.append(name)
                if isinstance(e, TestFailure):
                    print(f"FAIL  {name} ({time.monotonic() - t0:.2f} s): {e}", flush=True)
                else:
                    print(f"FAIL  {name} ({time.monotonic() - t0:.2f} s):", flush=True)
                    traceback.print_exc()
                for s in Server.all:
                    if s.proc and s.proc.poll() is not None and s.proc.returncode != 0:
                        print(f"  server {s.name} exited {s.proc.returncode}:\n{s.log_tail()}")
        # The main server must also stop cleanly.
        for s in Server.all:
            if s.proc and s.proc.poll() is None:
                try:
                    s.stop()
                except TestFailure as e:
                    failed.append(f"stop {s.name}")
                    print(f"FAIL  stopping {s.name}: {e}")
    finally:
        for s in Server.all:
            s.close_channel()
            if s.proc and s.proc.poll() is None:
                s.kill()
        if failed and os.environ.get("MOE_KEEP_SCRATCH"):
            print(f"kept {SCRATCH}")
        else:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    total = time.monotonic() - t_all
    if failed:
        print(f"FAILED {len(failed)}: {', '.join(failed)} ({total:.1f} s)")
        return 1
    print(f"PASSED ({total:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
