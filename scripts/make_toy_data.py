#!/usr/bin/env python3
"""Synthetic parallel corpus for s2s: an English-like source language and an invented target language.

Every sentence pair comes from ONE syntax tree of a small synchronous grammar: the tree is generated at
random, then linearised twice -- once in source order with source words, once in target order with
target words. The source grammar is unambiguous (checked here with a parse counter: every generated
source sentence has exactly one parse), so the target is a deterministic function of the source and a
perfect model can reach 100 BLEU. The target reorders heavily (SOV, postpositions, adjectives after the
noun in mirror order, relative clauses before their noun, "because"/"while" clauses moved in front),
so the alignment is far from diagonal and sentences up to 40 tokens make plain encoder-decoders suffer.

The grammar, lexicon and reordering rules are described in data/README.md (`--print-grammar` prints
the production and lexicon tables in the README's format).

Standard library only. Deterministic: same arguments -> byte-identical files.

    python3 scripts/make_toy_data.py                      # data/toy/{train,valid,test}.{src,tgt}
    python3 scripts/make_toy_data.py --train 5000 --out /tmp/toy --seed 7
"""
import argparse
import os
import random
import sys
from collections import Counter

# --------------------------------------------------------------------------------------------------
# Lexicon: preterminal -> [(source word, target words, sampling weight)].
# A target tuple of length 0 means the word is dropped, length 2 means one-to-many.
# --------------------------------------------------------------------------------------------------

NOUNS = [  # singular, plural, target stem (a plural noun translates to "stem ri")
    ("dog", "dogs", "wumo"), ("cat", "cats", "nesh"), ("bird", "birds", "kipa"),
    ("man", "men", "zol"), ("woman", "women", "vena"), ("child", "children", "bilu"),
    ("king", "kings", "rako"), ("farmer", "farmers", "gunda"), ("teacher", "teachers", "somi"),
    ("horse", "horses", "traku"), ("house", "houses", "dumi"), ("river", "rivers", "flen"),
    ("tree", "trees", "olba"), ("garden", "gardens", "kesu"), ("book", "books", "lipo"),
    ("pear", "pears", "mopi"), ("table", "tables", "teku"), ("ship", "ships", "sholo"),
    ("city", "cities", "pruna"), ("stone", "stones", "gabo"),
]
PLURAL_MARKER = "ri"

# third person singular, base form (= plural), target (one or two words)
VERBS_INTRANSITIVE = [
    ("sleeps", "sleep", ("sela",)), ("runs", "run", ("daru",)), ("sings", "sing", ("lilo",)),
    ("falls", "fall", ("pu", "lo")), ("waits", "wait", ("hemi",)), ("laughs", "laugh", ("hoha",)),
]
VERBS_TRANSITIVE = [
    ("sees", "see", ("tomu",)), ("likes", "like", ("amvi",)), ("eats", "eat", ("mosa",)),
    ("follows", "follow", ("seti",)), ("finds", "find", ("kema", "ru")), ("carries", "carry", ("bura",)),
    ("helps", "help", ("ajo",)), ("wants", "want", ("mela", "toko")),
]
VERBS_CLAUSAL = [  # take a "that"-clause
    ("says", "say", ("vadi",)), ("thinks", "think", ("pesu",)), ("knows", "know", ("zani",)),
]


def _verbs(table, number):
    return [((sg if number == "sg" else base), tgt, 1.0) for sg, base, tgt in table]


LEXICON = {
    "Det.sg": [("the", (), 4.0), ("a", ("eni",), 3.0), ("this", ("pova",), 1.0), ("every", ("oko",), 1.0)],
    "Det.pl": [("the", (), 4.0), ("these", ("povi",), 1.0), ("some", ("vek",), 1.0), ("many", ("lomo",), 1.0),
               ("two", ("tiva",), 1.0), ("three", ("drom",), 1.0), ("four", ("kazu",), 1.0)],
    "N.sg": [(sg, (stem,), 1.0) for sg, _, stem in NOUNS],
    "N.pl": [(pl, (stem, PLURAL_MARKER), 1.0) for _, pl, stem in NOUNS],
    "Adj": [(s, (t,), 1.0) for s, t in [
        ("big", "tasa"), ("small", "niki"), ("red", "fela"), ("brave", "uvo"), ("young", "jalu"),
        ("happy", "buni"), ("green", "vesk"), ("quiet", "sulm"), ("tall", "gari"), ("dark", "numa")]],
    "Vi.sg": _verbs(VERBS_INTRANSITIVE, "sg"), "Vi.pl": _verbs(VERBS_INTRANSITIVE, "pl"),
    "Vt.sg": _verbs(VERBS_TRANSITIVE, "sg"), "Vt.pl": _verbs(VERBS_TRANSITIVE, "pl"),
    "Vc.sg": _verbs(VERBS_CLAUSAL, "sg"), "Vc.pl": _verbs(VERBS_CLAUSAL, "pl"),
    "Adv": [("often", ("bako",), 1.0), ("always", ("ilu",), 1.0), ("never", ("nu", "vasi"), 1.0)],
    "P": [(s, (t,), 1.0) for s, t in [
        ("in", "ina"), ("on", "ube"), ("near", "puri"), ("under", "sota"), ("behind", "kado"), ("with", "lem")]],
    "Conj.co": [("and", ("vo",), 3.0), ("but", ("tamu",), 1.0)],      # target keeps clause order
    "Conj.sub": [("because", ("seka",), 1.0), ("while", ("velo",), 1.0)],  # target puts this clause first
}

# --------------------------------------------------------------------------------------------------
# Synchronous grammar. A production is (lhs, source rhs, target order, weight, recursive).
# Source rhs items are nonterminals / preterminals (keys of GRAMMAR / LEXICON) or literal source
# words. Target order items: an int i = "the translation of source item i here"; a tuple (i, word) =
# "target word `word` here, aligned to the literal source word at position i". Literal source words
# not mentioned in the target order are dropped.
# "recursive" productions get their weight multiplied by DECAY ** (number of recursive productions
# above), which keeps trees finite; the length distribution is then shaped by per-bucket quotas.
# --------------------------------------------------------------------------------------------------

PRODUCTIONS = [
    ("S", ("Clauses", "."), (0, (1, ".")), 0.84, False),
    ("S", ("Clauses", "!"), (0, (1, "!")), 0.06, False),
    ("S", ("Q", "?"), (0, (1, "?")), 0.10, False),
    ("Q", ("does", "NP.sg", "VP.pl"), (1, 2, (0, "ku")), 1.0, False),
    ("Q", ("do", "NP.pl", "VP.pl"), (1, 2, (0, "ku")), 1.0, False),
    ("Clauses", ("Cl",), (0,), 1.0, False),
    ("Clauses", ("Cl", "Conj.co", "Clauses"), (0, 1, 2), 0.45, True),
    ("Clauses", ("Cl", "Conj.sub", "Clauses"), (2, 1, 0), 0.25, True),
    ("Cl", ("NP.sg", "VP.sg"), (0, 1), 1.0, False),
    ("Cl", ("NP.pl", "VP.pl"), (0, 1), 1.0, False),
]
for _n in ("sg", "pl"):
    PRODUCTIONS += [
        ("VP." + _n, ("Vi." + _n,), (0,), 1.0, False),
        ("VP." + _n, ("Vi." + _n, "PP"), (1, 0), 1.0, False),
        ("VP." + _n, ("Vt." + _n, "NP"), (1, 0), 2.5, False),
        ("VP." + _n, ("Vc." + _n, "that", "Cl"), (2, (1, "ke"), 0), 0.5, True),
        ("VP." + _n, ("Adv", "Vi." + _n), (0, 1), 0.2, False),
        ("VP." + _n, ("Adv", "Vi." + _n, "PP"), (2, 0, 1), 0.2, False),
        ("VP." + _n, ("Adv", "Vt." + _n, "NP"), (2, 0, 1), 0.5, False),
        ("VP." + _n, ("Adv", "Vc." + _n, "that", "Cl"), (3, (2, "ke"), 0, 1), 0.1, True),
        ("Nom." + _n, ("Adjs", "N." + _n, "Post." + _n), (2, 1, 0), 1.0, False),
        ("Post." + _n, (), (), 1.0, False),
        ("Post." + _n, ("PP",), (0,), 0.25, True),
        ("Post." + _n, ("Rel." + _n,), (0,), 0.3, True),
        ("Post." + _n, ("PP", "Rel." + _n), (1, 0), 0.1, True),
        ("Rel." + _n, ("that", "VP." + _n), (1, (0, "ko")), 1.0, False),
    ]
PRODUCTIONS += [
    ("NP", ("NP.sg",), (0,), 1.0, False),
    ("NP", ("NP.pl",), (0,), 1.0, False),
    ("NP.sg", ("Det.sg", "Nom.sg"), (1, 0), 1.0, False),
    ("NP.pl", ("Det.pl", "Nom.pl"), (1, 0), 0.7, False),
    ("NP.pl", ("Nom.pl",), (0,), 0.3, False),
    ("PP", ("P", "NPs"), (1, 0), 1.0, False),
    ("NPs", ("Det.sg", "Adjs", "N.sg"), (2, 1, 0), 1.0, False),
    ("NPs", ("Det.pl", "Adjs", "N.pl"), (2, 1, 0), 0.6, False),
    ("NPs", ("Adjs", "N.pl"), (1, 0), 0.3, False),
    ("Adjs", (), (), 1.0, False),
    ("Adjs", ("Adj", "Adjs"), (1, 0), 0.45, True),
]
DECAY = 0.8
START = "S"

GRAMMAR = {}
for _p in PRODUCTIONS:
    GRAMMAR.setdefault(_p[0], []).append(_p)


def is_symbol(item):
    return item in GRAMMAR or item in LEXICON


# --------------------------------------------------------------------------------------------------
# Trees. A leaf is ("leaf", preterminal, source word, target words); an inner node is
# ("node", production, children) with children aligned to the production's source rhs (literal
# source words appear as plain strings).
# --------------------------------------------------------------------------------------------------

def sample(symbol, rng, depth=0):
    if symbol in LEXICON:
        entries = LEXICON[symbol]
        src, tgt, _ = rng.choices(entries, weights=[e[2] for e in entries])[0]
        return ("leaf", symbol, src, tgt)
    prods = GRAMMAR[symbol]
    weights = [p[3] * (DECAY ** depth if p[4] else 1.0) for p in prods]
    prod = rng.choices(prods, weights=weights)[0]
    child_depth = depth + (1 if prod[4] else 0)
    children = [sample(item, rng, child_depth) if is_symbol(item) else item for item in prod[1]]
    return ("node", prod, children)


def linearise(tree):
    """Returns (source tokens, target tokens, alignment) where alignment[j] = source index of target j."""
    src, tgt, align = [], [], []

    def source(t):
        # returns, per source rhs position, the list of source indices it covers
        if t[0] == "leaf":
            src.append(t[2])
            return len(src) - 1
        spans = []
        for child in t[2]:
            if isinstance(child, str):
                src.append(child)
                spans.append(len(src) - 1)
            else:
                spans.append(source(child))
        return spans

    def target(t, spans):
        if t[0] == "leaf":
            for w in t[3]:
                tgt.append(w)
                align.append(spans)
            return
        _, prod, children = t
        for item in prod[2]:
            if isinstance(item, tuple):
                i, word = item
                tgt.append(word)
                align.append(spans[i])
            else:
                target(children[item], spans[item])

    spans = source(tree)
    target(tree, spans)
    return src, tgt, align


# --------------------------------------------------------------------------------------------------
# Parse counter for the source side (top-down with memoisation; the grammar has no left recursion).
# --------------------------------------------------------------------------------------------------

LEX_INDEX = {}  # preterminal -> set of source words
LEX_TARGET = {}  # (preterminal, source word) -> target words
for _sym, _entries in LEXICON.items():
    LEX_INDEX[_sym] = {e[0] for e in _entries}
    for _e in _entries:
        LEX_TARGET[(_sym, _e[0])] = _e[1]


def parse(tokens, symbol=START):
    """Returns (number of parse trees of `tokens` as `symbol`, one of those trees or None)."""
    memo = {}

    def parse_at(sym, i):
        # dict: end position -> (number of distinct trees of tokens[i:end] as sym, one such tree)
        key = (sym, i)
        if key in memo:
            return memo[key]
        out = {}
        if sym in LEX_INDEX:
            if i < len(tokens) and tokens[i] in LEX_INDEX[sym]:
                out[i + 1] = (1, ("leaf", sym, tokens[i], LEX_TARGET[(sym, tokens[i])]))
        else:
            for prod in GRAMMAR[sym]:
                states = {i: (1, [])}  # position -> (count, children so far)
                for item in prod[1]:
                    nxt = {}
                    for pos, (cnt, kids) in states.items():
                        if is_symbol(item):
                            for end, (c, tree) in parse_at(item, pos).items():
                                old = nxt.get(end)
                                nxt[end] = (cnt * c + (old[0] if old else 0), old[1] if old else kids + [tree])
                        elif pos < len(tokens) and tokens[pos] == item:
                            old = nxt.get(pos + 1)
                            nxt[pos + 1] = (cnt + (old[0] if old else 0), old[1] if old else kids + [item])
                    states = nxt
                    if not states:
                        break
                for end, (cnt, kids) in states.items():
                    old = out.get(end)
                    out[end] = (cnt + (old[0] if old else 0), old[1] if old else ("node", prod, kids))
        memo[key] = out
        return out

    return parse_at(symbol, 0).get(len(tokens), (0, None))


# --------------------------------------------------------------------------------------------------
# Corpus generation with a prescribed length distribution.
# --------------------------------------------------------------------------------------------------

# (lowest, highest source length incl. punctuation, share of each split)
BUCKETS = [
    (3, 4, 0.03), (5, 9, 0.22), (10, 14, 0.26), (15, 19, 0.19), (20, 24, 0.13),
    (25, 29, 0.09), (30, 34, 0.05), (35, 40, 0.03),
]
MIN_LEN, MAX_LEN = BUCKETS[0][0], BUCKETS[-1][1]


def quotas(n):
    """Per-bucket counts summing to n (largest remainder rounding, deterministic)."""
    raw = [n * b[2] for b in BUCKETS]
    q = [int(x) for x in raw]
    order = sorted(range(len(BUCKETS)), key=lambda k: (-(raw[k] - q[k]), k))
    for k in order[: n - sum(q)]:
        q[k] += 1
    return q


def bucket_of(length):
    for k, (lo, hi, _) in enumerate(BUCKETS):
        if lo <= length <= hi:
            return k
    return None


def generate_split(n, rng, seen, max_tries_per_pair=2000):
    want = quotas(n)
    have = [0] * len(BUCKETS)
    pairs = []
    tries = 0
    while len(pairs) < n:
        tries += 1
        if tries > max_tries_per_pair * max(n, 1):
            sys.exit("make_toy_data: cannot fill the length buckets (too many pairs asked for?)")
        src, tgt, align = linearise(sample(START, rng))
        k = bucket_of(len(src))
        if k is None or have[k] >= want[k]:
            continue
        line = " ".join(src)
        if line in seen:
            continue
        seen.add(line)
        have[k] += 1
        pairs.append((line, " ".join(tgt), align))
    # the buckets fill at different speeds; shuffle so the file order does not follow the fill order
    rng.shuffle(pairs)
    return pairs


def histogram(name, lengths, width=5):
    print(f"  {name}: {len(lengths)} sentences, length min {min(lengths)} / mean {sum(lengths) / len(lengths):.1f}"
          f" / max {max(lengths)}, 30+ tokens: {100.0 * sum(l >= 30 for l in lengths) / len(lengths):.1f}%")
    counts = Counter((l // width) * width for l in lengths)
    top = max(counts.values())
    for start in range(0, max(lengths) + 1, width):
        c = counts.get(start, 0)
        if start + width <= min(lengths) and c == 0:
            continue
        bar = "#" * max(1 if c else 0, round(50 * c / top))
        print(f"    {start:2d}-{start + width - 1:2d} {c:6d} {100.0 * c / len(lengths):5.1f}%  {bar}")


def print_grammar():
    """Markdown tables of the productions and the lexicon (as used in data/README.md)."""
    def show(prod):
        lhs, rhs, order = prod[0], prod[1], prod[2]
        src = " ".join(rhs) if rhs else "ε"
        tgt = []
        for item in order:
            if isinstance(item, tuple):
                tgt.append(f'"{item[1]}"(←{rhs[item[0]]})')
            else:
                tgt.append(rhs[item] + "'")
        return lhs, src, " ".join(tgt) if tgt else "ε"

    print("| # | production (source) | target order | weight | recursive |")
    print("|---|---|---|---|---|")
    for k, p in enumerate(PRODUCTIONS):
        lhs, src, tgt = show(p)
        print(f"| {k + 1} | {lhs} → {src} | {tgt} | {p[3]} | {'yes' if p[4] else ''} |")
    print()
    print("| preterminal | source word → target |")
    print("|---|---|")
    for sym, entries in LEXICON.items():
        cells = ", ".join(f"{s} → {' '.join(t) if t else '∅'}" for s, t, _ in entries)
        print(f"| {sym} | {cells} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train", type=int, default=30000, help="training pairs (default 30000)")
    ap.add_argument("--valid", type=int, default=500, help="validation pairs (default 500)")
    ap.add_argument("--test", type=int, default=500, help="test pairs (default 500)")
    ap.add_argument("--out", default=os.path.join("data", "toy"), help="output folder (default data/toy)")
    ap.add_argument("--align", action="store_true",
                    help="also write {split}.align: gold word alignments, 'srcIndex-tgtIndex' pairs (0-based)")
    ap.add_argument("--no-verify", action="store_true", help="skip the unique-parse check of every source sentence")
    ap.add_argument("--print-grammar", action="store_true", help="print the grammar and lexicon tables and exit")
    ap.add_argument("--examples", type=int, default=0, help="print this many training pairs with alignments")
    ap.add_argument("--translate", metavar="SENTENCE",
                    help="parse one source sentence (tokens separated by spaces), print its target and alignment, exit")
    args = ap.parse_args()

    if args.print_grammar:
        print_grammar()
        return
    if args.translate is not None:
        n_parses, tree = parse(args.translate.split())
        if n_parses != 1:
            sys.exit(f"make_toy_data: {n_parses} parses (not a sentence of the source language)")
        show_alignment(*linearise(tree))
        return

    rng = random.Random(args.seed)
    seen = set()
    # valid and test first, so that they do not change when only the training size changes
    splits = [("valid", args.valid), ("test", args.test), ("train", args.train)]
    data = {}
    for name, n in splits:
        data[name] = generate_split(n, rng, seen)

    # checks
    all_src = [p[0] for name, _ in splits for p in data[name]]
    assert len(all_src) == len(set(all_src)), "duplicate source sentence"
    if not args.no_verify:
        for name, _ in splits:
            for line, tgt_line, _ in data[name]:
                n_parses, tree = parse(line.split())
                if n_parses != 1:
                    sys.exit(f"make_toy_data: grammar is ambiguous or broken: {n_parses} parses of: {line}")
                if " ".join(linearise(tree)[1]) != tgt_line:
                    sys.exit(f"make_toy_data: translation of the parse differs from the generated one: {line}")

    os.makedirs(args.out, exist_ok=True)
    for name, _ in splits:
        for side, col in (("src", 0), ("tgt", 1)):
            with open(os.path.join(args.out, f"{name}.{side}"), "w", encoding="utf-8", newline="\n") as f:
                for p in data[name]:
                    f.write(p[col] + "\n")
        if args.align:
            with open(os.path.join(args.out, f"{name}.align"), "w", encoding="utf-8", newline="\n") as f:
                for p in data[name]:
                    f.write(" ".join(f"{s}-{t}" for t, s in sorted((t, s) for t, s in enumerate(p[2]))) + "\n")

    print(f"make_toy_data: seed {args.seed}, wrote {args.out}/"
          f"{{train,valid,test}}.{{src,tgt}}{' and .align' if args.align else ''}")
    if not args.no_verify:
        print(f"  every source sentence has exactly one parse, and translating that parse gives its target"
              f" ({len(all_src)} checked)")
    src_vocab, tgt_vocab = set(), set()
    for name, _ in splits:
        for p in data[name]:
            src_vocab.update(p[0].split())
            tgt_vocab.update(p[1].split())
    print(f"  vocabulary: source {len(src_vocab)} types, target {len(tgt_vocab)} types (all splits)")
    for name, _ in splits:
        if not data[name]:
            continue
        print("source lengths (tokens incl. final punctuation):")
        histogram(name, [len(p[0].split()) for p in data[name]])
        tl = [len(p[1].split()) for p in data[name]]
        print(f"  {name} target lengths: min {min(tl)} / mean {sum(tl) / len(tl):.1f} / max {max(tl)}")
    for p in data["train"][: args.examples]:
        print()
        show_alignment(p[0].split(), p[1].split(), p[2])


def show_alignment(src, tgt, align):
    print("src: " + " ".join(f"{w}/{i}" for i, w in enumerate(src)))
    print("tgt: " + " ".join(f"{w}/{a}" for w, a in zip(tgt, align)))
    print("     (word/i on the target side: aligned to source word i)")


if __name__ == "__main__":
    main()
