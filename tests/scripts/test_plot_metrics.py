"""scripts/plot_metrics.py and scripts/experiments.py: a PNG is drawn from metrics.jsonl files (loss and
accuracy panels), and every bad input is a one-line error naming the file, line or option."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "..", "scripts")
PLOT = os.path.join(SCRIPTS, "plot_metrics.py")
EXPERIMENTS = os.path.join(SCRIPTS, "experiments.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


class PlotMetrics(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write_run(self, name, lines):
        run_dir = os.path.join(self.dir.name, name)
        os.makedirs(run_dir)
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
        return run_dir

    def records(self, with_accuracy):
        lines = [json.dumps({"step": s, "split": "train", "loss": 5.0 / s}) for s in range(1, 11)]
        for s in (5, 10):
            record = {"step": s, "split": "val", "loss": 4.0 / s}
            if with_accuracy:
                record["accuracy"] = s / 20
            lines.append(json.dumps(record))
        return lines

    def test_draws_loss_and_accuracy_pngs(self):
        a = self.write_run("a-race", self.records(True))
        b = self.write_run("a-softmax", self.records(True))
        for metric in ("loss", "accuracy"):
            out = os.path.join(self.dir.name, "plots", metric + ".png")
            done = run(PLOT, "--output", out, "--metric", metric, "--title", "t", a, os.path.join(b, "metrics.jsonl"))
            self.assertEqual(done.returncode, 0, done.stderr)
            with open(out, "rb") as f:
                data = f.read()
            self.assertTrue(data.startswith(PNG_SIGNATURE))
            self.assertGreater(len(data), 5000)
            self.assertFalse(os.path.exists(out + ".partial"))

    def test_bad_inputs_are_named(self):
        good = self.write_run("good", self.records(False))
        bad = self.write_run("bad", ['{"step": 1, "split": "train", "loss": 1}', "not json"])
        out = os.path.join(self.dir.name, "x.png")
        cases = [
            ((PLOT, "--output", out, os.path.join(self.dir.name, "absent")), "absent: no such file (expected a run directory"),
            ((PLOT, "--output", out, bad), "metrics.jsonl:2: not a metrics record"),
            ((PLOT, "--output", out, "--metric", "accuracy", good), "no validation record has an accuracy"),
            ((PLOT, "--output", os.path.join(self.dir.name, "x.svg"), good), "expected a .png file name"),
            ((PLOT, "--output", out, "--metric", "speed", good), "invalid choice: 'speed'"),
            ((EXPERIMENTS, "--tasks", "lm_gcide_4k,nope"), "unknown task 'nope'"),
            ((EXPERIMENTS, "--variants", "race,linear"), "unknown variant 'linear'"),
            ((EXPERIMENTS, "--time-steps", "2"), "expected 0 (train and score) or at least 3 steps, got 2"),
        ]
        for args, expected in cases:
            done = run(*args)
            self.assertNotEqual(done.returncode, 0, args)
            self.assertIn(expected, done.stderr, args)
            self.assertNotIn("Traceback", done.stderr, args)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
