"""Kubernetes audit-log analysis: readers for every provider's export format, one
normalized event model, and a detection engine mapped to MITRE ATT&CK."""
