"""podmortem: forensic investigation of compromised containers and Kubernetes workloads.

The public API is deliberately small; capabilities live in their subpackages
(``case``, ``acquire``, ``audit``, ``image``, ``cloud``, ``report``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("podmortem")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from podmortem.errors import PodmortemError
from podmortem.findings import Caveat, Finding, Provenance, Severity

__all__ = ["Caveat", "Finding", "PodmortemError", "Provenance", "Severity", "__version__"]
