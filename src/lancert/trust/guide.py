"""Per-platform instructions to trust a certificate, each with the file that platform wants.

Platforms we cannot drive from Linux (Windows, macOS, Android, iOS) still get the exact commands and
menu paths, and the file in the format their importers accept, written by :mod:`lancert.pki.formats`.
Files go to ``-o DIR`` or, by default, next to the input file, named after it:

=========  =====================  ==============================================================
platform   file                   why that format
=========  =====================  ==============================================================
windows    ``<stem>.crt``         Base64 with CRLF, what browsers export and the import wizard opens
macos      ``<stem>.cer``         DER, what Keychain Access and ``security`` import without questions
linux      ``<stem>.pem``         PEM; Debian copies it in as ``.crt``, Fedora reads it as is
android    ``<stem>.cer``         DER, the most widely accepted by the "CA certificate" installer
ios        ``<stem>.mobileconfig``  a profile with a ``com.apple.security.root`` payload
=========  =====================  ==============================================================

``lancert trust serve`` offers the same steps on a LAN page (:mod:`lancert.trust.page`), worded for a
file downloaded on the device itself (``on_device``), with the file and content type each platform's
browser hands to its certificate installer (:data:`PAGE_FILES`): Windows gets a DER ``.cer``
(``application/pkix-cert``, which Windows opens in its certificate dialog) rather than the Base64
export, Android a DER ``.cer`` as ``application/x-x509-ca-cert`` (the type Android's browser hands to
the CA installer; Android 11 and later save it to Downloads instead, and Settings installs it from
there), iOS the profile as ``application/x-apple-aspen-config`` (what Safari offers to install).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from cryptography import x509

from lancert.pki import CertFormat, common_name, export_certificate, fingerprint_sha256, is_self_issued
from lancert.pki.names import certificate_names
from lancert.storage.files import atomic_write
from lancert.trust.nss import trust_flags
from lancert.trust.store import is_ca

# Apple: "Requirements for trusted certificates in iOS 13 and macOS 10.15" (support.apple.com/HT210176):
# TLS server certificates must have a validity of 825 days or fewer, whatever CA issued them.
APPLE_MAX_VALIDITY = timedelta(days=825)


class Platform(StrEnum):
    WINDOWS = "windows"
    MACOS = "macos"
    LINUX = "linux"
    ANDROID = "android"
    IOS = "ios"


_FORMATS: dict[Platform, tuple[CertFormat, str]] = {
    Platform.WINDOWS: (CertFormat.CRT, ".crt"),
    Platform.MACOS: (CertFormat.DER, ".cer"),
    Platform.LINUX: (CertFormat.PEM, ".pem"),
    Platform.ANDROID: (CertFormat.DER, ".cer"),
    Platform.IOS: (CertFormat.MOBILECONFIG, ".mobileconfig"),
}


# What the LAN page offers each platform: (format, extension, the Content-Type its browser acts on).
PAGE_FILES: dict[Platform, tuple[CertFormat, str, str]] = {
    Platform.IOS: (CertFormat.MOBILECONFIG, ".mobileconfig", "application/x-apple-aspen-config"),
    Platform.ANDROID: (CertFormat.DER, ".cer", "application/x-x509-ca-cert"),
    Platform.WINDOWS: (CertFormat.DER, ".cer", "application/pkix-cert"),
    Platform.MACOS: (CertFormat.DER, ".cer", "application/pkix-cert"),
    Platform.LINUX: (CertFormat.PEM, ".pem", "application/x-pem-file"),
}


@dataclass
class Guide:
    platform: Platform
    file: Path
    format: CertFormat
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"os": self.platform.value, "file": str(self.file), "format": self.format.value,
                "steps": self.steps, "warnings": self.warnings}


def guide_file(source: Path, platform: Platform, out_dir: Path | None) -> Path:
    """``<stem><ext>`` in ``out_dir`` (default: beside ``source``), never ``source`` itself."""
    _, ext = _FORMATS[platform]
    directory = out_dir if out_dir is not None else source.parent
    target = directory / (source.stem + ext)
    if target.resolve() == source.resolve():
        target = directory / f"{source.stem}.{platform.value}{ext}"
    return target


def _download_step(platform: Platform, f: str) -> str:
    """The first step when the file was downloaded on the device itself (``trust serve``'s page)."""
    if platform is Platform.IOS:
        return (f"Tap the download button for {f}; Safari asks \"This website is trying to download a "
                "configuration profile\": Allow. iOS then says \"Profile Downloaded\".")
    if platform is Platform.ANDROID:
        return (f"Tap the download button for {f}: Android saves it in Downloads (Android 11 and later "
                "install a CA certificate from Settings only, as below).")
    return f"Download {f} with the button on this page (your browser saves it in Downloads)."


def _steps(platform: Platform, cert: x509.Certificate, f: str, label: str, on_device: bool) -> list[str]:
    steps = _platform_steps(platform, cert, f, label)
    if on_device and platform is not Platform.LINUX:
        steps[0] = _download_step(platform, f)  # instead of "copy it to the device"
    elif on_device:
        steps.insert(0, _download_step(platform, f))
    return steps


def _platform_steps(platform: Platform, cert: x509.Certificate, f: str, label: str) -> list[str]:
    flags = trust_flags(cert)
    if platform is Platform.WINDOWS:
        return [
            f"Copy {f} to the Windows PC.",
            f"Current user only (no administrator needed): certutil -addstore -user -f Root {f}   "
            "(confirm the security warning with Yes).",
            f"Every user of the machine (Command Prompt as administrator): certutil -addstore -f Root {f}",
            f"Or by hand: double-click {f} → Install Certificate… → Current User (or Local Machine) → "
            "\"Place all certificates in the following store\" → Browse… → "
            "Trusted Root Certification Authorities → Next → Finish.",
            f"Check: certutil -user -store Root \"{label}\"  (or without -user for the machine store).",
            "Restart Chrome and Edge. Firefox uses these roots when about:config "
            "security.enterprise_roots.enabled is true.",
        ]
    if platform is Platform.MACOS:
        return [
            f"Copy {f} to the Mac.",
            "All users: sudo security add-trusted-cert -d -r trustRoot "
            f"-k /Library/Keychains/System.keychain {f}",
            "Current user only: security add-trusted-cert -r trustRoot "
            f"-k ~/Library/Keychains/login.keychain-db {f}",
            f"Or by hand: Keychain Access → System keychain → File → Import Items… → {f}; double-click it → "
            "Trust → \"When using this certificate\": Always Trust; close and enter your password.",
            f"Check: security verify-cert -c {f} -p ssl -s <the device's name or IP>",
            "Restart Safari and Chrome. Firefox uses these roots when "
            "security.enterprise_roots.enabled is true.",
        ]
    if platform is Platform.LINUX:
        return [
            f"Debian/Ubuntu: sudo cp {f} /usr/local/share/ca-certificates/{Path(f).stem}.crt && "
            "sudo update-ca-certificates   (or: sudo lancert trust install " + f + " --store system)",
            f"Fedora/RHEL: sudo cp {f} /etc/pki/ca-trust/source/anchors/ && sudo update-ca-trust",
            "Chrome, Chromium and Firefox ignore the system anchors on Linux; for them: "
            f"lancert trust install {f} --store nss   (or by hand: certutil -d sql:$HOME/.pki/nssdb -A "
            f"-t \"{flags}\" -n \"{label}\" -i {f}, then the same with -d sql:<each Firefox profile "
            f"under ~/.mozilla/firefox>; {flags} is the trust this certificate needs in both browsers)",
            "Restart the browsers (Firefox reads its trust only at start); check with: "
            "lancert check https://<device> --nssdb ~/.pki/nssdb (or --nssdb <the Firefox profile>)",
        ]
    if platform is Platform.ANDROID:
        return [
            f"Copy {f} to the phone or tablet (USB, e-mail, Downloads).",
            "Settings → Security & privacy → More security settings → Encryption & credentials → "
            f"Install a certificate → CA certificate → Install anyway → pick {f} (the menu names vary by "
            "vendor: search Settings for \"CA certificate\"). Android 11+ only accepts it from Settings.",
            "Check: Settings → … → Encryption & credentials → Trusted credentials → User.",
            "Chrome for Android trusts user CAs; other apps only if their network security config allows it.",
        ]
    return [
        f"Send {f} to the iPhone or iPad (AirDrop, Mail) and open it; iOS says \"Profile Downloaded\".",
        "Settings → General → VPN & Device Management → the downloaded profile → Install "
        "(enter the passcode).",
        "Then switch on full trust, without which Safari still warns: Settings → General → About → "
        f"Certificate Trust Settings → \"Enable full trust for root certificates\" → {label}.",
        "Check: open the device's https:// page in Safari; no warning page must appear.",
    ]


# When the self-signed model stops paying off (README "One root for the shop").
MODEL_CHOICE = (
    "Which model: a device's own self-signed certificate suits one device and a few POS, and must be "
    "installed again on every POS whenever it changes. With several devices, Android POS, or certificates "
    "you want to renew freely, make one shop root (lancert ca init --dir CA), give each device a "
    "certificate from it (lancert ca issue --dir CA --csr FILE | --ip IP -o OUT, or device create --ca CA) "
    "and install only CA/root.pem, once per POS."
)


def _warnings(platform: Platform, cert: x509.Certificate) -> list[str]:
    warnings = []
    if not is_self_issued(cert) and not is_ca(cert):
        warnings.append("this certificate was issued by a CA: trust that CA's root certificate instead "
                        "of the device's own certificate")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if platform in (Platform.MACOS, Platform.IOS) and not is_ca(cert) and lifetime > APPLE_MAX_VALIDITY:
        warnings.append(f"valid for {lifetime.days} days: macOS 10.15+ and iOS 13+ reject TLS server "
                        f"certificates valid longer than {APPLE_MAX_VALIDITY.days} days even when trusted; "
                        "make the device certificate with --years 2 or less")
    if platform is Platform.ANDROID and not is_ca(cert):
        warnings.append("this is not a CA certificate (CA:FALSE); Android's \"CA certificate\" installer "
                        "only accepts CA certificates and asks for a private key otherwise: give the device "
                        "a certificate issued by a lancert CA (lancert ca init, then lancert ca issue or "
                        "device create --ca) and install that CA's root")
    return warnings


def certificate_label(cert: x509.Certificate) -> str:
    """How certificate managers list ``cert``: its CN, else its first name, else its fingerprint."""
    names = certificate_names(cert).as_strings()
    return common_name(cert.subject) or (names[0] if names else fingerprint_sha256(cert)[:23])


def guide_for(cert: x509.Certificate, platform: Platform | str, file: Path, fmt: CertFormat, *,
              on_device: bool = False) -> Guide:
    """The steps (and warnings) to trust ``cert`` on ``platform`` from ``file``; nothing is written.

    ``on_device``: the file is downloaded on the device itself (``trust serve``), not copied to it.
    """
    platform = Platform(platform)
    steps = _steps(platform, cert, file.name, certificate_label(cert), on_device)
    if is_self_issued(cert) and not is_ca(cert) and not on_device:
        steps.append(MODEL_CHOICE)  # the page says it once per certificate (page.BETTER_WITH_A_ROOT)
    return Guide(platform, file, fmt, steps, _warnings(platform, cert))


def write_guide(
    cert: x509.Certificate, source: Path, platform: Platform | str, out_dir: Path | None = None
) -> Guide:
    """Write the platform's file and return the steps that use it."""
    platform = Platform(platform)
    fmt, _ = _FORMATS[platform]
    target = guide_file(source, platform, out_dir)
    atomic_write(target, export_certificate(cert, fmt))
    return guide_for(cert, platform, target, fmt)
