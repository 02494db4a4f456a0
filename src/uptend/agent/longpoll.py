"""The long-poll: a `/wait` held open on its own connection, in its own thread.

The loop never blocks on it: the thread only rings (sets a flag and wakes the loop), and the
loop then checks in as usual. It waits for that check-in before it asks again, so one ring
is one check-in. A long-poll that fails (server down, an older server without `/wait`) backs
off and tries again; meanwhile the regular poll goes on, so a broken long-poll costs only
latency.
"""

import logging
import random
import threading
from collections.abc import Callable

from uptend.agent.control import ControlClient
from uptend.agent.wire import MAX_WAIT_S, WaitAnswer, WaitRequest
from uptend.errors import UptendError
from uptend.policy.backoff import retry_delay_s

log = logging.getLogger("uptend.agent")
WAIT_S = MAX_WAIT_S  # the server answers by then at the latest
BACKOFF_CAP_S = 300.0
CHECKIN_WAIT_S = 60.0  # a ring the loop has not acted on by then is asked again


class LongPoll:
    def __init__(
        self,
        client: ControlClient,
        credential: Callable[[], str | None],
        generation: Callable[[], int | None],
        ring: Callable[[], None],
    ) -> None:
        self.client = client
        self.credential = credential  # the loop's: a rotated one is used here too
        self.generation = generation
        self.ring = ring
        self.checked = threading.Event()  # the loop checked in since the last ring
        self.closing = threading.Event()
        self.failures = 0
        self._rand = random.Random()  # noqa: S311 - jitter, not secrets
        self._thread = threading.Thread(target=self._run, name="uptend-longpoll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.closing.set()
        self.checked.set()
        self.client.close()  # a held read ends with an error, which `closing` silences

    def _run(self) -> None:
        while not self.closing.is_set():
            self.checked.wait(CHECKIN_WAIT_S)
            if self.closing.is_set():
                return
            self.client.credential = self.credential()
            request = WaitRequest(generation=self.generation(), wait_s=WAIT_S)
            try:
                answer = self.client.post("api/v1/wait", request, WaitAnswer)
            except (UptendError, OSError, ValueError) as e:
                if self.closing.is_set():
                    return
                self.failures += 1
                delay = retry_delay_s(
                    self.failures, base_s=1.0, cap_s=BACKOFF_CAP_S, rand=self._rand.random()
                )
                log.info("long-poll failed (%s); again in %.1fs", getattr(e, "message", e), delay)
                self.closing.wait(delay)
                continue
            self.failures = 0
            if answer.ring:
                self.checked.clear()
                self.ring()
