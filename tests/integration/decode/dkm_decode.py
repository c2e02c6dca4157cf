#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reads dkm ciphertexts without dkm: from a backup, the master key and, for
customer-managed policies, the customer's keys.

Written from the format reference alone (issue 12 §5; it was README.md's
"Reference", and is now the manual page dkm-formats(5), man/dkm-formats.5),
with nothing but Python and python3-cryptography: it imports and runs no dkm
code, so that it proves the reference complete.  Each step names the part
of dkm-formats(5) it follows (a "# --- dkm-formats(5), PART ---" line, which
tests/man/check.sh finds in the page).

    dkm_decode.py --backup FILE --master-key FILE [--customer-key FILE]...
                  [--use-availability-key] [--context KEY=VALUE]...
                  [--out FILE] CIPHERTEXT
    dkm_decode.py --backup FILE --master-key FILE --check
    (--share FILE, given as often as the share set's threshold, stands for
    --master-key)

Exit status: 0 done; 1 refused (the message says why); 2 usage.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import uuid
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class Refused(Exception):
    pass


# --- dkm-formats(5), Conventions --------------------------------------------------------------

def hkdf(ikm, info, salt=None, length=32):
    # "no salt": left out, which RFC 5869 defines as 32 zero bytes.
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def gcm_open(key, nonce, ct_and_tag, aad, what):
    try:
        return AESGCM(key).decrypt(nonce, ct_and_tag, aad)
    except InvalidTag:
        raise Refused(what) from None


def id_binary(text):
    # RFC 4122 byte order: the hex digits in the order they are written.
    if len(text) != 36 or text != text.lower():
        raise Refused("policy id %r is not 36 lower-case characters" % text)
    return uuid.UUID(text).bytes


def id_text(binary):
    return str(uuid.UUID(bytes=binary))


def b64(record, member, size, where):
    v = record.get(member)
    if not isinstance(v, str):
        raise Refused("%s: member %s is missing or not a string" % (where, member))
    try:
        raw = base64.b64decode(v, validate=True)
    except ValueError:
        raise Refused("%s: member %s is not base64" % (where, member)) from None
    if len(raw) != size:
        raise Refused("%s: member %s holds %d bytes, not %d" % (where, member, len(raw), size))
    return raw


def whole(record, member, where, absent=None):
    v = record.get(member, absent)
    if v is None or isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise Refused("%s: member %s is missing or not a whole number" % (where, member))
    return v


# --- dkm-formats(5), Backup file format ----------------------------------------------------------

BACKUP_MAGIC = b"DKMBKUP\n"


def read_backup(data, master):
    """Checks the backup as the reference orders it; returns {key: value}.
    master None: read without checking (only to find the recovery record,
    whose key comes from the shares)."""
    if len(data) < 8 or data[:8] != BACKUP_MAGIC:
        raise Refused("backup: not a dkm backup (no DKMBKUP magic)")
    if len(data) < 56:
        raise Refused("backup: truncated: %d bytes, shorter than the header" % len(data))
    version, flags, length, revision, created, n_records = struct.unpack_from("<IIQQQQ", data, 8)
    check = data[48:56]
    if version != 1:
        raise Refused("backup: format version %d, this reader knows 1" % version)
    if flags != 0:
        raise Refused("backup: unknown flags 0x%x" % flags)
    if len(data) != length:
        raise Refused("backup: %d bytes, its header announces %d" % (len(data), length))
    end = length - 32
    if master is not None:
        key = hkdf(master, b"dkm store backup v1")
        if not hmac.compare_digest(hmac256(key, b"dkm backup key check")[:8], check):
            raise Refused("backup: made under another master key")
        if end < 56 or not hmac.compare_digest(hmac256(key, data[:end]), data[end:]):
            raise Refused("backup: its MAC does not verify: the file was altered")
    elif end < 56:
        raise Refused("backup: truncated")
    off = 56

    def take(n, what):
        nonlocal off
        if end - off < n:
            raise Refused("backup: %s runs past the records" % what)
        b = data[off:off + n]
        off += n
        return b

    names = []
    for what in ("backend name", "source"):
        (n,) = struct.unpack("<H", take(2, what))
        names.append(take(n, what).decode("utf-8", "replace"))
    records = {}
    for i in range(n_records):
        (kl,) = struct.unpack("<I", take(4, "record %d's key length" % (i + 1)))
        if not 1 <= kl <= 1024:
            raise Refused("backup: record %d: key length %d" % (i + 1, kl))
        try:
            k = take(kl, "record %d's key" % (i + 1)).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("backup: record %d: its key is not UTF-8" % (i + 1)) from None
        (vl,) = struct.unpack("<I", take(4, "record %d's value length" % (i + 1)))
        if vl > 1024 * 1024 + 256:
            raise Refused("backup: record %d: value length %d" % (i + 1, vl))
        records[k] = take(vl, "record %d's value" % (i + 1))
    if off != end:
        raise Refused("backup: %d bytes after its %d records" % (end - off, n_records))
    return {"backend": names[0], "source": names[1], "revision": revision,
            "created": created, "records": records}


# --- dkm-formats(5), Record authentication -----------------------------------------------------

AUTH = b'"dkm_auth":"1.'


def unseal(record_key, name, value):
    """The record as it was before its MAC; refuses one whose MAC fails."""
    f = value.rfind(AUTH)
    if f < 0:
        raise Refused("record %s has no dkm_auth member" % name)
    if f > 0 and value[f - 1:f] == b"\n":
        kind, before = b"r", value[:f - 1]
    elif value[:1] == b"{" and (f == 1 or (f > 2 and value[f - 1:f] == b",")):
        kind, before = b"j", (b"{}" if f == 1 else value[:f - 1] + b"}")
    else:
        raise Refused("record %s: dkm_auth in the wrong place" % name)
    rest = value[f + len(AUTH):]
    tail = b'"}' if kind == b"j" else b'"'
    if not rest.endswith(tail):
        raise Refused("record %s: dkm_auth does not end the value" % name)
    seq_text, dot, mac_hex = rest[:-len(tail)].partition(b".")
    if (not dot or not seq_text.isdigit() or (len(seq_text) > 1 and seq_text[:1] == b"0")
            or len(mac_hex) != 64 or mac_hex != mac_hex.lower()):
        raise Refused("record %s: malformed dkm_auth" % name)
    try:
        got = bytes.fromhex(mac_hex.decode("ascii"))
    except ValueError:
        raise Refused("record %s: malformed dkm_auth" % name) from None
    seq = int(seq_text)
    if seq >= 1 << 64:
        raise Refused("record %s: malformed dkm_auth" % name)
    key = name.encode("utf-8")
    want = hmac256(record_key, b"dkm-store-record\0" + kind + struct.pack("<QI", seq, len(key)) + key + before)
    if not hmac.compare_digest(want, got):
        raise Refused("record %s: its MAC does not verify: altered, moved or not this installation's" % name)
    return before


class Store:
    def __init__(self, backup, master):
        self.records = backup["records"]
        self.record_key = hkdf(master, b"dkm store record authentication v1")

    def raw(self, name):
        if name not in self.records:
            return None
        return unseal(self.record_key, name, self.records[name])

    def json(self, name):
        v = self.raw(name)
        if v is None:
            return None
        try:
            o = json.loads(v.decode("utf-8"))
        except ValueError:
            raise Refused("record %s is not JSON" % name) from None
        if not isinstance(o, dict):
            raise Refused("record %s is not a JSON object" % name)
        return o

    def check_all(self):
        for name, value in self.records.items():
            # "initialized" may be the one record without a MAC (until the first start).
            if name == "initialized" and AUTH not in value:
                continue
            self.raw(name)
        return len(self.records)


# --- dkm-formats(5), Key wrapping ------------------------------------------------------------------

PURPOSE_POLICY_KEY, PURPOSE_GENERATION_KEY, PURPOSE_AVAILABILITY_KEY = 0, 1, 2
PURPOSE_POLICY_KEY_AVAILABILITY, PURPOSE_PREVIOUS_POLICY_KEY = 3, 4
PURPOSE_RECOVERY_MASTER = 5


def unwrap(kek, purpose, policy_id, generation, wrapped, what):
    aad = b"dkm-wrap-v1:" + bytes([purpose]) + policy_id + struct.pack("<I", generation)
    return gcm_open(kek, wrapped[:12], wrapped[12:], aad, what)


# --- dkm-formats(5), Customer-key blobs ------------------------------------------------------------

def open_blob(blob, policy_text, key_bytes):
    if blob[:3] != b"DK\x01":
        raise Refused("customer-key blob: bad magic or version")
    kind = blob[3:4]
    nonce = blob[4:16]
    if kind == b"F":
        if len(key_bytes) != 32:
            return None
        kek = key_bytes
    elif kind == b"P":
        # A copy of the token's AES key: ECB over the two counter blocks.
        if len(key_bytes) not in (16, 24, 32):
            return None
        enc = Cipher(algorithms.AES(key_bytes), modes.ECB()).encryptor()
        kek = enc.update(nonce + b"dkm\x01" + nonce + b"dkm\x02") + enc.finalize()
    else:
        raise Refused("customer-key blob of unknown kind %r" % kind)
    aad = b"dkm-ckey-v1:" + blob[:4] + policy_text.encode("ascii")
    try:
        return AESGCM(kek).decrypt(nonce, blob[16:], aad)
    except InvalidTag:
        return None


# --- dkm-formats(5), Store records ---------------------------------------------
# The policy and generation keys, in the order of "Reading data without dkm".

def policy_key(store, policy_text, master, customer_keys, use_availability):
    where = "policies/" + policy_text
    rec = store.json(where)
    if rec is None:
        raise Refused("the backup has no policy %s" % policy_text)
    if rec.get("id") != policy_text:
        raise Refused("%s names id %r" % (where, rec.get("id")))
    pid = id_binary(policy_text)
    name = rec.get("name")
    if rec.get("purged") is True:
        raise Refused("policy '%s' was purged: nothing unwraps" % name)
    if "wrapped_key" in rec:
        key = unwrap(master, PURPOSE_POLICY_KEY, pid, 0, b64(rec, "wrapped_key", 60, where),
                     "policy '%s': its key does not unwrap with this master key" % name)
    else:
        cks = rec.get("customer_keys")
        if not isinstance(cks, list) or len(cks) != 2:
            raise Refused("%s has neither wrapped_key nor two customer_keys" % where)
        key = None
        if use_availability:
            akey = unwrap(master, PURPOSE_AVAILABILITY_KEY, pid, 0, b64(rec, "availability_key", 60, where),
                          "policy '%s': the availability key does not unwrap" % name)
            key = unwrap(akey, PURPOSE_POLICY_KEY_AVAILABILITY, pid, 0,
                         b64(rec, "availability_wrap", 60, where),
                         "policy '%s': availability_wrap does not open" % name)
        else:
            if not all(isinstance(ck, dict) for ck in cks):
                raise Refused("%s: customer_keys holds something other than objects" % where)
            for i, ck in enumerate(cks):
                blob = b64(ck, "blob", 64, "%s customer key %d" % (where, i + 1))
                for kb in customer_keys:
                    key = open_blob(blob, policy_text, kb)
                    if key is not None:
                        break
                if key is not None:
                    break
            if key is None:
                raise Refused("policy '%s' is customer-managed: none of the given customer keys "
                              "opens its blobs (%s, %s)" % (name, cks[0].get("uri"), cks[1].get("uri")))
    return rec, pid, key


def generation_key(store, policy_text, gen, master, customer_keys, use_availability):
    rec, pid, pkey = policy_key(store, policy_text, master, customer_keys, use_availability)
    name = rec.get("name")
    where = "policies/%s/gens/%010d" % (policy_text, gen)
    g = store.json(where)
    if g is None:
        raise Refused("policy '%s' has no generation %d in the backup" % (name, gen))
    if whole(g, "generation", where) != gen:
        raise Refused("%s names generation %r" % (where, g.get("generation")))
    if g.get("state") == "destroyed" or "wrapped_key" not in g:
        raise Refused("generation %d of policy '%s' was destroyed" % (gen, name))
    if g.get("state") == "retired":
        print("dkm_decode: note: generation %d of policy '%s' is retired (dkmd refuses it)" % (gen, name),
              file=sys.stderr)
    gv = whole(g, "key_version", where, 0)
    pv = whole(rec, "key_version", "policies/" + policy_text, 0)
    if gv == pv:
        kek = pkey
    elif "previous_key" in rec and whole(rec, "previous_version", "policies/" + policy_text, 0) == gv:
        kek = unwrap(pkey, PURPOSE_PREVIOUS_POLICY_KEY, pid, gv,
                     b64(rec, "previous_key", 60, "policies/" + policy_text),
                     "policy '%s': previous_key does not unwrap" % name)
    else:
        raise Refused("generation %d of policy '%s' is wrapped under policy key version %d, "
                      "which the policy no longer has" % (gen, name, gv))
    return unwrap(kek, PURPOSE_GENERATION_KEY, pid, gen, b64(g, "wrapped_key", 60, where),
                  "generation %d of policy '%s': its key does not unwrap" % (gen, name))


# --- dkm-formats(5), Ciphertext format v1 ---
# --- dkm-formats(5), Streaming ciphertext format v2 --------------------------------------------------------

def canonical_context(pairs):
    keys = [k for k, _ in pairs]
    if len(pairs) > 64 or len(set(keys)) != len(keys):
        raise Refused("too many or duplicate context keys")
    out = struct.pack("<H", len(pairs))
    for k, v in sorted(pairs):
        if not 1 <= len(k) <= 128 or len(v) > 1024 or b"\0" in k + v:
            raise Refused("bad context pair")
        out += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return out


def header_fields(data, what):
    if data[:4] != b"DKMC":
        raise Refused("not a dkm ciphertext (bad magic)")
    if len(data) < 40:
        raise Refused("truncated " + what)
    version, alg, flags = data[4], data[5], struct.unpack_from("<H", data, 6)[0]
    if alg != 1:
        raise Refused("unsupported ciphertext algorithm")
    gen = struct.unpack_from("<I", data, 24)[0]
    if gen == 0:
        raise Refused("invalid generation 0 in ciphertext")
    return version, flags, id_text(data[8:24]), gen


def decrypt(data, ctx, keyfor):
    if data[:4] != b"DKMC":
        raise Refused("not a dkm ciphertext (bad magic)")
    version = data[4] if len(data) > 4 else None
    if version == 1:
        _, flags, pid, gen = header_fields(data, "ciphertext")
        if flags != 0:
            raise Refused("unknown ciphertext flags")
        if len(data) < 56:
            raise Refused("truncated ciphertext")
        return gcm_open(keyfor(pid, gen), data[28:40], data[40:], data[:40] + ctx,
                        "ciphertext failed authentication (altered, truncated, or wrong context)")
    if version == 2:
        _, flags, pid, gen = header_fields(data, "stream header")
        if flags not in (0, 1):
            raise Refused("unknown ciphertext flags")
        if data[35] != 0:
            raise Refused("nonzero reserved byte in stream header")
        seg = struct.unpack_from("<I", data, 36)[0]
        if not 4096 <= seg <= 1048576:
            raise Refused("stream segment size out of range")
        h = 72 if flags == 1 else 40
        if len(data) < h:
            raise Refused("truncated stream header")
        header, prefix = data[:h], data[28:35]
        gkey = keyfor(pid, gen)
        key = hkdf(gkey, b"dkm stream subkey" + data[:40], salt=data[40:72]) if flags == 1 else gkey
        body = data[h:]
        if len(body) < 16:
            raise Refused("stream truncated")
        aead, out, i, off = AESGCM(key), [], 0, 0
        while True:
            final = len(body) - off <= seg + 16
            chunk = body[off:] if final else body[off:off + seg + 16]
            if len(chunk) < 16:
                raise Refused("stream truncated")
            if final and len(chunk) == 16 and i > 0:
                raise Refused("empty final segment")
            if i >= 0xffffffff and not final:
                raise Refused("stream too long")
            nonce = prefix + struct.pack(">I", i) + (b"\x01" if final else b"\x00")
            try:
                out.append(aead.decrypt(nonce, chunk, header + ctx))
            except InvalidTag:
                raise Refused("segment %d failed authentication" % i) from None
            if final:
                return b"".join(out)
            off += seg + 16
            i += 1
    raise Refused("unsupported ciphertext version")


# --- dkm-formats(5), Recovery share format ------------------------------------------------------------

def gf_mul(a, b):
    # GF(2^8) with the polynomial 0x11d.
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11d
        b >>= 1
    return r


def gf_inv(a):
    r, e = 1, 254  # a^254 = a^-1
    while e:
        if e & 1:
            r = gf_mul(r, a)
        a = gf_mul(a, a)
        e >>= 1
    return r


def parse_share(line, path):
    line = line.rstrip(b"\n").rstrip(b"\r")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise Refused("share %s is not ASCII" % path) from None
    head, _, crc = text.rpartition(":")
    f = head.split(":")
    if len(f) != 7 or f[0] != "dkm-share-1":
        raise Refused("share %s is not a dkm-share-1 line" % path)
    if len(crc) != 8 or "%08x" % zlib.crc32(head.encode("ascii")) != crc:
        raise Refused("share %s: its CRC does not match (mistyped or damaged)" % path)
    try:
        inst, sset = bytes.fromhex(f[1]), bytes.fromhex(f[2])
        threshold, shares, index = int(f[3]), int(f[4]), int(f[5])
        value = bytes.fromhex(f[6])
    except ValueError:
        raise Refused("share %s: a malformed field" % path) from None
    if len(inst) != 8 or len(sset) != 4 or len(value) != 32 or not 2 <= threshold <= shares <= 16 \
            or not 1 <= index <= shares:
        raise Refused("share %s: a field out of range" % path)
    return inst, sset, threshold, index, value


def key_from_shares(paths):
    shares = [parse_share(read_file(p, "share"), p) for p in paths]
    inst, sset, threshold = shares[0][0], shares[0][1], shares[0][2]
    if any(s[:3] != (inst, sset, threshold) for s in shares):
        raise Refused("the shares are of different installations or share sets")
    byx = {s[3]: s[4] for s in shares}
    if len(byx) < threshold:
        raise Refused("%d distinct shares, the set needs %d" % (len(byx), threshold))
    xs = sorted(byx)[:threshold]
    master = bytearray(32)
    for xi in xs:
        # The Lagrange coefficient of xi at 0; subtraction is XOR.
        c = 1
        for xj in xs:
            if xj != xi:
                c = gf_mul(c, gf_mul(xj, gf_inv(xj ^ xi)))
        for b in range(32):
            master[b] ^= gf_mul(byx[xi][b], c)
    return bytes(master), inst, sset


def master_from_shares(paths, backup_data):
    """Version 1 sets are shares of the master key; version 2 sets are
    shares of a recovery key R, and the recovery record holds the master
    key wrapped under R (purpose 5)."""
    key, inst, sset = key_from_shares(paths)
    raw = read_backup(backup_data, None)["records"].get("recovery")
    try:
        rec = json.loads(raw) if raw is not None else None
    except ValueError:
        raise Refused("the backup's recovery record is not JSON") from None
    if rec is None or rec.get("version", 1) == 1:
        return key, inst
    if rec.get("version") != 2:
        raise Refused("recovery record version %r, this reader knows 1 and 2" % rec.get("version"))
    if rec.get("set") != sset.hex():
        raise Refused("the shares are of another share set than the backup's recovery record")
    try:
        wrapped = bytes.fromhex(rec["wrapped"])
    except (KeyError, TypeError, ValueError):
        raise Refused("the recovery record's wrapped master key is malformed") from None
    master = unwrap(key, PURPOSE_RECOVERY_MASTER, inst + sset + bytes(4), 0, wrapped,
                    "the master key in the recovery record (wrong shares?)")
    return master, inst


# --- the command ---------------------------------------------------------------------------

def read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Refused("cannot read %s %s: %s" % (what, path, e.strerror)) from None


def main(argv):
    ap = argparse.ArgumentParser(description="Decrypt dkm ciphertexts from a backup and the master key.")
    ap.add_argument("--backup", required=True)
    ap.add_argument("--master-key")
    ap.add_argument("--share", action="append", default=[],
                    help="a recovery share file; enough of them stand for --master-key")
    ap.add_argument("--customer-key", action="append", default=[],
                    help="a file: customer key (32 bytes), or a copy of a pkcs11: token's AES key")
    ap.add_argument("--use-availability-key", action="store_true",
                    help="for customer-managed policies: the master key's way, without customer keys")
    ap.add_argument("--context", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out")
    ap.add_argument("--check", action="store_true", help="only check the backup and every record's MAC")
    ap.add_argument("ciphertext", nargs="?")
    a = ap.parse_args(argv)
    if not a.check and not a.ciphertext:
        ap.error("a ciphertext file is needed (or --check)")
    if bool(a.master_key) == bool(a.share):
        ap.error("give either --master-key or --share files")
    try:
        inst = None
        if a.share:
            master, inst = master_from_shares(a.share, read_file(a.backup, "backup"))
        else:
            master = read_file(a.master_key, "master key")
            if len(master) != 32:
                raise Refused("master key %s holds %d bytes, not 32" % (a.master_key, len(master)))
        backup = read_backup(read_file(a.backup, "backup"), master)
        store = Store(backup, master)
        n = store.check_all()
        if inst is not None:
            rec = store.json("recovery")
            if rec is None or rec.get("installation") != inst.hex():
                raise Refused("the shares are not of the installation this backup is of")
            if rec.get("check") != hkdf(master, b"dkm recovery check value v1", salt=inst).hex():
                raise Refused("the shares rebuild a key that fails the recovery record's check value")
        if a.check:
            print("backup of %s %s at revision %d: %d records, every MAC verifies"
                  % (backup["backend"], backup["source"], backup["revision"], n))
            return 0
        pairs = []
        for c in a.context:
            k, eq, v = c.partition("=")
            if not eq:
                raise Refused("bad --context %r: expected KEY=VALUE" % c)
            pairs.append((os.fsencode(k), os.fsencode(v)))
        ctx = canonical_context(pairs)
        cks = [read_file(p, "customer key") for p in a.customer_key]

        def keyfor(pid, gen):
            return generation_key(store, pid, gen, master, cks, a.use_availability_key)

        plain = decrypt(read_file(a.ciphertext, "ciphertext"), ctx, keyfor)
    except Refused as e:
        print("dkm_decode: %s" % e, file=sys.stderr)
        return 1
    except (ValueError, TypeError, KeyError, AttributeError, struct.error) as e:
        # Records pass their MAC first, so only dkm itself could write
        # these: say so, without a traceback.
        print("dkm_decode: malformed input the reference does not allow: %s" % e, file=sys.stderr)
        return 1
    if a.out:
        fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(plain)
    else:
        sys.stdout.buffer.write(plain)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
