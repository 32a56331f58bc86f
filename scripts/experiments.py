#!/usr/bin/python3
"""RACE against softmax and a hybrid, at equal parameters and steps: the runs behind docs/experiments.md.

Each task trains three variants of one config, which differ only in their attention (no attention kind
adds parameters):
  race     every layer RACE (the config as shipped),
  softmax  every layer full softmax attention (our flash-style CPU kernel),
  hybrid   RACE layers with the last layer a sliding-window softmax layer.
Every run is `race-train --config configs/<task>.json --set ...`, timed, then scored with `race-eval --json`
on its val split (and, for MQAR and passkey, on the extra files each task lists: one per number of pairs,
one per length). One JSON per run goes to docs/results/experiments/, holding the exact commands, the wall
times and the scores; scripts/plot_metrics.py draws the loss curves from the runs' metrics.jsonl.

  /usr/bin/python3 scripts/experiments.py --tasks lm_gcide_4k,fashion_mnist --variants race,softmax

A missing dataset is an error that names the command which writes it (docs/data.md).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join("build", "apps")  # commands run from ROOT, and are recorded as run there
RUNS = os.path.join("runs", "experiments")
RESULTS = os.path.join("docs", "results", "experiments")

# How each task's datasets are made (run from the repository root), for the missing-file error.
RECIPES = {
    "data/gcide.h5": "/usr/bin/python3 data/scripts/text_to_h5.py --input /usr/share/dictd/gcide.dict.dz "
                     "--output data/gcide.h5",
    "data/fashion_mnist.h5": "/usr/bin/python3 data/scripts/fashion_mnist_to_h5.py --output data/fashion_mnist.h5",
    "data/listops.h5": "/usr/bin/python3 data/scripts/listops_to_h5.py --output data/listops.h5",
    "data/mqar.h5": "/usr/bin/python3 data/scripts/mqar_to_h5.py --output data/mqar.h5 --pairs 4,8,16,32 "
                    "--context 128 --train-examples 40000 --val-examples 512",
    "data/passkey_512.h5": "/usr/bin/python3 data/scripts/passkey_to_h5.py --output data/passkey_512.h5 "
                           "--context 512 --train-examples 6000 --val-examples 128",
}
MQAR_PAIRS = (4, 8, 16, 32)
MQAR_64_PAIRS = (2, 4, 8, 16)
RECIPES["data/mqar_64.h5"] = ("/usr/bin/python3 data/scripts/mqar_to_h5.py --output data/mqar_64.h5 --pairs 2,4,8,16 "
                              "--context 64 --train-examples 80000 --val-examples 512")
for pairs in MQAR_64_PAIRS:
    RECIPES[f"data/mqar_64_val_{pairs}.h5"] = (
        f"/usr/bin/python3 data/scripts/mqar_to_h5.py --output data/mqar_64_val_{pairs}.h5 --pairs {pairs} "
        "--context 64 --seed 1 --train-examples 1 --val-examples 256")
PASSKEY_LENGTHS = (512, 1024, 2048, 4096)
for pairs in MQAR_PAIRS:
    RECIPES[f"data/mqar_val_{pairs}.h5"] = (
        f"/usr/bin/python3 data/scripts/mqar_to_h5.py --output data/mqar_val_{pairs}.h5 --pairs {pairs} "
        "--context 128 --seed 1 --train-examples 1 --val-examples 256")
for length in PASSKEY_LENGTHS:
    RECIPES[f"data/passkey_val_{length}.h5"] = (
        f"/usr/bin/python3 data/scripts/passkey_to_h5.py --output data/passkey_val_{length}.h5 --context {length} "
        "--seed 1 --train-examples 1 --val-examples 64")

# task -> (layers of the config, sliding window of the hybrid's softmax layer, overrides that size the run
# for a 2-core CPU, extra evaluations). An extra evaluation is (label, dataset, context, batch size, windows).
SHORT_CLASSIFIER = ["schedule.warmup_steps=12", "train.log_every=5", "train.eval_every=40",
                    "train.checkpoint_every=1000", "train.keep_last=1"]
TASKS = {
    "lm_gcide_4k": (4, 512, [], []),
    "fashion_mnist": (2, 128, ["data.batch_size=16", "data.val_windows=500", "schedule.total_steps=120"]
                      + SHORT_CLASSIFIER, []),
    "listops": (4, 256, ["data.batch_size=8", "data.val_windows=256", "schedule.total_steps=120"]
                + SHORT_CLASSIFIER, []),
    "mqar": (2, 32, [], [(f"pairs {n}", f"data/mqar_val_{n}.h5", 128, 64, 256) for n in MQAR_PAIRS]),
    "mqar_64": (2, 16, [], [(f"pairs {n}", f"data/mqar_64_val_{n}.h5", 64, 64, 256) for n in MQAR_64_PAIRS]),
    "passkey": (2, 64, [], [(f"length {c}", f"data/passkey_val_{c}.h5", c, max(1, 8192 // c), 64)
                            for c in PASSKEY_LENGTHS]),
}


def variant_overrides(variant, layers, window):
    if variant == "race":
        return []
    if variant == "softmax":
        return ["model.attention.kind=softmax", "model.softmax_layers=[]"]
    return [f"model.softmax_layers=[{layers - 1}]", f"model.softmax_window={window}"]


def run(command, log_path=None):
    """Runs `command` (a list) from the repository root; its output goes to log_path or is returned."""
    if log_path:
        with open(log_path, "w") as log:
            status = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if status != 0:
            sys.exit(f"experiments: `{' '.join(command)}` failed with status {status}; see {log_path}")
        return None
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"experiments: `{' '.join(command)}` failed with status {done.returncode}:\n{done.stderr}")
    return done.stdout


def config_data_path(task):
    with open(os.path.join(ROOT, "configs", task + ".json")) as f:
        return json.load(f)["data"]["path"]


def check_inputs(tasks):
    for name in ("race-train", "race-eval"):
        if not os.access(os.path.join(ROOT, BIN, name), os.X_OK):
            sys.exit(f"experiments: {os.path.join(ROOT, BIN, name)} not found; build first (scripts/test.sh or "
                     "cmake -S . -B build && cmake --build build)")
    for task in tasks:
        paths = [config_data_path(task)] + [extra[1] for extra in TASKS[task][3]]
        for path in paths:
            if not os.path.exists(os.path.join(ROOT, path)):
                recipe = RECIPES.get(path, "see docs/data.md")
                sys.exit(f"experiments: task {task} needs {path}, which does not exist; make it with: {recipe}")


def run_one(task, variant, threads):
    layers, window, sizing, extras = TASKS[task]
    name = f"{task}-{variant}"
    train = [os.path.join(BIN, "race-train"), "--config", f"configs/{task}.json", "--set", f"run.root={RUNS}",
             "--set", f"run.name={name}"]
    for override in sizing + variant_overrides(variant, layers, window):
        train += ["--set", override]
    run_dir = os.path.join(RUNS, name)
    subprocess.call(["rm", "-rf", os.path.join(ROOT, run_dir)])
    os.makedirs(os.path.join(ROOT, RUNS), exist_ok=True)
    print(f"[{datetime.datetime.now():%H:%M:%S}] {name}: {' '.join(train)}", flush=True)
    start = time.monotonic()
    run(train, os.path.join(ROOT, RUNS, name + ".log"))
    train_seconds = time.monotonic() - start

    evaluate = [os.path.join(BIN, "race-eval"), "--checkpoint", run_dir, "--json", "-"]
    scores = [{"label": "val", "command": " ".join(evaluate), **json.loads(run(evaluate))}]
    for label, path, context, batch, windows in extras:
        command = evaluate + ["--data", path, "--context", str(context), "--batch-size", str(batch),
                              "--windows", str(windows)]
        scores.append({"label": label, "command": " ".join(command), **json.loads(run(command))})
    result = {
        "task": task, "variant": variant, "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={threads}",
        "command": " ".join(train), "train_wall_s": round(train_seconds, 1), "run_dir": run_dir, "scores": scores,
    }
    os.makedirs(os.path.join(ROOT, RESULTS), exist_ok=True)
    with open(os.path.join(ROOT, RESULTS, name + ".json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    summary = ", ".join(f"{s['label']}: loss {s['loss']:.4f}"
                        + (f" acc {s['accuracy']:.4f}" if "accuracy" in s else "")
                        + (f" exact {s['exact_match']:.4f}" if "exact_match" in s else "") for s in scores)
    print(f"  {train_seconds:.0f} s; {summary}", flush=True)


def time_one(task, variant, steps, threads):
    """Seconds per training step of one run, from `steps` steps on their own (median of steps 2 to `steps`,
    as logged in metrics.jsonl): the runs above share the machine with other work, this pass does not."""
    layers, window, sizing, _ = TASKS[task]
    name = f"{task}-{variant}-timing"
    train = [os.path.join(BIN, "race-train"), "--config", f"configs/{task}.json", "--set", f"run.root={RUNS}",
             "--set", f"run.name={name}"]
    for override in (sizing + variant_overrides(variant, layers, window)
                     + [f"schedule.total_steps={steps}", "schedule.warmup_steps=1", "train.log_every=1"]):
        train += ["--set", override]
    run_dir = os.path.join(ROOT, RUNS, name)
    subprocess.call(["rm", "-rf", run_dir])
    os.makedirs(os.path.join(ROOT, RUNS), exist_ok=True)
    run(train, os.path.join(ROOT, RUNS, name + ".log"))
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    seconds = sorted(r["ms_per_step"] / 1000 for r in records if r["split"] == "train" and r["step"] >= 2)
    median = seconds[len(seconds) // 2]
    result = {"task": task, "variant": variant, "date": datetime.date.today().isoformat(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"OMP_NUM_THREADS={threads}",
              "command": " ".join(train), "seconds_per_step": seconds, "median_seconds_per_step": median}
    os.makedirs(os.path.join(ROOT, RESULTS), exist_ok=True)
    with open(os.path.join(ROOT, RESULTS, name + ".json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"{name}: {median:.3f} s per step (median of steps 2-{steps})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks (default: all)")
    parser.add_argument("--variants", default="race,softmax,hybrid", help="comma-separated variants")
    parser.add_argument("--time-steps", type=int, default=0,
                        help="only time each run: this many steps, report seconds per step (0: train and score)")
    args = parser.parse_args()
    if args.time_steps != 0 and args.time_steps < 3:
        parser.error(f"--time-steps: expected 0 (train and score) or at least 3 steps, got {args.time_steps}")
    tasks = [t for t in args.tasks.split(",") if t]
    variants = [v for v in args.variants.split(",") if v]
    for task in tasks:
        if task not in TASKS:
            parser.error(f"--tasks: unknown task {task!r}; expected some of {', '.join(TASKS)}")
    for variant in variants:
        if variant not in ("race", "softmax", "hybrid"):
            parser.error(f"--variants: unknown variant {variant!r}; expected some of race, softmax, hybrid")
    check_inputs(tasks)
    threads = os.environ.get("OMP_NUM_THREADS", "all cores")
    for task in tasks:
        for variant in variants:
            if args.time_steps:
                time_one(task, variant, args.time_steps, threads)
            else:
                run_one(task, variant, threads)


if __name__ == "__main__":
    main()
