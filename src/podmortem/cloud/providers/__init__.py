"""Provider modules: each implements its playbook's steps by id, log collection and the
facts readiness checks read. Clients are injected (factories), never built at import."""
