"""Signed attestations: an anchor for `harness verify` that the folder's writer cannot forge.

A finished run signed with an Ed25519 key gets `ATTESTATION.intoto.json`: an in-toto Statement v1
whose subjects are the digests of MANIFEST.sha256 and results.json and whose predicate records
what the run was (config_md5, dataset sha256, image, git commit, seeds, verdicts), wrapped in a
DSSE envelope. The signature covers the DSSE pre-authentication encoding (PAE) of the payload:

    "DSSEv1" SP LEN(payloadType) SP payloadType SP LEN(payload) SP payload

(LEN: decimal byte count). Anyone can regenerate a manifest; only the key holder can sign it, so
`harness verify --trusted_key PUB` fails when the folder was edited after signing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from harness.folder import io as fio
from harness.folder.experiment import (
    ATTESTATION,
    MANIFEST,
    ExperimentError,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    sha256_file,
)

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://github.com/gainakt/harness/attestation/run/v1"
SIGN_KEY_ENV = "HARNESS_SIGN_KEY"
SIGNED_STATUSES = ("completed", "partial", "failed")  # an interrupted run is not finished


class AttestationError(ExperimentError):
    """A key or attestation problem; one line for the user."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of (payloadType, payload)."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


# ---------------------------------------------------------------------------------------------
# Keys


def _serialization():
    from cryptography.hazmat.primitives import serialization

    return serialization


def generate_keypair(path: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write an Ed25519 private key (PEM, mode 0600) to `path` and its public key to `path`.pub."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ser = _serialization()
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if (p.exists() or p.is_symlink()) and not force:
            raise AttestationError(f"{p} already exists; pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, pub_path):
        p.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    atomic_write_bytes(pub_path, public)
    return path, pub_path


def load_private_key(source: str) -> Any:
    """An Ed25519 private key from a PEM file path, or from PEM text itself (a CI secret)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = source.encode() if source.lstrip().startswith("-----BEGIN") else _read_key_file(Path(source))
    try:
        key = _serialization().load_pem_private_key(text, password=None)
    except (ValueError, TypeError) as exc:
        raise AttestationError(f"signing key: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AttestationError("signing key: not an Ed25519 key (make one with `harness keys generate`)")
    return key


def load_public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = _serialization().load_pem_public_key(_read_key_file(path))
    except ValueError as exc:
        raise AttestationError(f"{path}: not a PEM public key ({str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AttestationError(f"{path}: not an Ed25519 public key")
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise AttestationError(f"{path}: cannot read the key ({exc.strerror})") from None


def key_id(public_key: Any) -> str:
    """sha256 of the raw public key bytes (hex): names the key in the envelope."""
    ser = _serialization()
    return hashlib.sha256(public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)).hexdigest()


def configured_key(flag: str | None) -> str | None:
    """--sign_key, else $HARNESS_SIGN_KEY (a path or the PEM text), else None (no signing)."""
    return flag or os.environ.get(SIGN_KEY_ENV) or None


# ---------------------------------------------------------------------------------------------
# Statement and envelope


def build_statement(exp: Path) -> dict[str, Any]:
    """The in-toto Statement of a finished folder (its manifest must exist)."""
    from harness.run.environment import parse as parse_environment

    cfg = read_json(exp / "config.json")
    results = read_json(exp / "results.json")
    env_path = exp / "environment.txt"
    env = parse_environment(fio.read_text(env_path, errors="replace")) if fio.is_regular(env_path) else {}
    verdicts: dict[str, Any] = {"status": results.get("status"),
                                "seeds": {s: r.get("status") for s, r in (results.get("per_seed") or {}).items()}}
    for name, key in (("reproduction_report.json", "reproduction"), ("verification_report.json", "verification")):
        if (exp / name).is_file():
            report = read_json(exp / name)
            verdicts[key] = report.get("verdict", "passed" if report.get("passed") else "failed")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": sha256_file(exp / n)}} for n in (MANIFEST, "results.json")],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "experiment_id": (cfg.get("experiment") or {}).get("id"),
            "config_md5": cfg.get("config_md5"),
            "dataset_sha256": (cfg.get("data_checksum") or {}).get("sha256"),
            "image_digest": env.get("image_id"),
            "git_commit": env.get("git_commit"),
            "seeds": (cfg.get("seeds") or {}).get("all"),
            "verdicts": verdicts,
            # Modifications a command accepted (--accept_modified), as modifications_accepted.txt records
            # them; an empty list for a folder that is what its run wrote.
            "modifications_accepted": accepted_modifications(exp),
        },
    }


def accepted_modifications(exp: Path) -> list[str]:
    """The lines of modifications_accepted.txt (empty when the folder has none)."""
    from harness.folder.experiment import ACCEPTED

    if not fio.exists(exp / ACCEPTED):
        return []
    return [ln for ln in fio.read_text(exp / ACCEPTED).splitlines() if ln.strip()]


def refuse_accepted(exp: Path, allow_accepted: bool) -> None:
    """Signing vouches for a folder: one whose modifications were accepted is signed only when asked."""
    if accepted_modifications(exp) and not allow_accepted:
        raise AttestationError(f"{exp}: not signed: its modifications were accepted (modifications_accepted.txt); "
                               "pass --sign_accepted to sign it anyway (the attestation records them)")


def sign_folder(exp: Path, key_source: str) -> Path:
    """Sign the folder's current manifest and results; write ATTESTATION.intoto.json."""
    if not (exp / MANIFEST).is_file():
        raise AttestationError(f"{exp}: no {MANIFEST} to sign")
    key = load_private_key(key_source)
    payload = json.dumps(build_statement(exp), sort_keys=True, separators=(",", ":")).encode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()),
                        "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()}],
    }
    atomic_write_json(exp / ATTESTATION, envelope)
    return exp / ATTESTATION


def check_signing_key(flag: str | None) -> None:
    """Load the configured signing key (flag or environment) now, so that a bad one is said in one line
    before anything trains or changes, not after (AttestationError)."""
    source = configured_key(flag)
    if source is not None:
        load_private_key(source)


def sign_if_configured(exp: Path, flag: str | None, *, allow_accepted: bool = False) -> Path | None:
    """Sign a finished run when a key is configured (flag or environment); None otherwise. A folder with
    accepted modifications is refused (AttestationError) unless `allow_accepted`."""
    source = configured_key(flag)
    if source is None:
        return None
    status_path = exp / "run_status.json"
    status = read_json(status_path).get("status") if status_path.is_file() else None
    if status not in SIGNED_STATUSES:
        print(f"note: {exp.name} is {status}; not signed (only finished runs are)")
        return None
    refuse_accepted(exp, allow_accepted)
    path = sign_folder(exp, source)
    print(f"attestation: {path}")
    return path


# ---------------------------------------------------------------------------------------------
# Verification


def check_attestation(exp: Path, trusted_key: Path) -> tuple[bool, str]:
    """(passed, reason): the envelope is signed by `trusted_key` and covers the current files."""
    path = exp / ATTESTATION
    if path.is_symlink() or not path.is_file():
        return False, f"{ATTESTATION} is missing (the folder is not signed)"
    public = load_public_key(trusted_key)
    try:
        envelope = fio.loads_json(fio.read_text(path, limit=fio.JSON_LIMIT))
        payload = base64.b64decode(envelope["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
        payload_type = envelope["payloadType"]
    except (ValueError, KeyError, TypeError) as exc:
        return False, f"{ATTESTATION} is not a DSSE envelope ({type(exc).__name__}: {exc})"
    if payload_type != PAYLOAD_TYPE:
        return False, f"{ATTESTATION} payloadType {payload_type!r} is not {PAYLOAD_TYPE}"
    if not any(_signature_ok(public, sig, pae(payload_type, payload)) for sig in sigs):
        return False, f"{ATTESTATION}: no signature verifies with the trusted key {key_id(public)[:16]}…"
    statement = json.loads(payload)
    if statement.get("_type") != STATEMENT_TYPE:
        return False, f"{ATTESTATION}: not an in-toto Statement v1"
    stale = [s.get("name") for s in statement.get("subject", [])
             if not (exp / str(s.get("name"))).is_file() or s.get("name") not in (MANIFEST, "results.json")
             or sha256_file(exp / s["name"]) != (s.get("digest") or {}).get("sha256")]
    covered = {s.get("name") for s in statement.get("subject", [])}
    if stale or not {MANIFEST, "results.json"} <= covered:
        return False, (f"the signed attestation does not cover the current files: "
                       f"{', '.join(map(str, stale)) or 'subjects missing'} changed after signing")
    cfg = read_json(exp / "config.json")
    if statement.get("predicate", {}).get("config_md5") != cfg.get("config_md5"):
        return False, "the signed config_md5 differs from config.json's"
    return True, f"signed by {key_id(public)[:16]}…; covers {MANIFEST} and results.json"


def _signature_ok(public: Any, sig: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(sig, message)
    except InvalidSignature:
        return False
    return True


def sign_existing(exp: Path, flag: str | None, *, allow_accepted: bool = False) -> Path:
    """`harness keys sign EXP`: sign a finished folder, only if it is exactly what its manifest says."""
    from harness.folder.experiment import FolderLock, check_before_write

    source = configured_key(flag)
    if source is None:
        raise AttestationError(f"no signing key: pass --sign_key PATH or set {SIGN_KEY_ENV}")
    with FolderLock(exp):
        check_before_write(exp, "sign it", remedy="`harness resume --accept_modified` records the change and "
                                                   "re-derives the folder; then sign it with --sign_accepted")
        status = read_json(exp / "run_status.json").get("status") if (exp / "run_status.json").is_file() else None
        if status not in SIGNED_STATUSES:
            raise AttestationError(f"{exp}: status {status}; only finished runs are signed")
        refuse_accepted(exp, allow_accepted)
        return sign_folder(exp, source)


def keys_command(ns: argparse.Namespace) -> int:
    """`harness keys generate PATH` and `harness keys sign EXP`."""
    if ns.keys_command == "sign":
        from harness.folder.experiment import find_experiment

        exp = find_experiment(ns.experiment, ns.output_base)
        print(f"attestation: {sign_existing(exp, ns.sign_key, allow_accepted=ns.sign_accepted)}")
        return 0
    private, public = generate_keypair(Path(ns.path).expanduser(), force=ns.force)
    print(f"private key: {private} (keep it secret: it signs attestations)")
    print(f"public key:  {public} (give it to verifiers: harness verify EXP --trusted_key {public})")
    return 0
