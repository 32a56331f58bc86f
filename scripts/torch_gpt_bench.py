#!/usr/bin/env python3
"""The PyTorch reference of race's GPT (lib/model/gpt.h) with softmax attention, timed like `race-bench model`.

  python3 scripts/torch_gpt_bench.py -T 4096 -B 8 --warmup 2 --steps 5 --json torch_gpt_4k.json
  python3 scripts/torch_gpt_bench.py -T 65536 -B 1 --warmup 2 --steps 3 --json torch_gpt_64k.json

The shape options default to GPT-2 124M (12 layers, d_model 768, 12 heads, MLP 4 x d_model, vocab 50304), as
race-bench model's do; the options are race-bench model's where it has the same one.

Issue 6 puts three models side by side at the GPT-2 124M shape: ours with RACE, ours with softmax, and this
one. The model is ours in plain PyTorch: pre-LN blocks (LayerNorm eps 1e-5 with bias; a fused qkv Linear with
bias; RoPE on q and k, base 10000, GPT-NeoX's half split as lib/kernels/cpu/rope_cpu.h pairs them; causal
torch.nn.functional.scaled_dot_product_attention; the output projection; an MLP with GELU's tanh
approximation as lib/kernels/cpu/gelu_cpu.h), a final LayerNorm, the LM head tied to the token embedding,
cross-entropy over every position, GPT-2's initialisation. A step is race-bench model's: zero the
gradients, forward and backward, clip the global gradient norm at 1, AdamW (fused) with race-train's
defaults (lr 3e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only). Tokens and targets are
random (the cost of a step does not depend on the text).

--dtype bf16 (the default) is PyTorch's natural mixed precision: fp32 master weights, gradients and AdamW
state, matrix products and attention in bf16 under torch.autocast, with the flash backend forced. --dtype fp32
computes in fp32 with TF32 off (what our CUDA model does); flash attention has no fp32 kernel, so that run
forces the memory-efficient backend instead. --compile wraps the model in torch.compile; it is off by
default, because eager PyTorch is the plain reference and compilation would spend a GPU check's minutes
(with it, the first warm-up step compiles: give --warmup 2 or more).

Each step is timed on the host between two torch.cuda.synchronize() calls, like race-bench model's wall
clock; tokens/s is B*T*steps over the timed steps' seconds, the FLOPs per token are
lib/model/flops.cpp's count (training_flops_per_token below), and the MFU is against --peak-tflops.

Output: a line per step and a summary line on stdout (on stderr with --json -). With --json FILE ("-":
stdout), a JSON object whose fields mean what race-bench model's of the same name mean: {"tool", "date",
"command", "torch", "cuda", "machine": {"device", "device_memory_bytes"}, "options", "model": {"parameters",
"flops_per_token", "dtype", "sdpa_backend", "compile"}, "results": {"steps", "warmup_steps",
"tokens_per_step", "seconds", "tokens_per_s", "ms_per_step" (median), "ms_per_step_all", "losses",
"achieved_tflops", "max_memory_allocated_bytes"}, "peaks": [{"name", "tflops", "source", "mfu"}], "notes"}.
A run that cannot finish (no PyTorch, no CUDA device, out of memory, a non-finite loss) prints one error
line, writes {"tool", "date", "command", "options", "error"} to the JSON file and exits 1; a bad option
exits 2 naming it, before PyTorch is imported.

The argument checks and the FLOP count import no torch, so tests/scripts/test_torch_gpt_bench.py runs them
on a machine without it.
"""
import argparse
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import time

TOOL = "torch_gpt_bench"
# race-train's optimizer defaults, as race-bench model's model_bench.cpp takes them.
LEARNING_RATE, BETAS, ADAM_EPS, WEIGHT_DECAY, GRAD_CLIP = 3e-4, (0.9, 0.95), 1e-8, 0.1, 1.0
LAYERNORM_EPS, ROPE_BASE = 1e-5, 10000.0


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text):
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def parse_args(argv):
    """The options, checked; a bad one exits 2 with a message naming it (argparse's convention)."""
    p = argparse.ArgumentParser(prog="torch_gpt_bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=positive_int, default=12)
    p.add_argument("--d-model", type=positive_int, default=768, help="model width C")
    p.add_argument("--heads", type=positive_int, default=12, help="heads H (must divide --d-model)")
    p.add_argument("--mlp-hidden", type=positive_int, help="MLP width (default: 4 x --d-model)")
    p.add_argument("--vocab", type=int, default=50304, help="vocabulary size (GPT-2's 50257 padded to 64)")
    p.add_argument("-T", "--context", type=positive_int, default=1024, help="tokens per window T")
    p.add_argument("-B", "--batch", type=positive_int, default=1, help="windows per step B")
    p.add_argument("--steps", type=positive_int, default=3, help="timed optimizer steps")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="untimed optimizer steps first")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                   help="bf16: autocast over fp32 master weights (default); fp32: fp32 throughout, TF32 off")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default: eager)")
    p.add_argument("--peak-tflops", type=positive_float, default=989.0,
                   help="dense BF16 tensor-core peak for the MFU (default: H200 SXM, 1,979 with sparsity "
                        "halved)")
    p.add_argument("--json", help="write the report as JSON to FILE (\"-\": stdout)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the random tokens")
    args = p.parse_args(argv)
    if args.vocab < 2:
        p.error(f"argument --vocab: must be >= 2, got {args.vocab}")
    if args.d_model % args.heads != 0:
        p.error(f"argument --heads: {args.heads} does not divide --d-model {args.d_model}")
    if (args.d_model // args.heads) % 2 != 0:
        p.error(f"argument --heads: --d-model {args.d_model} / --heads {args.heads} = "
                f"{args.d_model // args.heads}: RoPE needs an even head dimension")
    if args.mlp_hidden is None:
        args.mlp_hidden = 4 * args.d_model
    # Checked now, so a run does not end in a write error after its minutes on the GPU.
    if args.json and args.json != "-":
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            p.error(f"argument --json: folder {folder} does not exist")
    return args


def parameter_count(layers, d_model, mlp_hidden, vocab):
    """Parameters of gpt.h's model with RoPE, biases and a tied head (Gpt::parameter_count)."""
    c, m = d_model, mlp_hidden
    per_layer = (2 * c  # ln1
                 + 3 * c * c + 3 * c  # qkv
                 + c * c + c  # attention output projection
                 + 2 * c  # ln2
                 + m * c + m  # MLP in
                 + c * m + c)  # MLP out
    return vocab * c + layers * per_layer + 2 * c  # the token embedding (also the head), the final LayerNorm


def training_flops_per_token(layers, d_model, heads, mlp_hidden, vocab, context):
    """lib/model/flops.cpp's training_flops_per_token for this model: causal full softmax attention in every
    layer, tied head. 6 per weight of every matrix a token goes through (forward 2, backward 4), the tied LM
    head's V x C included, plus attention's 12 T D / 2 per head (QK^T and PV, forward and backward, half of
    the keys under the causal mask)."""
    matrices = layers * (3 * d_model * d_model + d_model * d_model + 2 * mlp_hidden * d_model)
    flops = 6.0 * matrices + 6.0 * vocab * d_model
    head_dim = d_model // heads
    return flops + layers * heads * 12.0 * context * head_dim * 0.5


def utc_timestamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def options_json(args):
    """race-bench model's "options", with the fields that are fixed here (cuda, lm, softmax, full attention,
    no recomputation) spelled out so that the two reports line up."""
    return {"device": "cuda", "task": "lm", "attention": "softmax", "layers": args.layers,
            "d_model": args.d_model, "heads": args.heads, "mlp_hidden": args.mlp_hidden, "vocab": args.vocab,
            "context": args.context, "batch": args.batch, "window": 0, "recompute": False,
            "steps": args.steps, "warmup": args.warmup, "seed": args.seed, "peak_tflops": args.peak_tflops,
            "dtype": args.dtype, "compile": args.compile}


def write_report(path, report):
    if path == "-":
        print(json.dumps(report, indent=2))
        return
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(partial, path)


class RunError(Exception):
    """A run that cannot finish: reported as one line and a JSON "error", exit status 1."""


def build_model(torch, args):
    """gpt.h's GPT with softmax attention, on the GPU in fp32, initialised as Gpt::initialize does."""
    nn, F = torch.nn, torch.nn.functional
    C, H, M, V = args.d_model, args.heads, args.mlp_hidden, args.vocab
    D = C // H

    def rope(x, cos, sin):
        # x (B, H, T, D); element i pairs with i + D/2 (rope_cpu.h), cos and sin (T, D/2).
        lo, hi = x.chunk(2, dim=-1)
        return torch.cat((lo * cos - hi * sin, lo * sin + hi * cos), dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(C, eps=LAYERNORM_EPS)
            self.qkv = nn.Linear(C, 3 * C)
            self.proj = nn.Linear(C, C)
            self.ln2 = nn.LayerNorm(C, eps=LAYERNORM_EPS)
            self.fc = nn.Linear(C, M)
            self.fc2 = nn.Linear(M, C)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            # qkv rows are (3, H, D), as split_heads reads them.
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
            # The tables in q's dtype (bf16 under autocast), as Hugging Face's Llama applies RoPE, so that
            # attention gets bf16 inputs rather than fp32 promoted by the rotation.
            cos, sin = cos.to(q.dtype), sin.to(q.dtype)
            a = F.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(B, T, C))
            return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class Gpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.blocks = nn.ModuleList(Block() for _ in range(args.layers))
            self.lnf = nn.LayerNorm(C, eps=LAYERNORM_EPS)
            # Angles in fp64 as rope_cpu.cpp computes them (at position 10^6 an fp32 angle is off by a tenth
            # of a radian), stored as fp32.
            inv_freq = ROPE_BASE ** (-2.0 * torch.arange(D // 2, dtype=torch.float64) / D)
            angles = torch.arange(args.context, dtype=torch.float64)[:, None] * inv_freq[None, :]
            self.register_buffer("cos", angles.cos().float(), persistent=False)
            self.register_buffer("sin", angles.sin().float(), persistent=False)

        def forward(self, tokens, targets):
            x = self.wte(tokens)
            for block in self.blocks:
                x = block(x, self.cos, self.sin)
            logits = F.linear(self.lnf(x), self.wte.weight)  # the tied head
            # Under autocast the loss is fp32 (autocast's policy for log_softmax and nll_loss).
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    # Built on the GPU, where 124M parameters are drawn in milliseconds rather than seconds on the host.
    with torch.device("cuda"):
        model = Gpt()
    # GPT-2's initialisation (Gpt::initialize): N(0, 0.02), the residual projections N(0, 0.02 / sqrt(2
    # layers)), biases 0, LayerNorm weights 1 (nn.LayerNorm's own).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif not (".ln" in name or name.startswith("lnf.")):
                residual = name.endswith(".proj.weight") or name.endswith(".fc2.weight")
                p.normal_(0.0, 0.02 / math.sqrt(2 * args.layers) if residual else 0.02)
    return model


def run(args, command, log):
    """The timed steps and the report, progress on `log`; RunError for what stops a run."""
    try:
        import torch
    except ImportError as e:
        raise RunError(f"PyTorch is not installed (import torch: {e}); this script needs torch with CUDA")
    if not torch.cuda.is_available():
        raise RunError(f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees none")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(args.seed)
    # TF32 would make fp32 a different precision from our fp32 model's (PyTorch's default is already IEEE;
    # said here so that no environment changes it). bf16 products do not read this setting.
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9; the old flag warns there
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
    backend_name = "FLASH_ATTENTION" if args.dtype == "bf16" else "EFFICIENT_ATTENTION"
    backend = getattr(SDPBackend, backend_name)
    flops_per_token = training_flops_per_token(args.layers, args.d_model, args.heads, args.mlp_hidden,
                                               args.vocab, args.context)
    expected_parameters = parameter_count(args.layers, args.d_model, args.mlp_hidden, args.vocab)
    try:
        model = build_model(torch, args)
        parameters = sum(p.numel() for p in model.parameters())
        if parameters != expected_parameters:
            raise RunError(f"the PyTorch model has {parameters} parameters, gpt.h's {expected_parameters}")
        # Matrices decay, norms, biases and the embedding do not (gpt.cpp's ParamInfo::weight_decay).
        decay = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "wte.weight"]
        no_decay = [p for n, p in model.named_parameters() if p.dim() != 2 or n == "wte.weight"]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
            lr=LEARNING_RATE, betas=BETAS, eps=ADAM_EPS, fused=True)
        forward = torch.compile(model) if args.compile else model
        generator = torch.Generator(device="cuda").manual_seed(args.seed)
        shape = (args.batch, args.context)
        tokens = torch.randint(0, args.vocab, shape, device="cuda", generator=generator)
        targets = torch.randint(0, args.vocab, shape, device="cuda", generator=generator)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.dtype == "bf16")

        def optimizer_step():
            torch.cuda.synchronize()
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = forward(tokens, targets)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            loss, norm = loss.item(), norm.item()
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise RunError(f"the loss ({loss}) or the gradient norm ({norm}) is not finite")
            return seconds, loss

        with sdpa_kernel(backend):
            for w in range(args.warmup):
                seconds, loss = optimizer_step()
                print(f"{TOOL}: warm-up step {w + 1}: {seconds * 1e3:.1f} ms, loss {loss:.4f}", file=log,
                      flush=True)
            seconds_all, losses = [], []
            for s in range(args.steps):
                seconds, loss = optimizer_step()
                seconds_all.append(seconds)
                losses.append(loss)
                print(f"{TOOL}: step {s + 1}: {seconds * 1e3:.1f} ms, loss {loss:.4f}", file=log, flush=True)
    except RuntimeError as e:
        # torch.cuda.OutOfMemoryError from the caching allocator; a library's own allocation (cuBLAS, the
        # attention kernels) fails as a plain RuntimeError saying "out of memory".
        if not (isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e)):
            raise
        raise RunError(f"out of GPU memory at -T {args.context} -B {args.batch} "
                       f"(lower --context or --batch): {str(e).splitlines()[0]}")

    seconds = sum(seconds_all)
    ms_all = [t * 1e3 for t in seconds_all]
    tokens_per_step = args.batch * args.context
    tokens_per_s = tokens_per_step * args.steps / seconds
    achieved_tflops = flops_per_token * tokens_per_s / 1e12
    mfu = achieved_tflops / args.peak_tflops
    device = torch.cuda.get_device_properties(0)
    print(f"{TOOL}: {tokens_per_s:.1f} tokens/s, median {statistics.median(ms_all):.1f} ms per step, "
          f"{achieved_tflops:.4g} TFLOP/s; MFU {100 * mfu:.2f}% of bf16_tensor_cores_dense "
          f"({args.peak_tflops:.4g} TFLOP/s)", file=log, flush=True)
    return {
        "tool": TOOL,
        "date": utc_timestamp(),
        "command": command,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "machine": {"device": device.name, "device_memory_bytes": device.total_memory},
        "options": options_json(args),
        "model": {"parameters": parameters, "flops_per_token": flops_per_token, "dtype": args.dtype,
                  "sdpa_backend": backend_name, "compile": args.compile},
        "results": {"steps": args.steps, "warmup_steps": args.warmup, "tokens_per_step": tokens_per_step,
                    "seconds": seconds, "tokens_per_s": tokens_per_s,
                    "ms_per_step": statistics.median(ms_all), "ms_per_step_all": ms_all, "losses": losses,
                    "achieved_tflops": achieved_tflops,
                    "max_memory_allocated_bytes": torch.cuda.max_memory_allocated()},
        "peaks": [{"name": "bf16_tensor_cores_dense", "tflops": args.peak_tflops, "source": "--peak-tflops",
                   "mfu": mfu}],
        "notes": [
            "flops_per_token: lib/model/flops.cpp's count (6 per matrix weight, the tied LM head included, "
            "plus causal attention's 12 T D / 2 per head), the one race-bench model divides by",
            "bf16: torch.autocast over fp32 master weights, gradients and AdamW state; fp32: no autocast, "
            "TF32 off; flash attention has no fp32 kernel, so fp32 runs the memory-efficient backend",
            "the loss is taken over the whole (B*T, V) logits, which PyTorch keeps for the backward; race's "
            "model computes them a block of rows at a time",
        ],
    }


def main(argv):
    args = parse_args(argv)
    command = shlex.join([os.path.basename(sys.executable), sys.argv[0], *argv])
    try:
        # With the report on stdout, the progress goes to stderr (race-bench model's --json -).
        report = run(args, command, sys.stderr if args.json == "-" else sys.stdout)
        status = 0
    except RunError as e:
        print(f"{TOOL}: error: {e}", file=sys.stderr)
        report = {"tool": TOOL, "date": utc_timestamp(), "command": command, "options": options_json(args),
                  "error": str(e)}
        status = 1
    if args.json:
        write_report(args.json, report)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
