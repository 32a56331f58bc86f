#!/usr/bin/python3
"""Loss curves as PNG from the metrics.jsonl of one or more race-train runs (DESIGN section 4).

  /usr/bin/python3 scripts/plot_metrics.py --output docs/experiments/lm_gcide_4k.png \\
      --title "GCIDE, context 4096" runs/experiments/lm_gcide_4k-race runs/experiments/lm_gcide_4k-softmax

Each run (a run directory, or its metrics.jsonl) is one colour: its training loss as a line, its validation
loss as dots on the same axes; the legend names the run by its directory. With --metric accuracy the panel
shows the validation accuracy instead (classification and answer-scored tasks). Needs python3-matplotlib
(scripts/install-deps.sh installs it).
"""
import argparse
import json
import os
import sys


def read_metrics(path):
    """(train, val) lists of records of one run; exits with a message naming the file and line on bad input."""
    file = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        sys.exit(f"plot_metrics: {file}: no such file (expected a run directory or its metrics.jsonl)")
    train, val = [], []
    with open(file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step, split = int(record["step"]), record["split"]
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"plot_metrics: {file}:{number}: not a metrics record with step and split ({e})")
            (train if split == "train" else val).append(record)
    if not train and not val:
        sys.exit(f"plot_metrics: {file}: no records")
    return train, val


def run_label(path):
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    return os.path.basename(os.path.normpath(directory))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (or metrics.jsonl files)")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--title", default="", help="title of the plot")
    parser.add_argument("--metric", choices=["loss", "accuracy"], default="loss",
                        help="loss: train line and val dots; accuracy: val accuracy (default: loss)")
    args = parser.parse_args()
    if not args.output.endswith(".png"):
        parser.error(f"--output {args.output}: expected a .png file name")
    try:
        import matplotlib
    except ImportError:
        sys.exit("plot_metrics: matplotlib is missing; install python3-matplotlib (scripts/install-deps.sh does)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for index, path in enumerate(args.runs):
        train, val = read_metrics(path)
        colour = f"C{index}"
        label = run_label(path)
        if args.metric == "loss":
            if train:
                axes.plot([r["step"] for r in train], [r["loss"] for r in train], color=colour, label=f"{label} train")
            if val:
                axes.plot([r["step"] for r in val], [r["loss"] for r in val], "o", color=colour, label=f"{label} val")
        else:
            scored = [r for r in val if "accuracy" in r]
            if not scored:
                sys.exit(f"plot_metrics: {path}: no validation record has an accuracy")
            axes.plot([r["step"] for r in scored], [r["accuracy"] for r in scored], "o-", color=colour, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per target token)" if args.metric == "loss" else "validation accuracy")
    axes.set_title(args.title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(directory, exist_ok=True)
    partial = args.output + ".partial"
    figure.savefig(partial, format="png")
    os.replace(partial, args.output)
    print(f"{args.output}: {len(args.runs)} runs")


if __name__ == "__main__":
    main()
