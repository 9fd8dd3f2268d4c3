"""Domain errors.

Every error the product raises on purpose derives from ``KbError`` and carries
a message that says what happened and what to do. The edges translate them:
the API's exception handler into HTTP status codes, the CLI into exit codes.

- ``InvalidDocument``: the input file cannot be indexed (bad type, damaged,
  encrypted, over a limit). Fails that file alone.
  - ``UnsupportedFileType``, ``ExtractionFailed``, ``LimitExceeded``.
- ``DocumentNotFound``: no document with that id or name.
- ``UpstreamUnavailable``: an embedding/LLM server or Chroma cannot be reached.
- ``ConfigurationError``: settings or stored state disagree (e.g. an embedding
  model change that needs ``kb reindex``).
- ``DataDirBusy``: another kb process holds the data directory.
- ``Cancelled``: the caller hung up or the service is stopping; the work in
  flight was rolled back.
"""


class KbError(Exception):
    """Base of all kb domain errors."""


class InvalidDocument(KbError):
    """The file cannot be indexed; other files are unaffected."""


class UnsupportedFileType(InvalidDocument):
    """The file's type (by extension or by content) is not PDF, DOCX or text."""


class ExtractionFailed(InvalidDocument):
    """The file claims a supported type but its text cannot be extracted."""


class LimitExceeded(InvalidDocument):
    """The file is over a configured size, page or character limit."""


class DocumentNotFound(KbError):
    """No document matches the given id or source name."""


class UpstreamUnavailable(KbError):
    """An external service (embedding server, LLM, Chroma) is unreachable."""


class ConfigurationError(KbError):
    """Settings or stored state are inconsistent; the message says how to fix it."""


class DataDirBusy(KbError):
    """Another kb process is using the data directory."""


class Cancelled(KbError):
    """Work stopped on request (client gone, service stopping); in-flight files rolled back."""
