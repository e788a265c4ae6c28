#!/usr/bin/env python3
"""Opens an s2s checkpoint with Python's torch.jit.load and recomputes greedy translations from the
parameters alone, following docs/MODEL.md; they must equal what `s2s translate` prints.

usage: checkpoint_in_python.py S2S_BINARY WORK_DIR      (exit 77 = skipped: no torch for Python)
"""
import json
import os
import subprocess
import sys

try:
    import torch
except ImportError:
    print("SKIP: Python has no torch module (Debian: apt-get install python3-torch)")
    sys.exit(77)

s2s, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
src = ["a b c d .", "b c a .", "d d a b c .", "c a .", "a a b b c c d ."] * 8
tgt = [" ".join(reversed(s.split()[:-1])) + " ." for s in src]
for name, lines in (("train.src", src), ("train.tgt", tgt)):
    with open(os.path.join(work, name), "w") as f:
        f.write("\n".join(lines) + "\n")


def greedy(ck, words, attention):
    P = {k: v.double() for k, v in ck.model.named_parameters()}
    codec = json.loads(ck.codec)
    src_vocab = {t: i for i, t in enumerate(codec["src_vocab"])}
    tgt_vocab = codec["tgt_vocab"]
    x = [src_vocab.get(w, 1) for w in words] + [3]
    h = torch.zeros(P["encoder.l0_fwd.b"].shape[0], dtype=torch.float64)
    H = []
    for i in x:   # h_i = tanh(A [x_i; h_{i-1}] + b), A = [W_x | W_hh]
        h = torch.tanh(P["encoder.l0_fwd.W_x"] @ P["encoder.embedding.weight"][i] + P["encoder.l0_fwd.b"]
                       + P["encoder.l0_fwd.cell.W_hh"] @ h)
        H.append(h)
    H = torch.stack(H)

    def attend(s):
        if attention == "bahdanau":
            e = torch.tanh(H @ P["decoder.attention.W_h"].T + P["decoder.attention.W_s"] @ s) @ P["decoder.attention.v"]
            return torch.softmax(e, 0) @ H
        K, V = H @ P["decoder.attention.W_K"].T, H @ P["decoder.attention.W_V"].T
        return torch.softmax(K @ (P["decoder.attention.W_Q"] @ s), 0) @ V

    s, y, out = h, 2, []           # s_0 = h_m, first input <s>
    c = attend(s)                  # c_0 from s_0
    while len(out) < 2 * len(x) + 10:
        s = torch.tanh(P["decoder.W_x"] @ P["decoder.embedding.weight"][y] + P["decoder.cell.W_hh"] @ s
                       + P["decoder.W_c"] @ c + P["decoder.b"])
        c = attend(s)
        y = int((P["decoder.W_out"] @ s + P["decoder.b_out"]).argmax())
        if y == 3:
            break
        out.append(tgt_vocab[y])
    return " ".join(out)


failures = 0
for attention in ("bahdanau", "qkv"):
    run = os.path.join(work, attention)
    config = {"data": {"train_src": os.path.join(work, "train.src"), "train_tgt": os.path.join(work, "train.tgt")},
              "model": {"embedding_size": 8, "hidden_size": 16, "attention": attention},
              "training": {"batch_size": 8, "max_steps": 400, "epochs": 1000, "learning_rate": 0.01, "threads": 1,
                           "log_every": 1000, "checkpoint_every": 1000},
              "output_dir": run}
    cfg = os.path.join(work, attention + ".json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    subprocess.run([s2s, "train", "--config", cfg], check=True, stderr=subprocess.DEVNULL)
    ckpt = os.path.join(run, "last.pt")
    ck = torch.jit.load(ckpt)
    for sentence in src[:5]:
        ours = subprocess.run([s2s, "translate", "-c", ckpt, "--threads", "1", sentence], check=True,
                              capture_output=True, text=True).stdout.strip()
        theirs = greedy(ck, sentence.split(), attention)
        ok = ours == theirs
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {attention}: {sentence!r} -> s2s {ours!r}, python {theirs!r}")
print(f"{10 - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
