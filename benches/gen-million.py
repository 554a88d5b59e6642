#!/usr/bin/env python3
"""Generates a tree of many small files for the scale bench (benches/scale.sh).

    benches/gen-million.py DIR [FILES] [--seed N]

FILES defaults to 1,000,000. The tree is deterministic for a given FILES and
seed, and mixes the shapes that hurt backup tools:

* wide folders: 40 % of the files in folders of 2,000 to 20,000 entries;
* deep folders: 10 % along chains 32 levels deep (`deep/c*/l00/l01/...`),
  a few files at every level;
* an ordinary source-tree-like hierarchy: the other half, fan-out 8 over
  4 levels, about 60 files per folder.

Sizes: 60 % under 1 KiB, 33.6 % 1-8 KiB, 6 % 8-32 KiB, 0.4 % 64-512 KiB
(mean ~4.2 KiB: 1 M files are ~4.2 GB of data, and at least 4 GB on disk
since every non-empty file takes a 4 KiB block; `--size-scale` multiplies
all sizes). Contents are text-like (slices of a generated
word pool, compressible about 3x) with a unique first line, so no two files
are equal but compression across files helps, as in real trees. Every file
gets an mtime of its own (a fixed past date plus its number), so runs on
different days produce identical trees.

Run by hand, never in the test command. 1 M files take ~2-4 min to write.
"""

import argparse
import os
import random
import sys

WORDS_SEED = 1234567


def word_pool(size, rng):
    syll = ["ka", "lo", "mi", "ne", "ru", "sta", "pre", "tor", "vel", "xen", "qu", "ab",
            "fn", "let", "mut", "impl", "self", "(", ")", "{", "}", ";", "::", "->", "\n    "]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(4000)]
    out = []
    n = 0
    while n < size:
        w = rng.choice(words)
        out.append(w)
        n += len(w) + 1
    return (" ".join(out)).encode()[:size]


def size_for(rng, mean_scale):
    r = rng.random()
    if r < 0.60:
        s = rng.randint(0, 1023)
    elif r < 0.936:
        s = rng.randint(1024, 8 * 1024)
    elif r < 0.996:
        s = rng.randint(8 * 1024, 32 * 1024)
    else:
        s = rng.randint(64 * 1024, 512 * 1024)
    return int(s * mean_scale)


def plan(files, rng):
    """Yields relative folder paths and how many files each gets."""
    wide = int(files * 0.40)
    deep = int(files * 0.10)
    rest = files - wide - deep
    # Wide folders: 2,000 to 20,000 entries each.
    i = 0
    while wide > 0:
        n = min(wide, rng.randint(2000, 20000))
        yield f"wide/w{i:03d}", n
        wide -= n
        i += 1
    # Deep chains: 32 levels, 3 files per level.
    c = 0
    while deep > 0:
        path = f"deep/c{c:04d}"
        for lvl in range(32):
            path += f"/l{lvl:02d}"
            n = min(deep, 3)
            if n == 0:
                break
            yield path, n
            deep -= n
        c += 1
    # Source-tree-like: fan-out 8 over 4 levels (4096 leaves + inner folders).
    dirs = []

    def walk(prefix, depth):
        dirs.append(prefix)
        if depth < 4:
            for k in range(8):
                walk(f"{prefix}/m{k}", depth + 1)

    walk("src", 0)
    per = rest // len(dirs)
    extra = rest - per * len(dirs)
    for j, d in enumerate(dirs):
        yield d, per + (1 if j < extra else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("files", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size-scale", type=float, default=1.0,
                    help="multiplies every file size (default 1: mean ~4.2 KiB)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pool = word_pool(8 << 20, random.Random(WORDS_SEED))
    scale = a.size_scale
    os.makedirs(a.dir, exist_ok=False)
    made = 0
    total = 0
    base_time = 1_600_000_000
    for rel, n in plan(a.files, rng):
        d = os.path.join(a.dir, rel)
        os.makedirs(d, exist_ok=True)
        for k in range(n):
            size = size_for(rng, scale)
            head = f"file {made} of {a.files} seed {a.seed}\n".encode()
            off = rng.randrange(0, len(pool) - 1)
            body = pool[off:off + max(0, size - len(head))]
            while len(head) + len(body) < size:
                body += pool[: size - len(head) - len(body)]
            p = os.path.join(d, f"f{k:05d}.{('rs', 'txt', 'c', 'json', 'md')[k % 5]}")
            with open(p, "wb") as f:
                f.write((head + body)[:size])
            t = base_time + made
            os.utime(p, (t, t))
            made += 1
            total += size
            if made % 100_000 == 0:
                print(f"{made} files, {total / 1e9:.2f} GB", file=sys.stderr)
    print(f"{made} files, {total} bytes in {a.dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
