"""scripts/torch_gpt_bench.py without PyTorch: its FLOPs per token and parameter count are race-bench model's
for the same shapes (race-bench run from the build, RACE_BENCH set by tests/CMakeLists.txt), a bad option
exits 2 naming it, and a run without torch is a one-line error (exit 1, a JSON "error"), not a traceback.

PyTorch is hidden from the script by a `torch` package that fails to import, put first on PYTHONPATH, so the
tests mean the same on a machine that has torch."""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "torch_gpt_bench.py")


def load_script():
    spec = importlib.util.spec_from_file_location("torch_gpt_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_script()


class WithoutTorch(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        fake = os.path.join(self.dir.name, "no_torch", "torch")
        os.makedirs(fake)
        with open(os.path.join(fake, "__init__.py"), "w") as f:
            f.write("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
        self.env = dict(os.environ, PYTHONPATH=os.path.dirname(fake))

    def run_script(self, *args):
        return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=self.env)

    def test_bad_options_exit_2_naming_the_option(self):
        cases = [
            (["--layers", "0"], "argument --layers: must be >= 1, got 0"),
            (["--heads", "5"], "argument --heads: 5 does not divide --d-model 768"),
            (["--d-model", "96", "--heads", "32"], "--d-model 96 / --heads 32 = 3: RoPE needs an even head"),
            (["--mlp-hidden", "-4"], "argument --mlp-hidden: must be >= 1"),
            (["--vocab", "1"], "argument --vocab: must be >= 2, got 1"),
            (["-T", "x"], "argument -T/--context: invalid positive_int value: 'x'"),
            (["-B", "0"], "argument -B/--batch: must be >= 1"),
            (["--steps", "0"], "argument --steps: must be >= 1"),
            (["--warmup", "-1"], "argument --warmup: must be >= 0"),
            (["--dtype", "fp16"], "argument --dtype: invalid choice: 'fp16'"),
            (["--peak-tflops", "0"], "argument --peak-tflops: must be a finite number > 0"),
            (["--json", os.path.join(self.dir.name, "absent", "out.json")], "argument --json: folder"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                done = self.run_script(*args)
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertIn(message, done.stderr)
                self.assertNotIn("Traceback", done.stderr)

    def test_without_torch_is_a_clear_error(self):
        out = os.path.join(self.dir.name, "report.json")
        done = self.run_script("-T", "16", "-B", "2", "--json", out)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        self.assertEqual(done.stderr.strip().splitlines(),
                         ["torch_gpt_bench: error: PyTorch is not installed (import torch: No module named "
                          "'torch'); this script needs torch with CUDA"])
        with open(out) as f:
            report = json.load(f)
        self.assertEqual(report["tool"], "torch_gpt_bench")
        self.assertIn("PyTorch is not installed", report["error"])
        self.assertEqual((report["options"]["context"], report["options"]["batch"]), (16, 2))
        self.assertEqual(report["options"]["mlp_hidden"], 4 * 768)
        self.assertFalse(os.path.exists(out + ".partial"))


class FlopCount(unittest.TestCase):
    def test_gpt2_124m(self):
        # docs/benchmarks.md's table of race-bench model's softmax runs: 967.9 and 4,365.3 MFLOP per token.
        # Matrices 12 x (4 x 768^2 + 2 x 768 x 3072) = 84,934,656 and the tied head 50304 x 768 = 38,633,472
        # weights, 6 FLOPs each; attention 12 layers x 12 heads x 12 x T x 64 / 2.
        shape = dict(layers=12, d_model=768, heads=12, mlp_hidden=3072, vocab=50304)
        self.assertEqual(bench.training_flops_per_token(**shape, context=4096), 967_901_184)
        self.assertEqual(bench.training_flops_per_token(**shape, context=65536), 4_365_287_424)
        self.assertEqual(bench.parameter_count(12, 768, 3072, 50304), 123_689_472)

    def test_matches_race_bench_model(self):
        race_bench = os.environ.get("RACE_BENCH")
        if not race_bench:
            self.skipTest("RACE_BENCH (the race-bench binary) is not set; ctest sets it")
        shapes = [
            dict(layers=2, d_model=64, heads=4, mlp_hidden=256, vocab=300, context=64),
            dict(layers=3, d_model=48, heads=2, mlp_hidden=80, vocab=97, context=50),
        ]
        with tempfile.TemporaryDirectory() as folder:
            for shape in shapes:
                with self.subTest(shape=shape):
                    out = os.path.join(folder, "model.json")
                    done = subprocess.run(
                        [race_bench, "model", "--attention", "softmax", "--layers", str(shape["layers"]),
                         "--d-model", str(shape["d_model"]), "--heads", str(shape["heads"]), "--mlp-hidden",
                         str(shape["mlp_hidden"]), "--vocab", str(shape["vocab"]), "-T", str(shape["context"]),
                         "-B", "1", "--steps", "1", "--warmup", "0", "--threads", "1", "--peak-seconds", "0.05",
                         "--json", out],
                        capture_output=True, text=True)
                    self.assertEqual(done.returncode, 0, done.stderr)
                    with open(out) as f:
                        model = json.load(f)["model"]
                    self.assertEqual(bench.training_flops_per_token(**shape), model["flops_per_token"])
                    self.assertEqual(
                        bench.parameter_count(shape["layers"], shape["d_model"], shape["mlp_hidden"],
                                              shape["vocab"]),
                        model["parameters"])


if __name__ == "__main__":
    unittest.main()
