#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention (flash backend) timed at race-bench's shapes, for scripts/gpu-check.sh.

One layer, q, k, v of shape (B, H, T, D) in bf16 on the GPU, causal by default; for each T doubling from
--t-min to --t-max: the median over --repeats of the forward and of forward+backward, timed with CUDA
events after one warm-up. Stops early when the next size is predicted (quadratic cost) to overrun
--max-seconds, or when the GPU runs out of memory. With --race-json (a race-bench attention JSON report at
the same shape), each size also gets race-bench's times and the speed-up (sdpa time / race time).

Output (--json FILE): {"tool", "torch", "device", "options": {...}, "results": [{"seq_len",
"forward_seconds", "forward_backward_seconds", "race_forward_backward_seconds" (or null),
"speedup_forward_backward" (or null)}], "stop_reason"}.
"""
import argparse
import json
import statistics
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--t-min", type=int, default=4096)
    p.add_argument("--t-max", type=int, default=1 << 20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--race-json", help="race-bench attention JSON report to compare with")
    p.add_argument("--json", required=True, help="output file")
    return p.parse_args(argv)


def time_size(torch, sdpa, args, seq_len):
    shape = (args.batch, args.heads, seq_len, args.head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dout = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    causal = not args.bidirectional

    def forward():
        return sdpa(q, k, v, is_causal=causal)

    def forward_backward():
        forward().backward(dout)

    def timed(fn):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3

    with torch.no_grad():
        forward()
    forward_backward()
    torch.cuda.synchronize()
    with torch.no_grad():
        fwd = [timed(forward) for _ in range(args.repeats)]
    both = [timed(forward_backward) for _ in range(args.repeats)]
    return statistics.median(fwd), statistics.median(both)


def race_times(path):
    if not path:
        return {}
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        print(f"sdpa_bench: cannot read {path}: {e}; no comparison", file=sys.stderr)
        return {}
    return {r["seq_len"]: r["forward_backward_seconds"] for r in report.get("results", [])}


def main(argv):
    args = parse_args(argv)
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    race = race_times(args.race_json)
    results, stop_reason, started = [], "t_max", time.monotonic()
    seq_len = args.t_min
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        while seq_len <= args.t_max:
            size_start = time.monotonic()
            try:
                fwd, both = time_size(torch, torch.nn.functional.scaled_dot_product_attention, args, seq_len)
            except torch.cuda.OutOfMemoryError as e:
                stop_reason = f"out_of_memory at T={seq_len}: {e}"
                break
            race_both = race.get(seq_len)
            results.append({
                "seq_len": seq_len,
                "forward_seconds": fwd,
                "forward_backward_seconds": both,
                "race_forward_backward_seconds": race_both,
                "speedup_forward_backward": both / race_both if race_both else None,
            })
            print(f"sdpa_bench: T={seq_len} fwd {fwd:.5f}s fwd+bwd {both:.5f}s"
                  + (f" race {race_both:.5f}s ({both / race_both:.1f}x)" if race_both else ""), flush=True)
            torch.cuda.empty_cache()
            # Flash attention's cost grows with T^2: the next size takes about 4x this one.
            spent, this_size = time.monotonic() - started, time.monotonic() - size_start
            if spent + 4 * this_size > args.max_seconds:
                stop_reason = "max_seconds"
                break
            seq_len *= 2
    report = {
        "tool": "sdpa_bench",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0),
        "options": vars(args),
        "results": results,
        "stop_reason": stop_reason,
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
