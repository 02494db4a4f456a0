"""Whether the agent can record an update durably now: its state and TUF dirs writable."""

import os

from uptend.agent.layout import Layout


def unwritable(layout: Layout) -> str:
    """Why updates cannot be recorded durably now (read-only or full state), or ''.

    statvfs, not a probe file: an idle cycle writes nothing to disk.
    """
    for where in (layout.state_dir, layout.tuf_dir):
        try:
            st = os.statvfs(where)
        except OSError as e:
            return f"updates held back: cannot write to {where}: {e.strerror or e}"
        if st.f_flag & os.ST_RDONLY:
            return f"updates held back: cannot write to {where}: Read-only file system"
        if st.f_bfree == 0:
            return f"updates held back: cannot write to {where}: No space left on device"
    return ""
