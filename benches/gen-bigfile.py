#!/usr/bin/env python3
"""Makes the big files of the big-file bench (benches/bigfile.sh).

    benches/gen-bigfile.py image PATH GIB [--seed N]
        a VM-disk-like image, every byte written (no holes): 1 MiB blocks of
        random data (30 %), text-like data (40 %), zeros (25 %) and a
        repeated 4 KiB pattern (5 %), in runs of 1 to 64 blocks.
    benches/gen-bigfile.py change PATH PERCENT [--seed N]
        rewrites PERCENT % of the image's 1 MiB blocks in place, in runs of
        1 to 64 blocks at random places (a guest writing between backups),
        with new random or text-like data.
    benches/gen-bigfile.py sparse PATH GIB DATA_PERCENT [--seed N]
        a sparse file of GIB apparent size with DATA_PERCENT % of it written
        (random and text-like runs of 64 KiB to 8 MiB at random places), the
        rest holes.

Deterministic for the same arguments. Run by hand, never in the test command.
"""

import argparse
import os
import random
import sys

MIB = 1 << 20


def text_pool(rng):
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(3000)
    ]
    out = " ".join(rng.choice(words) for _ in range(2 * MIB // 5)).encode()
    return out[: 2 * MIB]


def block(kind, rng, pool):
    if kind == "random":
        return rng.randbytes(MIB)
    if kind == "text":
        off = rng.randrange(0, MIB)
        return pool[off:off + MIB]
    if kind == "zero":
        return bytes(MIB)
    return rng.randbytes(4096) * (MIB // 4096)


def kinds(rng):
    r = rng.random()
    return "random" if r < 0.30 else "text" if r < 0.70 else "zero" if r < 0.95 else "pattern"


def image(a):
    rng = random.Random(a.seed)
    pool = text_pool(random.Random(7))
    blocks = int(a.gib * 1024)
    with open(a.path, "wb") as f:
        i = 0
        while i < blocks:
            kind = kinds(rng)
            run = min(blocks - i, rng.randint(1, 64))
            for _ in range(run):
                f.write(block(kind, rng, pool))
            i += run
            if i % 4096 < run:
                print(f"{i // 1024} GiB", file=sys.stderr)


def change(a):
    rng = random.Random(a.seed + 1000)
    pool = text_pool(random.Random(8))
    size = os.path.getsize(a.path)
    blocks = size // MIB
    want = int(blocks * a.percent / 100)
    done = 0
    changed = bytearray(blocks)
    with open(a.path, "r+b") as f:
        while done < want:
            start = rng.randrange(0, blocks)
            run = min(rng.randint(1, 64), blocks - start)
            kind = "random" if rng.random() < 0.5 else "text"
            for b in range(start, start + run):
                if done >= want:
                    break
                if not changed[b]:
                    changed[b] = 1
                    done += 1
                f.seek(b * MIB)
                f.write(block(kind, rng, pool))
    print(f"changed {done} of {blocks} MiB blocks ({100 * done / blocks:.1f} %)", file=sys.stderr)


def sparse(a):
    rng = random.Random(a.seed + 2000)
    pool = text_pool(random.Random(9))
    size = int(a.gib * 1024) * MIB
    want = int(size * a.percent / 100)
    written = 0
    with open(a.path, "wb") as f:
        f.truncate(size)
        while written < want:
            n = min(rng.randint(1, 128) * 64 * 1024, want - written)
            off = rng.randrange(0, size - n)
            kind = "random" if rng.random() < 0.5 else "text"
            data = b"".join(block(kind, rng, pool) for _ in range((n + MIB - 1) // MIB))[:n]
            f.seek(off)
            f.write(data)
            written += n
    print(f"{size} bytes apparent, {written} written", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("image")
    p.add_argument("path")
    p.add_argument("gib", type=float)
    p = sub.add_parser("change")
    p.add_argument("path")
    p.add_argument("percent", type=float)
    p = sub.add_parser("sparse")
    p.add_argument("path")
    p.add_argument("gib", type=float)
    p.add_argument("percent", type=float)
    for p in sub.choices.values():
        p.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    {"image": image, "change": change, "sparse": sparse}[a.cmd](a)


if __name__ == "__main__":
    main()
