#!/usr/bin/env python3
"""scripts/rerank.py on hand-made n-best lists: the choice under given weights (computed by hand below),
--flatten, the weight search with --ref (through `s2s bleu`), and its errors. Usage: test_rerank.py S2S"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
RERANK = os.path.join(ROOT, "scripts", "rerank.py")
S2S = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(ROOT, "build", "s2s")

# Two source lines: the first with two hypotheses, the second a single output (n-best 1: no "nbest" list).
FIRST = ["the cat sat on the mat today", "a cat sat on a mat"]
LINES = [
    {"source": "s one", "output": FIRST[0], "output_tokens": FIRST[0].split(), "score": -1.0,
     "nbest": [{"output": FIRST[0], "output_tokens": FIRST[0].split(), "score": -1.0},
               {"output": FIRST[1], "output_tokens": FIRST[1].split(), "score": -1.5}]},
    {"source": "s two", "output": "x y z w v", "output_tokens": "x y z w v".split(), "score": -2.0},
]
FEATURE = [0.0, 2.0, 0.0]  # one per hypothesis, in list order


def run(*args):
    return subprocess.run([sys.executable, RERANK, *args], capture_output=True, text=True)


class Rerank(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.nbest = self.file("nbest.jsonl", "".join(json.dumps(j) + "\n" for j in LINES))
        self.feature = self.file("f.txt", "".join(f"{v}\n" for v in FEATURE))

    def tearDown(self):
        self.dir.cleanup()

    def file(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def choose(self, *weights):
        r = run(self.nbest, "--feature", "f=" + self.feature, *[x for w in weights for x in ("--weight", w)])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines()

    def test_weights_decide_by_hand(self):
        # First list: -1.0 + w * 0 + l * 7 (7 tokens) against -1.5 + w * 2 + l * 6 (6 tokens)
        self.assertEqual(self.choose(), [FIRST[0], "x y z w v"])            # -1.0 > -1.5
        self.assertEqual(self.choose("f=0.3"), [FIRST[1], "x y z w v"])     # -1.0 < -1.5 + 0.6
        self.assertEqual(self.choose("f=0.2"), [FIRST[0], "x y z w v"])     # -1.0 > -1.5 + 0.4
        self.assertEqual(self.choose("f=0.3", "length=0.2"), [FIRST[0], "x y z w v"])  # 0.4 > 0.3

    def test_flatten_writes_one_pair_per_hypothesis(self):
        src, hyp = os.path.join(self.dir.name, "src"), os.path.join(self.dir.name, "hyp")
        r = run(self.nbest, "--flatten", src, hyp)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(src, encoding="utf-8") as f:
            self.assertEqual(f.read().splitlines(), ["s one", "s one", "s two"])
        with open(hyp, encoding="utf-8") as f:
            self.assertEqual(f.read().splitlines(), FIRST + ["x y z w v"])

    def test_weight_search_finds_the_reference(self):
        ref = self.file("ref.txt", FIRST[1] + "\nx y z w v\n")
        r = run(self.nbest, "--feature", "f=" + self.feature, "--ref", ref, "--grid", "0,0.2,0.5", "--length-grid", "0",
                "--s2s", S2S)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("BLEU with the search's scores alone: "), r.stdout)
        self.assertLess(float(lines[0].split(": ")[1]), 100.0)
        self.assertTrue(lines[1].startswith("best BLEU 100.00 with --weight f=0.5"), r.stdout)

    def test_errors_name_the_file(self):
        short = self.file("short.txt", "1.0\n")
        r = run(self.nbest, "--feature", "f=" + short)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(short, r.stderr)
        self.assertIn("3 hypotheses", r.stderr)
        bad = self.file("bad.jsonl", json.dumps(LINES[0]) + "\nnot json\n")
        r = run(bad)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(bad + ":2", r.stderr)
        r = run(self.nbest, "--weight", "g=1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no --feature g", r.stderr)


if __name__ == "__main__":
    unittest.main()
