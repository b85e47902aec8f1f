"""Checks of hf_peers.py's plan and arithmetic that need no torch: `python3 scripts/peers/test_hf_peers.py`."""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_peers as hp  # noqa: E402


class PlanTest(unittest.TestCase):
    def test_default_plan_covers_the_issue(self):
        a = hp.parse_args(["--out", "x.json"])
        cfgs = hp.plan(a)
        target = [c for c in cfgs if c["model"] == "target"]
        self.assertEqual(len(target), 2 * 2 * 3)  # eager/compiled x fp32/bf16 x 1/8/32
        self.assertEqual({c["batch"] for c in target}, {1, 8, 32})
        big = [c for c in cfgs if c["model"] == "tinyllama-1b"]
        self.assertEqual([(c["dtype"], c["mode"], c["batch"]) for c in big],
                         [("bf16", "eager", 1), ("bf16", "compiled", 1), ("fp32", "eager", 1), ("fp32", "compiled", 1)])
        # eager target rows come before any compilation
        first_compiled = next(i for i, c in enumerate(cfgs) if c["mode"] == "compiled")
        self.assertTrue(all(c["mode"] == "eager" for c in cfgs[:first_compiled]))

    def test_quick_and_selection_flags(self):
        a = hp.parse_args(["--out", "x.json", "--quick"])
        self.assertEqual(a.models, ["target"])
        self.assertEqual((a.repeats, a.warmup), (2, 1))
        a = hp.parse_args(["--out", "x.json", "--models", "tinyllama-1b", "--modes", "compiled", "--dtypes", "bf16",
                           "--big-batches", "1,4"])
        self.assertEqual([(c["model"], c["batch"]) for c in hp.plan(a)], [("tinyllama-1b", 1), ("tinyllama-1b", 4)])
        with self.assertRaises(SystemExit):
            hp.parse_args(["--out", "x.json", "--batches", "0"])
        with self.assertRaises(SystemExit):
            hp.parse_args(["--out", "x.json", "--dtypes", "fp16"])


class ArithmeticTest(unittest.TestCase):
    def test_decode_from_difference(self):
        # 1 prefill (10 ms) + 128 steps of 2 ms, overhead 5 ms in both calls
        self.assertAlmostEqual(hp.decode_from_difference(5 + 10 + 128 * 2, 5 + 10, 128), 2.0)
        self.assertIsNone(hp.decode_from_difference(None, 1.0, 128))
        self.assertAlmostEqual(hp.tok_per_s(2.0, 8), 4000.0)
        self.assertIsNone(hp.tok_per_s(0.0, 8))

    def test_streamer_intervals(self):
        prefill, steps = hp.intervals_ms([0.0, 0.010, 0.012, 0.015])
        self.assertAlmostEqual(prefill, 10.0)
        self.assertEqual([round(s, 6) for s in steps], [2.0, 3.0])
        self.assertEqual(hp.intervals_ms([0.0, 0.01]), (None, []))


class DryRunTest(unittest.TestCase):
    def test_dry_run_writes_the_plan(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "sub", "plan.json")
            self.assertEqual(hp.main(["--dry-run", "--quick", "--out", out]), 0)
            with open(out) as f:
                r = json.load(f)
            self.assertEqual(r["name"], "hf-peers")
            self.assertEqual(len(r["rows"]), 12)
            self.assertTrue(all(x["status"] == "planned" for x in r["rows"]))
            self.assertEqual(r["settings"]["newTokens"], 128)
            self.assertIn("cpuCores", r["machine"])


if __name__ == "__main__":
    unittest.main()
