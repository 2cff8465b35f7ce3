#!/usr/bin/python3
"""PyTorch CPU reference benchmark for tabtune's fine-tuning step.

Runs the same GPT-2 training step that tabtune runs on tfjs (forward, backward,
clip, AdamW) so the two can be compared on the same machine. Written for
Debian's torch 1.13 (/usr/bin/python3); no `transformers`/`peft` import, the
model and LoRA are written out below so what is timed is plain to see.

Usage (single-threaded, OpenBLAS left to detect the core itself):
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 \
      OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
      /usr/bin/python3 src/cli/bench-torch.py '<json>' [--selftest]

JSON: {"cases": [{name, vocab, layers, embd, heads, context, batch, block,
                  method: "lora"|"full", r, alpha, targets, warmup, steps}],
       "matmul": n}
Prints one JSON line on stdout. If torch cannot be imported it prints
{"skipped": reason} and exits 0, so callers can treat torch as optional.
"""

import ctypes
import json
import math
import os
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as err:  # ImportError, or a broken install raising OSError
    print(json.dumps({"skipped": f"torch import failed: {err}"}))
    sys.exit(0)


# ---------------------------------------------------------------- model ----

class CausalSelfAttention(nn.Module):
    """GPT-2 attention; c_attn/c_proj are HF Conv1D layers, here nn.Linear
    (same maths and FLOPs, the weight is just stored transposed)."""

    def __init__(self, embd, heads, context):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(embd, 3 * embd)
        self.c_proj = nn.Linear(embd, embd)
        mask = torch.tril(torch.ones(context, context, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, context, context), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        D = C // self.heads
        q, k, v = self.c_attn(x).split(C, dim=2)
        # [B, T, C] -> [B, H, T, D]
        q, k, v = (t.view(B, T, self.heads, D).transpose(1, 2) for t in (q, k, v))
        # Plain matmul attention on purpose (no scaled_dot_product_attention),
        # matching what the tfjs side computes.
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D)
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, embd):
        super().__init__()
        self.c_fc = nn.Linear(embd, 4 * embd)
        self.c_proj = nn.Linear(4 * embd, embd)

    def forward(self, x):
        # GPT-2's "gelu_new" is the tanh approximation.
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-LN transformer block, no dropout (benchmark the arithmetic only)."""

    def __init__(self, embd, heads, context):
        super().__init__()
        self.ln_1 = nn.LayerNorm(embd, eps=1e-5)
        self.attn = CausalSelfAttention(embd, heads, context)
        self.ln_2 = nn.LayerNorm(embd, eps=1e-5)
        self.mlp = MLP(embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, vocab, layers, embd, heads, context):
        super().__init__()
        self.wte = nn.Embedding(vocab, embd)
        self.wpe = nn.Embedding(context, embd)
        self.h = nn.ModuleList(Block(embd, heads, context) for _ in range(layers))
        self.ln_f = nn.LayerNorm(embd, eps=1e-5)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        # GPT-2 init: N(0, 0.02) weights, zero biases (LayerNorm keeps 1/0).
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        # Output head tied to the token embedding, as in GPT-2.
        return self.ln_f(x) @ self.wte.weight.t()


# ----------------------------------------------------------------- LoRA ----

class LoraLinear(nn.Module):
    """PEFT's LoRA Linear: out = W x + b + B(A(x)) * alpha / r.

    A: [r, in], Kaiming-uniform with a=sqrt(5) (bound 1/sqrt(in)), as PEFT.
    B: [out, r], zeros, so the wrapped layer starts identical to the base.
    lora_dropout is 0 here, so PEFT would skip dropout too (nn.Identity).
    """

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


# Shorthand target names -> the GPT-2 module names they match (PEFT-style
# suffix match, so a bare "c_proj" would hit both attn.c_proj and mlp.c_proj).
ALL_LINEAR = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]


def target_matches(module_name, targets):
    for t in targets:
        wanted = ALL_LINEAR if t == "all-linear" else [t]
        if any(module_name == w or module_name.endswith("." + w) for w in wanted):
            return True
    return False


def apply_lora(model, r, alpha, targets):
    """Freeze the base and swap targeted Linears for LoraLinear; returns how
    many layers were wrapped."""
    for p in model.parameters():
        p.requires_grad_(False)
    hits = [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and target_matches(n, targets)]
    if not hits:
        raise ValueError(f"no module matches targets {targets}")
    for name, lin in hits:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, LoraLinear(lin, r, alpha))
    return len(hits)


# ------------------------------------------------------------- training ----

def make_optimizer(model):
    """AdamW; weight decay only on matrices (dim >= 2: Linear weights,
    embeddings, LoRA A/B), not on biases or LayerNorm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.01},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8), params


def train_step(model, opt, params, ids, targets):
    opt.zero_grad(set_to_none=True)
    logits = model(ids)
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    # .item() forces the step to have really finished (matters on lazy
    # backends; on CPU eager it is cheap but keeps the two sides alike).
    return loss.item()


def build_case(case):
    torch.manual_seed(0)
    model = GPT2(case["vocab"], case["layers"], case["embd"], case["heads"], case["context"])
    if case.get("method", "lora") == "lora":
        apply_lora(model, case.get("r", 8), case.get("alpha", 16), case.get("targets", ["c_attn"]))
    elif case["method"] != "full":
        raise ValueError(f"unknown method {case['method']}")
    opt, params = make_optimizer(model)
    shape = (case["batch"], case["block"])
    ids = torch.randint(0, case["vocab"], shape)
    targets = torch.randint(0, case["vocab"], shape)
    return model, opt, params, ids, targets


def run_case(case):
    if case["block"] > case["context"]:
        raise ValueError("block must be <= context")
    model, opt, params, ids, targets = build_case(case)
    model.train()
    for _ in range(case.get("warmup", 3)):
        train_step(model, opt, params, ids, targets)
    steps_ms = []
    for _ in range(case.get("steps", 10)):
        t0 = time.perf_counter()
        train_step(model, opt, params, ids, targets)
        steps_ms.append((time.perf_counter() - t0) * 1e3)
    median = statistics.median(steps_ms)
    return {
        "name": case["name"],
        "medianMs": round(median, 3),
        "tokensPerSec": round(case["batch"] * case["block"] / (median / 1e3), 1),
        "stepsMs": [round(s, 3) for s in steps_ms],
        "trainableParams": sum(p.numel() for p in params),
        # ru_maxrss is KiB on Linux and a process-wide high-water mark, so
        # this is cumulative over the cases run so far, not per case.
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


# ---------------------------------------------------------- environment ----

def matmul_peak(n):
    """float32 n x n matmul throughput: warm-up 2, median of 5."""
    torch.manual_seed(0)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return {"n": n, "gflops": round(2 * n ** 3 / t / 1e9, 2)}


def detect_blas():
    """Which BLAS torch actually runs its matmuls on.

    Debian builds torch with BLAS_INFO=generic against libblas.so.3, which the
    alternatives system points at OpenBLAS or at the slow reference BLAS, so
    the build config can't tell. Nor can the list of mapped libraries alone:
    libtorch_cpu also links libopenblas.so.0 directly, so OpenBLAS is mapped
    even when sgemm_ comes from reference libblas (e.g. with LD_LIBRARY_PATH
    pointing at /usr/lib/x86_64-linux-gnu/blas). So resolve sgemm_ the way
    libtorch_cpu sees it and ask the loader which file it lives in.
    Returns (label, sgemm_path, blas/lapack paths mapped in this process)."""
    mapped = sorted({f for f in mapped_files() if "blas" in f.lower() or "lapack" in f.lower()})
    sgemm = sgemm_provider()
    name = sgemm.lower()
    if "openblas" in name:
        kind = "openblas-pthread" if "pthread" in name else "openblas-openmp" if "openmp" in name else "openblas"
        info = openblas_info()
        label = f"{kind} ({info})" if info else kind
    elif "/blas/libblas" in name:
        label = "reference libblas (netlib, unoptimised)"
    elif "mkl" in name:
        label = "mkl"
    else:
        label = f"unknown ({sgemm or 'sgemm_ not resolved'})"
    return label, sgemm, mapped


def mapped_files():
    """Paths of the files mapped into this process (/proc/<pid>/maps)."""
    with open(f"/proc/{os.getpid()}/maps") as f:
        return [parts[5] for parts in (line.split() for line in f) if len(parts) >= 6]


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def sgemm_provider():
    """Real path of the library that libtorch_cpu's sgemm_ resolves to
    (dlsym on its handle searches it, then its dependencies in load order)."""
    try:
        libtorch = next(f for f in mapped_files() if "libtorch_cpu" in f)
        addr = ctypes.cast(ctypes.CDLL(libtorch).sgemm_, ctypes.c_void_p).value
        info = _DlInfo()
        if not ctypes.CDLL(None).dladdr(ctypes.c_void_p(addr), ctypes.byref(info)):
            return ""
        return os.path.realpath(info.dli_fname.decode())
    except (StopIteration, OSError, AttributeError):
        return ""


def openblas_info():
    """Ask the loaded OpenBLAS for its config, core kernel and thread count
    (dlopen of an already-mapped soname returns the same instance)."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return "{}; core {}; threads {}".format(
            lib.openblas_get_config().decode().strip(),
            lib.openblas_get_corename().decode(),
            lib.openblas_get_num_threads())
    except (OSError, AttributeError):
        return ""


def build_blas_info():
    for line in torch.__config__.show().splitlines():
        if "BLAS_INFO=" in line:
            return line.split("BLAS_INFO=")[1].split(",")[0]
    return "?"


# ------------------------------------------------------------ self-test ----

def selftest():
    """LoRA B starts at zero, and a LoRA step changes only lora_A/lora_B."""
    case = {"name": "selftest", "vocab": 64, "layers": 2, "embd": 32, "heads": 4,
            "context": 16, "batch": 2, "block": 16, "method": "lora", "r": 4,
            "alpha": 8, "targets": ["all-linear"]}
    model, opt, params, ids, targets = build_case(case)
    loras = [m for m in model.modules() if isinstance(m, LoraLinear)]
    assert len(loras) == 4 * case["layers"], len(loras)
    assert all(torch.count_nonzero(m.lora_B) == 0 for m in loras), "B must start at 0"
    bound = 1 / math.sqrt(case["embd"])
    assert all(m.lora_A.abs().max() <= bound for m in loras if m.base.in_features == case["embd"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable), trainable

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_step(model, opt, params, ids, targets)
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        # With B = 0 the first step gives A a zero gradient, so A moves only
        # by weight decay; B is the one that must have learned something.
        if n.endswith("lora_B"):
            assert changed, f"{n} did not change"
        elif not n.endswith("lora_A"):
            assert not changed, f"frozen {n} changed"

    # Bare "c_proj" hits both attention and MLP projections (PEFT suffix rule).
    assert target_matches("h.0.attn.c_proj", ["c_proj"]) and target_matches("h.0.mlp.c_proj", ["c_proj"])
    assert not target_matches("h.0.mlp.c_proj", ["attn.c_proj"])
    return "ok"


# ----------------------------------------------------------------- main ----

def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    spec = json.loads(args[0]) if args else {"cases": [], "matmul": 1024}
    blas, sgemm, mapped = detect_blas()
    out = {
        "torch": torch.__version__,
        "blas": blas,
        "blasBuild": build_blas_info(),
        "sgemmFrom": sgemm,
        "blasLibs": mapped,
        "threads": torch.get_num_threads(),
        "loraDropout": 0.0,
    }
    if "--selftest" in argv:
        out["selftest"] = selftest()
    if spec.get("matmul"):
        out["matmul"] = matmul_peak(int(spec["matmul"]))
    out["cases"] = [run_case(c) for c in spec.get("cases", [])]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
