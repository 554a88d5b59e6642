#!/usr/bin/env python3
"""An independent verifier for Coffer's witness log and fleet-key bundles.

Written from the specifications, not from the Rust code, with the Python
standard library only:

* Ed25519 verification: RFC 8032 section 5.1.7 (cofactorless, as in the
  reference code of RFC 8032 section 6), with S < L and canonical points;
* C2SP signed-note (https://c2sp.org/signed-note): key ids, verifier keys,
  note text and signature lines;
* C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint);
* RFC 6962 hashing and the RFC 9162 section 2.1.3.2 / 2.1.4.2 inclusion and
  consistency proof verification algorithms;
* Coffer's bundle encodings (docs/protocol.md, "Fleet-key validation");
* C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tiles, entry bundles;
* C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature): cosignature/v1.

Usage:
    verify.py --self-test          check the published vectors (Go sumdb note,
                                   transparency-dev/merkle RFC 6962 data)
    verify.py FIXTURES.json        verify a fixture file written by the Rust
                                   test crates/coffer-transparency/tests/interop.rs
    verify.py --tiles VECTOR.json  verify a tiles vector (testdata/tiles.golden.json):
                                   every tile and entry bundle, the checkpoint, its
                                   cosignature and proofs made from the tiles

Exit status 0 when everything verifies, 1 when anything does not. The last
line is "N passed, M failed".
"""

import base64
import hashlib
import json
import struct
import sys

# ---------------------------------------------------------------- Ed25519 ---
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _add(a, b):
    A = (a[1] - a[0]) * (b[1] - b[0]) % P
    B = (a[1] + a[0]) * (b[1] + b[0]) % P
    C = 2 * a[3] * b[3] * D % P
    Dd = 2 * a[2] * b[2] % P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F % P, G * H % P, F * G % P, E * H % P)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _eq(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_G = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % P)


def ed25519_verify(pub, msg, sig):
    if len(pub) != 32 or len(sig) != 64:
        return False
    a = _decompress(pub)
    r = _decompress(sig[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + pub + msg).digest(), "little") % L
    return _eq(_mul(s, _G), _add(r, _mul(h, a)))


# ------------------------------------------------------------- signed note --
class VerifyError(Exception):
    pass


def parse_vkey(vkey):
    """name+hex(keyid)+base64(0x01 || pubkey) -> (name, keyid, pubkey)."""
    name, keyid_hex, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 33 or raw[0] != 1:
        raise VerifyError("not an Ed25519 verifier key")
    pub = raw[1:]
    keyid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if keyid.hex() != keyid_hex:
        raise VerifyError("key id does not match the key")
    return name, keyid, pub


def open_note(note, vkey):
    """Returns the note text if it carries a valid signature by vkey."""
    name, keyid, pub = parse_vkey(vkey)
    if not note.endswith("\n"):
        raise VerifyError("note does not end in a newline")
    i = note.rfind("\n\n")
    if i < 0:
        raise VerifyError("no blank line")
    text, sigs = note[: i + 1], note[i + 2 :]
    found = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise VerifyError("bad signature line")
        sname, b64 = line[2:].split(" ", 1)
        raw = base64.b64decode(b64, validate=True)
        if sname == name and raw[:4] == keyid:
            found = True
            if not ed25519_verify(pub, text.encode(), raw[4:]):
                raise VerifyError("note signature does not verify")
    if not found:
        raise VerifyError("no signature by the key")
    return text


def parse_checkpoint(text):
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise VerifyError("checkpoint too short")
    if not lines[1].isdigit() or (len(lines[1]) > 1 and lines[1][0] == "0"):
        raise VerifyError("bad tree size")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32:
        raise VerifyError("bad root hash")
    return lines[0], int(lines[1]), root


# ------------------------------------------------------------ RFC 6962/9162 -
def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        raise VerifyError("index out of range")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerifyError("inclusion proof too long")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if not (sn == 0 and r == root):
        raise VerifyError("inclusion proof does not verify")


def verify_consistency(size1, size2, proof, root1, root2):
    """RFC 9162 2.1.4.2 (and the trivial cases)."""
    if size1 > size2:
        raise VerifyError("sizes out of order")
    if size1 == size2:
        if proof or root1 != root2:
            raise VerifyError("same size, different roots")
        return
    if size1 == 0:
        if proof:
            raise VerifyError("non-empty proof from the empty tree")
        return
    if not proof:
        raise VerifyError("empty consistency proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerifyError("consistency proof too long")
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if not (fr == root1 and sr == root2 and sn == 0):
        raise VerifyError("consistency proof does not verify")


# --------------------------------------------------------- Coffer bundles ---
NAMESPACE = "coffer.encrypted_backups.fleet_keys.v1"


def witness_message(proof):
    ns = proof["namespace"].encode()
    digest = bytes.fromhex(proof["digest"])
    if len(digest) != 32:
        raise VerifyError("bad digest")
    return (
        b"coffer-witness-signature-v1\x00"
        + struct.pack(">I", len(ns))
        + ns
        + struct.pack(">QQ", proof["epoch"], proof["timestamp"])
        + digest
    )


def verify_bundle(bundle, witness_vkey, operator_vkey):
    """Returns the log leaf of a bundle after checking it."""
    proof = bundle["proof"]
    if proof["namespace"] != NAMESPACE:
        raise VerifyError("wrong namespace")
    if hashlib.sha256(bundle["artifact"].encode()).hexdigest() != proof["digest"]:
        raise VerifyError("digest is not SHA-256(artifact)")
    art = json.loads(bundle["artifact"])
    if json.dumps(art, separators=(",", ":"), sort_keys=True, ensure_ascii=False) != bundle["artifact"]:
        raise VerifyError("artifact is not canonical JSON")
    wsig = base64.b64decode(proof["witness_signature"], validate=True)
    csig = base64.b64decode(proof["operator_countersignature"], validate=True)
    msg = witness_message(proof)
    if not ed25519_verify(parse_vkey(witness_vkey)[2], msg, wsig):
        raise VerifyError("witness signature does not verify")
    if not ed25519_verify(parse_vkey(operator_vkey)[2], b"coffer-operator-countersignature-v1\x00" + wsig, csig):
        raise VerifyError("operator countersignature does not verify")
    return msg + wsig


# ------------------------------------------------------- tiles, cosigning --
def mth(hashes):
    """RFC 6962 Merkle Tree Hash over leaf hashes."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def index_path(n):
    parts = ["%03d" % (n % 1000)]
    n //= 1000
    while n > 0:
        parts.append("x%03d" % (n % 1000))
        n //= 1000
    return "/".join(reversed(parts))


def tile_name(level, n, width):
    p = "tile/%s/%s" % (level, index_path(n))
    return p if width == 256 else "%s.p/%d" % (p, width)


def parse_cosigner_vkey(vkey):
    name, keyid_hex, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 33 or raw[0] != 4:
        raise VerifyError("not a cosignature/v1 (0x04) key")
    keyid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if keyid.hex() != keyid_hex:
        raise VerifyError("cosigner key id does not match the key")
    return name, keyid, raw[1:]


def check_cosignature(note, vkey):
    """Returns the timestamp of vkey's valid cosignature on the note."""
    name, keyid, pub = parse_cosigner_vkey(vkey)
    i = note.rfind("\n\n")
    text, sigs = note[: i + 1], note[i + 2 :]
    for line in sigs[:-1].split("\n"):
        sname, b64 = line[2:].split(" ", 1)
        raw = base64.b64decode(b64, validate=True)
        if sname == name and raw[:4] == keyid:
            if len(raw) != 4 + 8 + 64:
                raise VerifyError("cosignature has the wrong length")
            ts = struct.unpack(">Q", raw[4:12])[0]
            msg = ("cosignature/v1\ntime %d\n" % ts).encode() + text.encode()
            if not ed25519_verify(pub, msg, raw[12:]):
                raise VerifyError("cosignature does not verify")
            return ts
    raise VerifyError("no cosignature by the key")


def run_tiles(fx):
    results = []

    def check(label, fn):
        try:
            fn()
            results.append((label, None))
        except (VerifyError, ValueError, KeyError, TypeError, IndexError, struct.error) as e:
            results.append((label, str(e) or type(e).__name__))

    size = fx["size"]
    state = {}

    def cp():
        origin, n, root = parse_checkpoint(open_note(fx["checkpoint"], fx["log_key"]))
        if n != size:
            raise VerifyError("checkpoint size is not the vector's")
        state["root"] = root
    check("checkpoint", cp)
    check("cosignature", lambda: state.__setitem__("ts", check_cosignature(fx["checkpoint"], fx["cosigner_key"])))
    # Entry bundles: u16be-length-prefixed entries, 256 per full bundle.
    entries = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        path = "tile/entries/%s" % index_path(n) + ("" if width == 256 else ".p/%d" % width)
        def one(path=path, width=width):
            b = base64.b64decode(fx["entries"][path], validate=True)
            got = []
            while b:
                ln = struct.unpack(">H", b[:2])[0]
                if len(b) < 2 + ln:
                    raise VerifyError("truncated entry")
                got.append(b[2 : 2 + ln])
                b = b[2 + ln :]
            if len(got) != width:
                raise VerifyError("bundle width")
            entries.extend(got)
        check("entries " + path, one)
    leaves = [leaf_hash(e) for e in entries]
    check("root", lambda: None if mth(leaves) == state.get("root") else (_ for _ in ()).throw(VerifyError("entries do not hash to the checkpoint")))
    # Tiles: level 0 holds leaf hashes; level l+1 the MTH of each full tile below.
    level = leaves
    l = 0
    while level:
        for n in range((len(level) + 255) // 256):
            chunk = level[n * 256 : (n + 1) * 256]
            name = tile_name(l, n, len(chunk))
            def one(name=name, chunk=chunk):
                t = base64.b64decode(fx["tiles"][name], validate=True)
                if t != b"".join(chunk):
                    raise VerifyError("tile content differs from the entries")
            check("tile " + name, one)
        level = [mth(level[i * 256 : (i + 1) * 256]) for i in range(len(level) // 256)]
        l += 1
    for inc in fx["inclusion"]:
        def one(inc=inc):
            proof = [base64.b64decode(h, validate=True) for h in inc["proof"]]
            verify_inclusion(inc["index"], size, leaves[inc["index"]], proof, state["root"])
        check("inclusion %d" % inc["index"], one)
    for con in fx["consistency"]:
        def one(con=con):
            proof = [base64.b64decode(h, validate=True) for h in con["proof"]]
            m = con["from"]
            verify_consistency(m, size, proof, mth(leaves[:m]), state["root"])
        check("consistency %d" % con["from"], one)
    return results


# ------------------------------------------------------------------ driver --
def run_fixtures(fx):
    results = []

    def check(label, fn):
        try:
            fn()
            results.append((label, None))
        except (VerifyError, ValueError, KeyError, TypeError, IndexError) as e:
            results.append((label, str(e) or type(e).__name__))

    cps = []
    for i, note in enumerate(fx["checkpoints"]):
        def one(note=note):
            origin, size, root = parse_checkpoint(open_note(note, fx["log_key"]))
            if origin != parse_vkey(fx["log_key"])[0]:
                raise VerifyError("origin is not the log key's name")
            cps.append((size, root))
        check(f"checkpoint {i}", one)
    if len(cps) != len(fx["checkpoints"]):
        return results
    leaves = {}
    for i, b in enumerate(fx["bundles"]):
        check(f"bundle {i}", lambda i=i, b=b: leaves.__setitem__(i, verify_bundle(b, fx["log_key"], fx["operator_key"])))
    for j, inc in enumerate(fx["inclusion"]):
        def one(inc=inc):
            size, root = cps[inc["checkpoint"]]
            leaf = leaf_hash(leaves[inc["bundle"]])
            proof = [base64.b64decode(h, validate=True) for h in inc["proof"]]
            verify_inclusion(inc["index"], size, leaf, proof, root)
        check(f"inclusion {j}", one)
    for j, con in enumerate(fx["consistency"]):
        def one(con=con):
            (s1, r1), (s2, r2) = cps[con["from"]], cps[con["to"]]
            proof = [base64.b64decode(h, validate=True) for h in con["proof"]]
            verify_consistency(s1, s2, proof, r1, r2)
        check(f"consistency {j}", one)
    return results


def self_test():
    results = []
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    note = text + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    results.append(("go note opens", None if open_note(note, vkey) == text else "text differs"))
    try:
        open_note(note.replace("cryptography", "cryptographY"), vkey)
        results.append(("go note tampered", "accepted"))
    except VerifyError:
        results.append(("go note tampered", None))
    leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
    lh = [leaf_hash(bytes.fromhex(x)) for x in leaves]
    root8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
    root6 = bytes.fromhex("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef")
    p = [bytes.fromhex(x) for x in (
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]
    try:
        verify_inclusion(5, 8, lh[5], p, root8)
        results.append(("rfc6962 inclusion 5/8", None))
    except VerifyError as e:
        results.append(("rfc6962 inclusion 5/8", str(e)))
    c = [bytes.fromhex(x) for x in (
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]
    try:
        verify_consistency(6, 8, c, root6, root8)
        results.append(("rfc6962 consistency 6->8", None))
    except VerifyError as e:
        results.append(("rfc6962 consistency 6->8", str(e)))
    return results


def main(argv):
    if len(argv) == 3 and argv[1] == "--tiles":
        with open(argv[2], encoding="utf-8") as f:
            results = run_tiles(json.load(f))
    elif len(argv) != 2:
        print(__doc__)
        return 2
    elif argv[1] == "--self-test":
        results = self_test()
    else:
        with open(argv[1], encoding="utf-8") as f:
            results = run_fixtures(json.load(f))
    failed = [(label, why) for label, why in results if why is not None]
    for label, why in results:
        print(f"{'ok  ' if why is None else 'FAIL'} {label}{'' if why is None else ': ' + why}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
