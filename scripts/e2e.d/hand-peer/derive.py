#!/usr/bin/env python3
# Pair keys (docs/key-file.md, "Per-pair key derivation") as the algorithm arguments of `ip xfrm state add`.
# Standard library only; the active key is the key file's last key line.
#   derive.py KEYFILE A B A_BOOT_ID B_BOOT_ID   → the key of A → B, then of B → A (A, B: underlay addresses)
#   derive.py KEYFILE                           → "KEY_ID FINGERPRINT" (keyFingerprint, as the agent publishes it)
import hashlib, hmac, socket, struct, sys
def len32(b): return struct.pack(">I", len(b)) + b
def hexbytes(s): return bytes.fromhex(s[2:] if s[:2].lower() == "0x" else s)
def addr(a): b = socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a); return bytes([len(b)]) + b
def hkdf(ikm, info, n):
    prk, t, out = hmac.new(b"ipsec-agent pair key v1", ikm, hashlib.sha256).digest(), b"", b""
    for i in range(1, (n + 31) // 32 + 1):
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest(); out += t
    return out[:n]
f = [l.split("#")[0].split() for l in open(sys.argv[1])]; f = [l for l in f if l][-1]
kid = int(f[0].rstrip("+"), 16) if f[0][:2].lower() == "0x" else int(f[0].rstrip("+"))
if f[1] == "rfc4106(gcm(aes))": ident, enc, auth = f"rfc4106(gcm(aes)) icv={f[3]}", hexbytes(f[2]), None
else: ident, enc, auth = f"{f[1]} cbc(aes)", hexbytes(f[4]), hexbytes(f[2])
ident = len32(ident.encode())
if len(sys.argv) == 2:
    sys.exit(print(kid, hashlib.sha256(b"ipsec-agent key fingerprint v1\0" + bytes([kid]) + ident + len32(enc)
                                       + len32(auth or b"")).hexdigest()[:32]))
for s, d, sb, db in [sys.argv[2:6], [sys.argv[3], sys.argv[2], sys.argv[5], sys.argv[4]]]:
    info = lambda p: bytes([p, kid]) + ident + addr(s) + addr(d) + len32(sb.encode()) + len32(db.encode())
    if auth is None: print(f"aead rfc4106(gcm(aes)) 0x{hkdf(enc, info(1), len(enc)).hex()} {f[3]}")
    else: print(f"auth-trunc {f[1]} 0x{hkdf(auth, info(2), len(auth)).hex()} "
                f"{dict(sha1=96, sha256=128, sha512=256)[f[1][5:-1]]} enc cbc(aes) 0x{hkdf(enc, info(1), len(enc)).hex()}")
