"""The shape of uptend's tokens, known to both sides.

An enrollment token is `ute_<secret>.<sha256 of the TUF root>`: the agent checks the root
it receives at enrollment against it (no trust on first use).
"""

from uptend.errors import ConfigError

ADMIN_PREFIX = "uta_"
ENROLL_PREFIX = "ute_"
AGENT_PREFIX = "utc_"


def root_fingerprint_of(enroll_token: str) -> str:
    """The TUF root fingerprint an enrollment token carries."""
    secret, _, fingerprint = enroll_token.partition(".")
    if not secret.startswith(ENROLL_PREFIX) or len(fingerprint) != 64:
        raise ConfigError(
            "this is not an uptend enrollment token",
            hint="use the enroll_token printed by `uptend server init`",
        )
    return fingerprint
