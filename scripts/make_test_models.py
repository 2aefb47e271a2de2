#!/usr/bin/env python3
"""Generate the tiny test models, tokenizer and golden outputs under tests/data/.

How to run (from the repository root; CPU only, about 10 seconds):

    python3 -m pip install -r scripts/golden/requirements.txt && python3 scripts/make_test_models.py

What it writes (it deletes and rewrites all of these on every run, so it is
idempotent; the outputs are deterministic for the pinned package versions):

  tests/data/tokenizer.model            SentencePiece BPE, vocab 512, byte fallback,
                                        Mistral/Llama settings (identity normaliser,
                                        dummy prefix, split digits, <unk>=0 <s>=1 </s>=2)
  tests/data/models/NAME/               Hugging Face checkpoints (config.json,
                                        model.safetensors or shards + index,
                                        tokenizer.model) with random weights
  tests/data/golden/NAME/manifest.json  golden outputs computed by transformers itself
  tests/data/golden/NAME/case*.npy      (eager attention, float32, CPU)
  tests/data/golden/tokenizer.json      tokenizer encode/decode golden

Golden semantics (per model, per prompt case):
  prompt_logits  float32 [P, 512]: logits of one forward over the whole prompt.
  greedy_ids     32 ids, argmax decoding, EOS (2) does NOT stop generation.
  gen_logits     float32 [32, 512]: row i = logits from which greedy_ids[i] was
                 chosen (row 0 == last row of prompt_logits).
  mean_loglik    mean_{i=0..P-2} log_softmax(prompt_logits[i])[prompt_ids[i+1]]
                 (computed in float64); perplexity = exp(-mean_loglik).
  min_greedy_margin  smallest top1-top2 logit gap over the 32 greedy steps.
  min_router_margin  (Mixtral) smallest gap between the 2nd and 3rd router logit
                 over every token/layer of the prompt forward: how close the
                 top-2 expert selection is to a tie.
Weights: N(0, 1.0) embeddings, N(0, 0.5) router (gate) and lm_head, N(0, 0.1)
every other Linear; every RMSNorm weight is 1 + 0.1*N(0, 1).
The greedy continuation is computed by full re-computation over prompt+generated
at every step (no KV cache); it is cross-checked against incremental decoding
with transformers' KV cache.

Sliding window semantics of the installed transformers (masking_utils.
sliding_window_overlay: kv_idx > q_idx - sliding_window): a query at position p
attends to keys p-W+1..p (W keys including itself). The script re-checks this
empirically with a 1-layer model and aborts if it does not hold.
"""

import codecs
import contextlib
import io
import json
import math
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import transformers
from transformers import (
    LlamaTokenizer,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
MODELS = DATA / "models"
GOLDEN = DATA / "golden"
TOKENIZER = DATA / "tokenizer.model"

VOCAB = 512
N_NEW = 32

torch.set_num_threads(1)  # determinism + be nice to a busy machine
transformers.logging.set_verbosity_error()

# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

# Original prose written for this repository (no third-party copyright), plus
# the Zen of Python taken from the stdlib `this` module.
CORPUS_PROSE = """\
The river ran quietly past the old mill, and the miller's daughter counted the
sacks of grain that stood in a long row beside the door. There were 12 sacks on
Monday, 17 on Tuesday and 23 on Wednesday; by Friday the number had grown to 48.
She wrote every number in a small book with a green cover, because her father
had taught her that a careful record is worth more than a good memory.

In the evening the children of the village gathered under the great oak tree in
the square. An old sailor told them stories about the sea: about storms that
lasted for seven days, about islands where the birds had never seen a man, and
about the night when the ship's compass spun round and round like a top. "Was
it magic?" asked the smallest girl. "No," said the sailor, "it was iron in the
cargo, and a lesson for the captain who forgot to check it."

Winter came early that year. Snow covered the fields, the road to the town was
closed for three weeks, and the baker made bread only twice a week. People
shared what they had: wood for the fire, milk from the goats, apples from the
cellar, and long conversations by the window while the light faded at four
o'clock in the afternoon.

When spring returned, the river rose and the wheel of the mill turned faster
than ever before. The miller repaired the roof, painted the shutters blue and
planted a row of cherry trees along the path. His daughter, now fifteen, began
to keep the accounts of three farms as well as the mill. She was patient,
precise and honest, and soon the farmers of the whole valley came to ask for
her help with their numbers, their letters and their plans for the future.

A computer is a machine that follows instructions. A program is a list of
instructions written in a language that both people and machines can read. The
model reads the text, splits it into tokens, and predicts the next token again
and again until the answer is complete. Good tests compare the output with a
known result: if the numbers match, the program is probably correct; if they do
not, there is a bug to find and fix.

Prices: 3 apples cost 1.50, 10 pears cost 4.25, and 100 grams of tea cost 7.99.
The train leaves at 08:45 and arrives at 13:20, a journey of 4 hours and 35
minutes. Call 555-0199 for details, or write to the office at 42 Station Road.
"""


def training_text():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        import this  # noqa: F401  (prints the Zen when imported)
    zen = codecs.decode(this.s, "rot13")
    lines = [l.strip() for l in (CORPUS_PROSE + "\n" + zen).splitlines()]
    return [l for l in lines if l]


def train_tokenizer():
    lines = training_text()
    model = io.BytesIO()
    # sentence_iterator + model_writer: no file paths end up in the trainer spec
    # stored inside the model, so the output is byte-for-byte reproducible.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB,
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        split_digits=True,
        add_dummy_prefix=True,
        # the rest mirrors the Llama/Mistral tokenizer.model trainer spec
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        max_sentencepiece_length=16,
        split_by_unicode_script=True,
        split_by_number=True,
        split_by_whitespace=True,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    TOKENIZER.parent.mkdir(parents=True, exist_ok=True)
    TOKENIZER.write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    assert sp.get_piece_size() == VOCAB, sp.get_piece_size()
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert sp.id_to_piece(3) == "<0x00>", sp.id_to_piece(3)
    return sp


TOKENIZER_STRINGS = [
    "Hello world",
    "The miller's daughter counted 48 sacks of grain.",
    "In 2024, 3.14159 * 100 = 314.159; call 555-0199!",
    "Punctuation: (a), [b], {c}, <d>, \"quoted\", 'single', a/b\\c, x@y.z #tag $5 %7 ^&*_+=~`|",
    "  two leading spaces",
    "trailing spaces   ",
    "double  spaces  inside   and triple",
    "line one\nline two\n\nline four\n",
    "tabs\tand\tmore",
    "Café naïve résumé — déjà vu 🙂",
    "日本語 テキスト",
    "",
]


def tokenizer_golden(sp):
    hf = LlamaTokenizer(
        vocab_file=str(TOKENIZER),
        legacy=True,
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
    )
    cases = []
    for text in TOKENIZER_STRINGS:
        ids = [sp.bos_id()] + sp.encode(text)
        hf_ids = hf.encode(text)
        if hf_ids != ids:
            print(f"tokenizer: dropping {text!r}: sentencepiece {ids} != LlamaTokenizer {hf_ids}")
            continue
        decoded = sp.decode(ids[1:])
        cases.append(
            {
                "text": text,
                "ids": ids,
                "pieces": [sp.id_to_piece(i) for i in ids],
                "decoded": decoded,
                "hf_llama_tokenizer_ids": hf_ids,
            }
        )
    assert any(any(p.startswith("<0x") for p in c["pieces"]) for c in cases), "no byte fallback exercised"
    out = {
        "tokenizer": "tokenizer.model",
        "note": "ids = [BOS=1] + sp.encode(text) (no EOS); decoded = sp.decode(ids[1:]); "
        "hf_llama_tokenizer_ids = transformers LlamaTokenizer(slow, legacy=True).encode(text)",
        "sentencepiece_version": spm.__version__,
        "transformers_version": transformers.__version__,
        "cases": cases,
    }
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with open(GOLDEN / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"tokenizer: {len(cases)} golden strings")


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
    tie_word_embeddings=False,
    attention_dropout=0.0,
    hidden_act="silu",
)

MOE = dict(num_local_experts=8, num_experts_per_tok=2, router_jitter_noise=0.0)

# name: (class, config kwargs, save dtype, max_shard_size, seed)
SPECS = {
    "mixtral-f32": (
        "mixtral",
        dict(COMMON, **MOE, rope_theta=1e6, sliding_window=None, rms_norm_eps=1e-5),
        torch.float32,
        None,
        1001,
    ),
    "mixtral-bf16-sharded": (
        "mixtral",
        dict(COMMON, **MOE, rope_theta=1e6, sliding_window=None, rms_norm_eps=1e-5),
        torch.bfloat16,
        "400KB",
        1002,
    ),
    "mixtral-window": (
        "mixtral",
        dict(COMMON, **MOE, rope_theta=1e4, sliding_window=8, rms_norm_eps=1e-5),
        torch.float32,
        None,
        1003,
    ),
    "mixtral-eps": (
        "mixtral",
        dict(COMMON, **MOE, rope_theta=1e6, sliding_window=None, rms_norm_eps=0.5),
        torch.float16,
        None,
        1004,
    ),
    "mistral-window": (
        "mistral",
        dict(COMMON, rope_theta=1e4, sliding_window=8, rms_norm_eps=1e-5),
        torch.float32,
        None,
        1005,
    ),
    "mistral-bf16": (
        "mistral",
        dict(COMMON, rope_theta=1e6, sliding_window=None, rms_norm_eps=1e-5),
        torch.bfloat16,
        None,
        1006,
    ),
}

CLASSES = {
    "mixtral": (MixtralConfig, MixtralForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}


def init_std(name):
    """Return ('normal', std) or ('norm', None) for a parameter name."""
    if name.endswith("norm.weight"):  # input_layernorm, post_attention_layernorm, model.norm
        return "norm", None
    if name == "model.embed_tokens.weight":
        return "normal", 1.0
    if name.endswith("block_sparse_moe.gate.weight"):  # router: varied expert choice
        return "normal", 0.5
    if name == "lm_head.weight":  # peakier logits -> larger greedy top1-top2 margins
        return "normal", 0.5
    if name.endswith(".weight"):  # q/k/v/o, experts w1/w2/w3, mlp gate/up/down, lm_head
        return "normal", 0.1
    raise ValueError(f"unexpected parameter {name}")


def build_model(kind, cfg_kwargs, seed):
    cfg_cls, model_cls = CLASSES[kind]
    config = cfg_cls(**cfg_kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            how, std = init_std(name)
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if how == "norm":
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(std * noise)
    return model


def save_model(name, kind, cfg_kwargs, dtype, shard, seed):
    out = MODELS / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model = build_model(kind, cfg_kwargs, seed).to(dtype)
    kw = dict(safe_serialization=True)
    if shard:
        kw["max_shard_size"] = shard
    model.save_pretrained(out, **kw)
    gc = out / "generation_config.json"
    if gc.exists():
        gc.unlink()
    shutil.copyfile(TOKENIZER, out / "tokenizer.model")
    files = sorted(p.name for p in out.iterdir())
    if shard:
        n = len([f for f in files if f.endswith(".safetensors")])
        assert n >= 3 and "model.safetensors.index.json" in files, files
    else:
        assert "model.safetensors" in files, files
    return model


# --------------------------------------------------------------------------
# Golden outputs
# --------------------------------------------------------------------------


def make_prompts():
    rng = random.Random(20240501)
    a = [1] + [rng.randrange(3, VOCAB) for _ in range(4)]
    b = [rng.randrange(3, VOCAB) for _ in range(20)]
    c = [1] + [rng.randrange(3, VOCAB) for _ in range(39)]
    return [a, b, c]


def forward(model, ids, **kw):
    return model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False, **kw)


def router_picks(router_logits, top_k):
    """router_logits: tuple (per layer) of [T, E] tensors. Returns per-layer sets and min margin."""
    picked, margin = [], math.inf
    for rl in router_logits:
        rl = rl.float()
        srt = torch.sort(rl, dim=-1, descending=True).values
        margin = min(margin, float((srt[:, top_k - 1] - srt[:, top_k]).min()))
        picked.append(set(torch.topk(rl, top_k, dim=-1).indices.flatten().tolist()))
    return picked, margin


def golden_for(name, kind, saved_model):
    _, model_cls = CLASSES[kind]
    src = MODELS / name
    model = model_cls.from_pretrained(src, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    # 16-bit weights must have been widened exactly
    saved = dict(saved_model.named_parameters())
    for pn, p in model.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p, saved[pn].detach().float()), pn

    out_dir = GOLDEN / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    is_moe = kind == "mixtral"
    n_layers = model.config.num_hidden_layers
    n_exp = model.config.num_local_experts if is_moe else 0
    coverage = [set() for _ in range(n_layers)]
    router_margin = math.inf
    cases = []
    max_cache_diff = 0.0
    with torch.no_grad():
        for ci, ids in enumerate(make_prompts()):
            P = len(ids)
            assert P + N_NEW <= model.config.max_position_embeddings
            kw = dict(output_router_logits=True) if is_moe else {}
            out = forward(model, ids, **kw)
            logits = out.logits[0].float()
            assert logits.shape == (P, VOCAB)
            if is_moe:
                picked, m = router_picks(out.router_logits, model.config.num_experts_per_tok)
                router_margin = min(router_margin, m)
                for li in range(n_layers):
                    coverage[li] |= picked[li]
            lp = torch.log_softmax(logits.double(), dim=-1)
            mean_ll = float(sum(lp[i, ids[i + 1]] for i in range(P - 1)) / (P - 1))
            ppl = math.exp(-mean_ll)

            # greedy, full recomputation, EOS ignored
            seq = list(ids)
            rows, greedy, gmargin = [], [], math.inf
            for _ in range(N_NEW):
                row = forward(model, seq).logits[0, -1].float()
                top2 = torch.topk(row, 2).values
                gmargin = min(gmargin, float(top2[0] - top2[1]))
                nxt = int(torch.argmax(row))
                rows.append(row)
                greedy.append(nxt)
                seq.append(nxt)
            gen = torch.stack(rows)
            assert torch.equal(gen[0], logits[-1]) or torch.allclose(gen[0], logits[-1], atol=1e-6)

            # cross-check with transformers' KV cache (teacher-forcing the greedy ids)
            o = model(input_ids=torch.tensor([ids]), use_cache=True)
            past, inc = o.past_key_values, [o.logits[0, -1].float()]
            for t in greedy[:-1]:
                o = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
                past = o.past_key_values
                inc.append(o.logits[0, -1].float())
            inc = torch.stack(inc)
            d = float((inc - gen).abs().max())
            max_cache_diff = max(max_cache_diff, d)
            assert d < 1e-3, (name, ci, d)
            assert [int(x) for x in inc.argmax(-1)] == greedy, (name, ci)

            pfile, gfile = f"case{ci}.prompt.npy", f"case{ci}.gen.npy"
            np.save(out_dir / pfile, np.ascontiguousarray(logits.numpy().astype(np.float32)))
            np.save(out_dir / gfile, np.ascontiguousarray(gen.numpy().astype(np.float32)))
            case = {
                "prompt_ids": ids,
                "prompt_logits": pfile,
                "gen_logits": gfile,
                "greedy_ids": greedy,
                "mean_loglik": mean_ll,
                "perplexity": ppl,
                "min_greedy_margin": gmargin,
            }
            cases.append(case)

    if is_moe:
        for li in range(n_layers):
            missing = sorted(set(range(n_exp)) - coverage[li])
            assert not missing, f"{name}: layer {li} experts never routed to over the golden prompts: {missing}"
        for c in cases:
            c["min_router_margin"] = router_margin

    manifest = {
        "model": name,
        "cases": cases,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    with open(out_dir / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    info = ", ".join(
        f"case{i}: ppl={c['perplexity']:.3f} margin={c['min_greedy_margin']:.4f} eos_in_greedy={2 in c['greedy_ids']}"
        for i, c in enumerate(cases)
    )
    extra = f" router_margin={router_margin:.5f} all {n_exp} experts routed in every layer" if is_moe else ""
    print(f"{name}: {info};{extra} max|cache-full|={max_cache_diff:.2e}")


def check_sliding_window_semantics():
    """Empirically confirm: query p sees keys p-W+1..p (1 layer, so no propagation)."""
    W = 8
    cfg = MistralConfig(**dict(COMMON, num_hidden_layers=1, rope_theta=1e4, sliding_window=W, rms_norm_eps=1e-5))
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    m = MistralForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
        ids = list(range(10, 30))
        p = 15
        base = forward(m, ids).logits[0, p]
        for k, should_change in [(p - W, False), (p - W + 1, True), (p - 1, True)]:
            alt = list(ids)
            alt[k] = 200
            changed = not torch.equal(forward(m, alt).logits[0, p], base)
            assert changed == should_change, f"sliding window semantics differ: key {k} query {p} changed={changed}"
    print(f"sliding window check OK: query p attends keys p-{W - 1}..p (W={W})")


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, sentencepiece {spm.__version__}")
    check_sliding_window_semantics()
    sp = train_tokenizer()
    tokenizer_golden(sp)
    if MODELS.exists():
        shutil.rmtree(MODELS)
    for name, (kind, cfg_kwargs, dtype, shard, seed) in SPECS.items():
        saved = save_model(name, kind, cfg_kwargs, dtype, shard, seed)
        golden_for(name, kind, saved)
    # remove golden dirs of models that no longer exist
    for d in GOLDEN.iterdir():
        if d.is_dir() and d.name not in SPECS:
            shutil.rmtree(d)
    total = sum(f.stat().st_size for f in DATA.rglob("*") if f.is_file())
    print(f"tests/data total: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
