"""The bounds of everything an agent or a publisher sends, in one place (plain ints, no pydantic).

The server's models (`agent_api`, `admin_api`) enforce them before anything is stored, so a
value fits its column on SQLite (which enforces no length) as on PostgreSQL; the agent's
mirror (`agent.wire`) and the agent itself keep what they send inside them. A full check-in
at these bounds, every character JSON-escaped, stays under `MAX_BODY_BYTES`.
"""

MAX_NAME = 63  # characters: app, group and channel names (`names.check_name`)
MAX_VERSION = 64  # characters: a PEP 440 version, as the String(64) columns hold it
MAX_AGENT_NAME = 128  # characters
MAX_AGENT_VERSION = 64  # characters
MAX_TOKEN = 256  # characters of a credential or token
MAX_PHASE = 32  # characters of an update phase ("fetching", "probation", ...)
MAX_REASON = 1024  # characters of a state's or a report's reason
MAX_LOG_TAIL = 8192  # characters of a report's log tail (the agent keeps the last ones)
MAX_APPS = 256  # app states per check-in
MAX_REPORTS = 32  # reports per check-in (the agent sends the rest at the next one)
MAX_POLL_S = 7 * 86400.0  # seconds: the longest poll interval an agent accepts
MAX_SECONDS = 10 * 365 * 86400.0  # the longest duration an agent reports (probation left)
MAX_INT = (1 << 63) - 1  # what a BIGINT column and every JSON reader hold
MIN_YEAR, MAX_YEAR = 1970, 2999  # a report's time, in UTC: no overflow when normalised

MAX_BODY_BYTES = 4 << 20  # default cap of a request body (a check-in at the bounds fits)
MAX_UPLOAD_BYTES = 2 << 30  # default cap of a release archive's upload

MAX_SENT_MANIFEST = 4096
"""Characters (ASCII) of a package's uptend.toml sent in its publish's query string: three
times that once percent-encoded, well inside the HTTP parser's limit on a request line."""

MAX_CONFIG_BYTES = 64 << 10  # a signed config document (`uptend config set`), UTF-8 encoded
