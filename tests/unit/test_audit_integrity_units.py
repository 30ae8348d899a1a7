"""The chain's pure parts: encoding, classification of breaks, keys, checkpoint files."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest

from tsaccess import AuditChainError
from tsaccess.audit.integrity import encoding as enc
from tsaccess.audit.integrity.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from tsaccess.audit.integrity.keys import keygen, load_signing_key, load_verify_key
from tsaccess.audit.integrity.verdict import classify
from tsaccess.cli.main import main


def _leaf(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def _seq(*ns: int) -> bytes:
    return b"".join(_leaf(n) for n in ns)


@pytest.mark.parametrize(
    ("recomputed", "want"),
    [
        ((0, 1, 2, 3), None),
        ((0, 1, 2, 3, 4), None),  # rows sealed later: not judged here
        ((0, 9, 2, 3), (1, "changed")),
        ((0, 2, 3), (1, "missing")),
        ((2, 3), (0, "missing")),  # the oldest chunk dropped
        ((0, 9, 1, 2, 3), (1, "inserted")),
        ((0, 2, 1, 3), (1, "reordered")),
        ((0, 1), (2, "truncated")),
        ((), (0, "truncated")),
    ],
)
def test_a_break_is_the_first_position_that_differs_and_its_kind(recomputed, want):
    assert classify(_seq(0, 1, 2, 3), _seq(*recomputed)) == want


def test_a_leaf_found_only_across_a_boundary_does_not_count():
    stored = _seq(0, 1)
    shifted = b"\x00" * 5 + _leaf(1) + b"\x00" * 27  # _leaf(1) at an unaligned offset
    assert classify(stored, _leaf(0) + shifted) == (1, "changed")


def test_record_text_is_postgresqls_composite_output():
    # from the server: SELECT ROW(true, '127.0.0.1'::inet, '10.0.0.0/8'::inet, 1.5::float8,
    #                  ''::text, NULL::text, 'a b', 'say "x" \y', '(1,2)')::text
    fields = ["t", "127.0.0.1", "10.0.0.0/8", "1.5", "", None, "a b", 'say "x" \\y', "(1,2)"]
    assert enc.record_text(fields) == (
        '(t,127.0.0.1,10.0.0.0/8,1.5,"",,"a b","say ""x"" \\\\y","(1,2)")'
    )
    assert enc.record_text(["a\u00a0b", "x\x1fy"]) == "(a\u00a0b,x\x1fy)"  # C isspace() only


def test_trailing_null_attributes_do_not_change_a_records_hash():
    assert enc.strip_trailing_nulls("(1,2,,)") == "(1,2)"
    assert enc.strip_trailing_nulls('(1,"a,")') == '(1,"a,")'
    assert enc.strip_trailing_nulls("(,)") == "()"
    assert enc.strip_trailing_nulls(None) is None
    assert enc.data_text("(1,2,)", None) == enc.data_text("(1,2)", None) == '("(1,2)",)'


@pytest.fixture
def pair(tmp_path: Path):
    return keygen(tmp_path / "key")


def _checkpoint(key_id: str) -> Checkpoint:
    return Checkpoint(
        system_identifier="7716060268026107354",
        database="company_db",
        database_oid=16384,
        table="public.activity_audit",
        data_schema="tsaccess_audit",
        block=3,
        first_position=100,
        leaf_count=20,
        audit_rows=18,
        data_records=400,
        lo_txid=900,
        hi_txid=950,
        columns=("id", "event_time", "username"),
        position=120,
        rows=110,
        records=2000,
        head=hashlib.sha256(b"head").hexdigest(),
        sealed_at="2026-12-06T05:47:21.534913+00:00",
        signed_at="2026-12-06T05:47:21.603006+00:00",
        key_id=key_id,
    )


def test_keys_are_private_and_never_shown(pair, tmp_path):
    assert (pair.private.stat().st_mode & 0o777, pair.public.stat().st_mode & 0o777) == (
        0o600,
        0o644,
    )
    key = load_signing_key(pair.private)
    secret = pair.private.read_text()
    body = "".join(secret.splitlines()[1:-1])
    assert body not in repr(key) and repr(key) == f"SigningKey(key_id={pair.key_id!r})"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(AuditChainError, match="exists"):
        keygen(pair.private)
    os.chmod(pair.private, 0o640)
    with pytest.raises(AuditChainError, match="chmod 600") as exc:
        load_signing_key(pair.private)
    assert body not in str(exc.value)
    broken = tmp_path / "broken"
    broken.write_text(secret.replace(body[:20], "A" * 20))
    broken.chmod(0o600)
    with pytest.raises(AuditChainError) as exc:
        load_signing_key(broken)
    assert body[20:40] not in str(exc.value) and exc.value.__cause__ is None
    with pytest.raises(AuditChainError, match="not an Ed25519 public key"):
        load_verify_key(pair.private)


def test_one_changed_byte_anywhere_in_a_checkpoint_is_refused(pair, tmp_path):
    key = load_signing_key(pair.private)
    written = write_checkpoint(tmp_path / "cps", _checkpoint(key.key_id), key)
    assert written.path is not None
    good = read_checkpoint(written.path, key.verify_key)
    assert good == _checkpoint(key.key_id) and good.path == written.path
    raw = written.path.read_bytes()
    probe = tmp_path / "probe.json"
    for at in range(len(raw)):
        for flip in (0x01, 0x20):  # a bit, and the case of a letter (hex digits!)
            changed = bytearray(raw)
            changed[at] ^= flip
            probe.write_bytes(bytes(changed))
            with pytest.raises(AuditChainError, match="refused"):
                read_checkpoint(probe, key.verify_key)
    other = load_signing_key(keygen(tmp_path / "other").private)
    with pytest.raises(AuditChainError, match="signed with key"):
        read_checkpoint(written.path, other.verify_key)


def test_keygen_on_the_command_line(tmp_path, capsys):
    assert main(["audit", "keygen", "--out", str(tmp_path / "k"), "--json"]) == 0
    assert (tmp_path / "k").exists() and (tmp_path / "k.pub").exists()
    assert main(["audit", "keygen", "--out", str(tmp_path / "k")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["audit", "keygen"]) == 2  # --out is needed
