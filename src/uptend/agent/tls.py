"""TLS trust for both of the agent's HTTP stacks: the system's CAs, and the server's own CA.

http.client (the control plane) and urllib3 (metadata and artifacts) get the same context:
the system's CAs plus, when enrollment kept one (`Layout.server_ca`), the CA of a server
with a self-signed or private-CA certificate, trusted by the agent alone and not by the
rest of the host. Hostnames are always checked.
"""

import ssl
from pathlib import Path

from uptend.errors import ConfigError

UNTRUSTED_HINT = (
    "if the server's certificate is self-signed or from a private CA, enroll with "
    "--ca-file CA.pem (kept as state/server-ca.pem in the data dir)"
)


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context: system CAs, and `ca_file` (PEM) if given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"cannot load the CA file {ca_file}: {e.strerror or e}",
                hint="give a PEM file with the CA certificate(s) that signed the server's",
            ) from None
    return context
