"""The server's signed release repository: TUF metadata and targets as plain files.

Promise 1 of docs/architecture.md (nothing unsigned ever runs) rests here: agents install only
what the targets metadata written by this package vouches for. Everything is a static file any
HTTP server or CDN can serve: `metadata/` (consistent snapshots: N.root.json, N.targets.json,
N.app.<app>.json, N.snapshot.json, and timestamp.json) and `targets/<dir>/<sha256>.<file>` (the
hash-prefixed names ngclient downloads). Private keys sit in `keys/*.pem` (0600, dir 0700):
root, targets, snapshot and timestamp (listed by root) and releases (listed by the top-level
targets role).

Layout, so that an agent fetches metadata only for the apps it runs and a publish costs the
same at the 1,000th release as at the 10th:
- Each app has its own delegated targets role, `app.<app>`, created at the app's first publish
  (the only time the top-level targets role is re-signed), signed by the online releases key,
  trusted for paths `<app>/*/*` only, terminating. App names are `[a-z0-9][a-z0-9_-]*`, so a
  role name holds exactly one dot: it never equals a top-level role name (an app may be called
  `root` or `timestamp`), never needs URL quoting, and never names the same file as another
  role (`N.app.root.json`, `app.root.json` in a client's cache).
- A publish re-signs that app's role, snapshot and timestamp; nothing else. Every agent still
  downloads the new snapshot.json, which names every role (~36 B per app); an app's role
  grows with its own releases (~270 B each). bench/repo.py measures both.
- Repositories made before delegations (targets directly in the top-level role, no releases
  key) keep their targets where they are; the releases key is generated on first need.

Invariants:
- `timestamp.json` is the commit point. The published state is what it names (timestamp ->
  snapshot -> targets roles), not the highest N on disk: a publish killed half way leaves the
  previous state published, and the next publish overwrites its unreferenced N.*.json. Files
  go out in the order targets roles, artifact, snapshot, timestamp.
- Every file is written atomically and durably (temp file, fsync, rename, fsync of the dir: the
  step python-tuf's `_persist_metadata` skips); `create` builds the repository in a sibling temp
  dir and renames it into place.
- Mutations hold an exclusive `flock` on `.lock` and re-read the published state under it, so
  several server processes can share the directory.
- Pruning (after each commit, and at each `refresh_expiring`): every N.root.json stays; of the
  other roles, the versions the published snapshot and timestamp name stay, and so does every
  version superseded less than `Expiry.superseded_s` ago (default 15 minutes), so a client
  mid-refresh with the previous timestamp.json still finds the snapshot and roles it names
  (one that takes longer gets a 404, a transient error, and starts over at its next check).
  Once the grace period has passed, metadata on disk is linear in releases. Target files are
  never deleted.

Keys (keyring.py, rotation.py, signed.py; docs/threat-model.md): each of the five keys can be
rotated with enrolled agents following (`uptend keys rotate`), root is renewed before it
expires like every other role whose key is here, and `uptend keys export-targets` moves the
root, targets and releases keys off the server: then releases are signed on the publisher's
workstation and the server only checks, orders and commits them.

Not done here: hash-bin delegation for an app with very many releases.
`tuf.repository.Repository` is not used: its abstract `open(role)` clashes with
`TufRepo.open`, and its `edit()` re-signs one role at a time where a publish must order several.
"""

from uptend.server.tuf_repo.files import app_role
from uptend.server.tuf_repo.lifetimes import Expiry
from uptend.server.tuf_repo.repo import KeyStatus, TufRepo
from uptend.server.tuf_repo.rotation import Rotated

__all__ = ["Expiry", "KeyStatus", "Rotated", "TufRepo", "app_role"]
