"""Opening a refreshed TUF session in the worker child, for look-ups and config fetches.

Its own module so that a config fetch loads TUF and HTTPS but not the release code
(archives, installers, pydantic): a config takes effect sooner.
"""

import threading

from uptend.agent import files
from uptend.agent.layout import Layout
from uptend.agent.tuf_session import TufSession

TUF_LOCK = threading.Lock()  # ngclient is single-instance per metadata directory


def session(layout: Layout, metadata_url: str) -> TufSession:
    """A refreshed session; the newest root it verified becomes the next trust anchor."""
    trusted = layout.trusted_root.read_bytes()
    tuf = TufSession(layout.tuf_dir, metadata_url, trusted, ca_file=layout.ca_file())
    try:
        tuf.refresh()
    except BaseException:
        tuf.close()
        raise
    finally:
        # a root rotation verified before any later failure is the next anchor
        newest = tuf.trusted_root()
        if newest != trusted:
            files.write_atomically(layout.trusted_root, newest, mode=0o600)
    return tuf
