"""A throwaway ``pass`` password store with a GPG key of its own, made without prompts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["PasswordStore"]


class PasswordStore:
    """A password store and its GnuPG home under ``directory``.

    The key has no passphrase, so ``pass show`` decrypts without a pinentry.
    The gpg-agent that gpg starts on first use is stopped by ``close()``.
    """

    def __init__(self, directory: Path) -> None:
        self.gnupg_home = directory / "gnupg"
        self.store_dir = directory / "password-store"
        self.gnupg_home.mkdir(mode=0o700)
        self.env = {"GNUPGHOME": str(self.gnupg_home), "PASSWORD_STORE_DIR": str(self.store_dir)}
        self._run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                   "--quick-gen-key", "secretd test <test@example.invalid>", "default", "default", "never"])
        self._run(["pass", "init", self._fingerprint()])

    def insert(self, entry: str, value: str) -> None:
        """Store ``value`` as the entry ``entry``, exactly as given, newlines included."""
        self._run(["pass", "insert", "--multiline", entry], stdin=value)

    def close(self) -> None:
        """Stop the gpg-agent of this GnuPG home, if one is running."""
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self._child_env(), check=False,
                       capture_output=True, timeout=30)

    def _fingerprint(self) -> str:
        listing = self._run(["gpg", "--batch", "--with-colons", "--list-secret-keys"])
        for line in listing.splitlines():
            fields = line.split(":")
            if fields[0] == "fpr":
                return fields[9]
        raise RuntimeError(f"gpg listed no fingerprint for the new key:\n{listing}")

    def _child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _run(self, argv: list[str], stdin: str | None = None) -> str:
        result = subprocess.run(argv, input=stdin, env=self._child_env(), capture_output=True, text=True,
                                timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)!r} failed with status {result.returncode}: {result.stderr.strip()}")
        return result.stdout
