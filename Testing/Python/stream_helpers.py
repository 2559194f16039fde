"""Standard-stream stand-ins for tests of commands whose output's reader has gone."""


class ReaderGone:
    """A text stream whose reader has gone (a pipe into `head` that has ended: `2>&1 | head`): every write is a
    BrokenPipeError."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass
