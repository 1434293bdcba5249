"""One exception tree for podmortem; each user-facing error carries its exit code.

::

    PodmortemError                 exit 3, any failure we can explain in one line
    ├── InputError                 exit 3, hostile or malformed evidence, unreadable path
    ├── CaseError                  exit 3, the case store cannot be used
    │   ├── NotACaseError          the folder is not a podmortem case (or its manifest is broken)
    │   ├── CaseExistsError        ``case init`` over an existing case: refused, nothing touched
    │   └── ArtifactExistsError    artifacts are write-once
    ├── IntegrityError             exit 1, verification found tampering or loss
    ├── CapabilityUnavailable      exit 4, a dependency (engine, SDK, proto) is missing here
    └── AcquisitionError           exit 5, a live target could not be acquired at all

Only ``podmortem.cli`` catches these and turns them into messages and exit codes; library
code raises and never calls ``sys.exit``.
"""

from __future__ import annotations


class PodmortemError(Exception):
    """Base class: an error with a one-line message for the user and an exit code."""

    exit_code: int = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(PodmortemError):
    """Evidence or arguments that cannot be read (malformed, hostile, missing)."""


class CaseError(PodmortemError):
    """The case store cannot be opened or written."""


class NotACaseError(CaseError):
    """The folder holds no readable podmortem case manifest."""


class CaseExistsError(CaseError):
    """``case init`` on a folder that already holds a case."""


class ArtifactExistsError(CaseError):
    """An artifact name or path is already taken: artifacts are written once."""


class IntegrityError(PodmortemError):
    """Verification found a changed, missing, unrecorded or reordered piece of evidence."""

    exit_code = 1


class CapabilityUnavailable(PodmortemError):  # noqa: N818 - reads as a state, like Abort
    """Something this command needs (a runtime socket, an SDK, a compiled proto) is absent."""

    exit_code = 4


class AcquisitionError(PodmortemError):
    """A live target could not be acquired at all (partial captures are caveats instead)."""

    exit_code = 5
