"""C2PA Content Credentials: sign outputs with c2pa-python, and read/validate them back.

Key and certificate, in this order:

1. the user's own: ``VIDEDIT_C2PA_KEY`` and ``VIDEDIT_C2PA_CERT`` (PEM paths; the cert
   file holds the chain, leaf first), or ``key``/``cert`` under ``[c2pa]`` in
   ``<config dir>/config.toml``;
2. otherwise a per-installation key made on first use in ``<config dir>/c2pa/``,
   where the config dir is ``$VIDEDIT_CONFIG_DIR`` or ``~/.config/videdit``. It is
   never in the package or the repository.

C2PA (and c2pa-rs, which c2pa-python wraps) rejects a self-signed *leaf*
certificate, so the installation key is a small local CA plus a leaf signed by it
with the extensions the C2PA spec requires of signing certificates (spec 2.1,
section 14.5.1: v3, digitalSignature key usage, an allowed EKU such as
emailProtection, not a CA, AKI/SKI). Nothing trusts that CA, and verification says
so ("signed by an untrusted certificate") instead of hiding it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import OutputError, UsageError
from . import Provenance

__all__ = ["MIME", "container_mime", "config_dir", "signing_material", "sign_file", "read_credentials", "CredentialsReport"]

log = logging.getLogger("videdit")

# Output extension -> MIME type c2pa can embed a manifest in (BMFF and GIF).
MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".gif": "image/gif"}
WATERMARK_LABEL = "org.videdit.watermark"
PARAMS_LABEL = "org.videdit.generation"
UNTRUSTED = "signingCredential.untrusted"


def container_mime(path: str) -> str | None:
    """The MIME type of ``path``'s container if c2pa can carry a manifest in it, else None.

    Read from the file's first bytes, not its name: a renamed file is still read
    as what it is, and a WebM/Matroska file (which c2pa cannot parse) is reported
    as unsupported instead of as a broken MP4.
    """
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":  # ISO BMFF: the major brand tells QuickTime from MP4
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def config_dir() -> Path:
    """``$VIDEDIT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/videdit``, else ``~/.config/videdit``."""
    env = os.environ.get("VIDEDIT_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "videdit"


def _user_paths() -> tuple[str, str] | None:
    key, cert = os.environ.get("VIDEDIT_C2PA_KEY"), os.environ.get("VIDEDIT_C2PA_CERT")
    if bool(key) != bool(cert):
        raise UsageError("set both VIDEDIT_C2PA_KEY and VIDEDIT_C2PA_CERT (PEM files), or neither")
    if key:
        return key, cert
    cfg = config_dir() / "config.toml"
    if cfg.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10: no TOML reader in the standard library
            return None
        try:
            section = tomllib.loads(cfg.read_text()).get("c2pa", {})
        except (OSError, ValueError) as err:
            raise UsageError(f"{cfg}: cannot read ({err})") from None
        if section.get("key") and section.get("cert"):
            return os.path.expanduser(section["key"]), os.path.expanduser(section["cert"])
    return None


def _name(common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "videdit (self-issued, untrusted)")])


def _make_installation_key(folder: Path) -> None:
    """Create ``ca.pem``, ``cert.pem`` (leaf + CA chain) and ``key.pem`` (0600) in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("videdit local CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name("videdit installation")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "cert.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    fd = os.open(folder / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _installation_paths(create: bool = True) -> tuple[str, str] | None:
    """Key/cert of this installation, created on first use (atomically: built in a temp dir, renamed)."""
    folder = config_dir() / "c2pa"
    if not (folder / "key.pem").is_file():
        if not create:
            return None
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".c2pa-", dir=folder.parent))
            _make_installation_key(tmp)
            try:
                os.rename(tmp, folder)
            except OSError:  # another process made it first: use theirs
                for f in tmp.iterdir():
                    f.unlink()
                tmp.rmdir()
        except OSError as err:
            raise OutputError(f"{folder}: cannot create the signing key ({err.strerror or err})") from None
        log.info("created this installation's C2PA signing key in %s (self-issued, untrusted)", folder)
    return str(folder / "key.pem"), str(folder / "cert.pem")


def _alg_for(key_pem: bytes, where: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{where}: not an unencrypted PEM private key ({err})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "es256", 384: "es384", 521: "es512"}[key.curve.key_size]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise UsageError(f"{where}: unsupported key type {type(key).__name__}; use EC P-256/384/521, Ed25519 or RSA")


def signing_material() -> tuple[bytes, bytes, str, str]:
    """``(cert_chain_pem, key_pem, alg, origin)``; origin is ``"user"`` or ``"installation"``."""
    user = _user_paths()
    key_path, cert_path = user or _installation_paths()
    try:
        key, cert = Path(key_path).read_bytes(), Path(cert_path).read_bytes()
    except OSError as err:
        raise UsageError(f"{err.filename}: cannot read the C2PA signing key/certificate ({err.strerror})") from None
    return cert, key, _alg_for(key, key_path), "user" if user else "installation"


def _manifest(prov: Provenance, title: str) -> dict:
    """The manifest definition: actions, generation parameters and watermark record."""
    agent = {"name": "videdit", "version": prov.tool_version}
    main = {"action": "c2pa.created" if prov.action == "created" else "c2pa.edited",
            "digitalSourceType": prov.digital_source_type, "softwareAgent": agent,
            "description": "Generated with a diffusion model by videdit"}
    actions = [main]
    if prov.action == "edited":  # C2PA 2.x: an edit starts with c2pa.opened of the parent ingredient
        actions.insert(0, {"action": "c2pa.opened", "parameters": {"ingredientIds": ["source"]}})
    params = {"recipe": prov.recipe, "prompt": prov.prompt if prov.include_prompt else None,
              "prompt_withheld": bool(prov.prompt) and not prov.include_prompt}
    mark = {"embedded": prov.watermark, "payload_id": prov.payload_id, "scheme": "videdit-tiled-ss-v1"}
    if not prov.watermark:
        mark["reason"] = "disabled with --no-watermark (research use)"
    return {"claim_generator_info": [agent], "title": title,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}},
                           {"label": PARAMS_LABEL, "data": params},
                           {"label": WATERMARK_LABEL, "data": mark}]}


def sign_file(src: str, dest: str, prov: Provenance, mime: str, title: str) -> None:
    """Write ``src`` with an embedded, signed manifest for ``prov`` to ``dest`` (OutputError on failure)."""
    import c2pa

    cert, key, alg, _ = signing_material()
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, cert, key, None))
        builder = c2pa.Builder(_manifest(prov, title))
        if prov.action == "edited":
            source = prov.source
            if os.path.isdir(source):  # an image sequence: its first frame stands for it
                from ..io.probe import sequence_images

                source = sequence_images(source)[0]
            ext = os.path.splitext(source)[1].lower()
            fmt = container_mime(source) or MIME.get(ext, ext.lstrip(".") or "video/mp4")
            with open(source, "rb") as s:
                builder.add_ingredient({"title": os.path.basename(os.path.normpath(prov.source)),
                                        "relationship": "parentOf", "label": "source"}, fmt, s)
        with open(src, "rb") as s, open(dest, "w+b") as d:
            builder.sign(signer, mime, s, d)
    except OSError as err:
        raise OutputError(f"{dest}: C2PA signing failed ({err.strerror or err})") from None
    except c2pa.C2paError as err:
        raise OutputError(f"{dest}: C2PA signing failed ({' '.join(str(err).split())})") from None


@dataclass(frozen=True)
class CredentialsReport:
    """C2PA status of a file.

    ``status``: ``"valid"`` (signature and hashes check out), ``"tampered"`` (a
    manifest is there but the content or manifest no longer matches it),
    ``"absent"`` (no manifest) or ``"unsupported"`` (format c2pa cannot read).
    ``trusted``: the signer chains to a trust anchor c2pa knows (False for the
    self-issued installation key). ``signer``: issuer / common name / serial.
    ``this_installation``: signed with this machine's own key. ``claims``: action,
    digital source type, tool, recipe, prompt, watermark record, ingredients.
    ``failures``: c2pa validation codes that failed.
    """

    status: str
    trusted: bool = False
    signer: dict = field(default_factory=dict)
    this_installation: bool = False
    claims: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    summary: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _installation_serial() -> str | None:
    paths = _installation_paths(create=False)
    if paths is None:
        return None
    from cryptography import x509

    try:
        return str(x509.load_pem_x509_certificate(Path(paths[1]).read_bytes()).serial_number)
    except (OSError, ValueError):
        return None


def _claims(manifest: dict) -> dict:
    assertions = {a.get("label", ""): a.get("data", {}) for a in manifest.get("assertions", [])}
    actions = next((v.get("actions", []) for k, v in assertions.items() if k.startswith("c2pa.actions")), [])
    main = next((a for a in actions if a.get("action") != "c2pa.opened"), {})
    params = assertions.get(PARAMS_LABEL, {})
    return {"action": main.get("action"), "digital_source_type": main.get("digitalSourceType"),
            "software_agent": main.get("softwareAgent"),
            "claim_generator": (manifest.get("claim_generator_info") or [{}])[0],
            "recipe": params.get("recipe"), "prompt": params.get("prompt"),
            "prompt_withheld": params.get("prompt_withheld", False),
            "watermark": assertions.get(WATERMARK_LABEL),
            "ingredients": [{"title": i.get("title"), "relationship": i.get("relationship")}
                            for i in manifest.get("ingredients", [])]}


def read_credentials(path: str) -> CredentialsReport:
    """Read and validate the C2PA manifest of ``path`` (never raises for a bad manifest)."""
    import c2pa

    if os.path.isdir(path):
        return CredentialsReport("unsupported", summary="an image sequence: image files here carry no Content "
                                 "Credentials, only the watermark")
    try:
        mime = container_mime(path)
        if mime is None:
            return CredentialsReport("unsupported", summary="not an MP4, MOV or GIF file, the containers "
                                     "that carry Content Credentials here")
        with open(path, "rb") as f:
            reader = c2pa.Reader.try_create(mime, f)
            if reader is None:
                return CredentialsReport("absent", summary="no Content Credentials (C2PA manifest) in the file")
            state = reader.get_validation_state() or "Invalid"
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as err:
        msg = " ".join(str(err).split())
        if "NotSupported" in type(err).__name__ or "not supported" in msg.lower():
            return CredentialsReport("unsupported", summary=f"C2PA cannot read this format ({msg})")
        return CredentialsReport("tampered", failures=[msg], summary=f"C2PA manifest is unreadable ({msg})")
    failed = [r.get("code", "") for r in (results.get("activeManifest") or {}).get("failure", [])]
    failed += [r.get("code", "") for m in results.get("ingredientDeltas", []) or []
               for r in (m.get("validationDeltas") or {}).get("failure", [])]
    sig = manifest.get("signature_info", {}) or {}
    signer = {k: sig.get(k) for k in ("issuer", "common_name", "cert_serial_number", "alg")}
    serial = _installation_serial()
    mine = serial is not None and str(sig.get("cert_serial_number")) == serial
    trusted = state == "Trusted" or (state == "Valid" and UNTRUSTED not in failed)
    broken = [c for c in failed if c != UNTRUSTED]
    status = "tampered" if broken or state == "Invalid" else "valid"
    who = f"{signer['common_name'] or '?'} ({signer['issuer'] or '?'})"
    if status == "valid":
        summary = f"valid Content Credentials, signed by {who}" + (
            "" if trusted else ", signed by an untrusted certificate"
            + (" (this installation's own self-issued key)" if mine else ""))
    else:
        summary = f"Content Credentials do not match the file (tampered): {', '.join(broken) or state}"
    return CredentialsReport(status, trusted=trusted, signer=signer, this_installation=mine,
                             claims=_claims(manifest), failures=failed, summary=summary)


def manifest_json(path: str) -> str:
    """The raw manifest store of ``path`` as JSON text (for debugging), or ``"{}"``."""
    import c2pa

    with open(path, "rb") as f:
        reader = c2pa.Reader.try_create(MIME.get(os.path.splitext(path)[1].lower(), "video/mp4"), f)
        return reader.json() if reader else json.dumps({})
