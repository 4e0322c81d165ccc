"""The fault vocabulary: what each fault kind means, where it can strike and how it is fixed."""

from __future__ import annotations

from incidentbook.scenarios.topology import System

#: Every fault kind a scenario can inject, with its meaning in one line.
FAULT_KINDS: dict[str, str] = {
    "bad_deploy": "a rollout ships a bug: the new pods return 5xx and callers' error rates follow",
    "cache_failure": "the KV cache loses its working set (evictions); hit ratio collapses and the "
                     "database gets the misses: DB volume and latency rise as a symptom",
    "memory_leak": "a release leaks memory: working set climbs to the limit, containers are "
                   "OOMKilled and restart, callers see 503s and latency",
    "db_pool_exhaustion": "a service leaks database connections; its pool saturates, requests "
                          "wait then fail, and callers see errors and timeouts",
    "cpu_throttling": "a noisy neighbour on the node makes each request cost more CPU; the "
                      "container hits its CFS quota, is throttled, and latency rises",
    "slow_dependency": "a service hangs (stuck threads); callers time out (504) and retry, so the "
                       "slow service also sees more traffic",
    "abuse": "a handful of clients hammer one route (credential stuffing); rate limiting (429) "
             "and overload errors concentrate on those clients; not a code bug",
    "config_change": "a configuration change (a too-short upstream timeout) makes a healthy "
                     "call path fail with 504s at the service whose config changed",
    "feature_flag": "a feature flag turns on an expensive code path (N+1 queries); DB load and "
                    "latency rise for the flagged service",
    "cert_expiry": "a service's TLS certificate expires; its callers fail the handshake and its "
                   "own traffic drops",
    "planned_load": "not a fault: a planned marketing launch raises traffic and CPU while "
                    "errors stay within budget; context explains it",
    "disk_full": "a config change breaks the database's WAL archiving; WAL piles up on its volume "
                 "until the disk is full and writes fail, so its callers return 5xx",
}

#: The fault kinds `generate_system` picks from when none is given (and evals rotate through for
#: unnamed systems): fixed, so that a seed keeps generating the same system and fault as kinds
#: are added to FAULT_KINDS.
RANDOM_FAULT_KINDS: tuple[str, ...] = (
    "abuse", "bad_deploy", "cache_failure", "cert_expiry", "config_change", "cpu_throttling",
    "db_pool_exhaustion", "feature_flag", "memory_leak", "planned_load", "slow_dependency",
)

#: The remediation that fixes each fault kind (the `remediation.action` of the ground truth).
REMEDIATION: dict[str, str] = {
    "bad_deploy": "rollout_undo",
    "cache_failure": "config_revert",
    "memory_leak": "rollout_undo",
    "db_pool_exhaustion": "restart",
    "cpu_throttling": "scale",
    "slow_dependency": "restart",
    "abuse": "block_clients",
    "config_change": "config_revert",
    "feature_flag": "flag_off",
    "cert_expiry": "renew_cert",
    "planned_load": "none",
    "disk_full": "config_revert",
}

REMEDIATION_ACTIONS = ("rollout_undo", "scale", "restart", "flag_off", "config_revert",
                       "block_clients", "renew_cert", "none")


def eligible_targets(system: System, kind: str) -> list[str]:
    """The services a fault of `kind` can hit in `system` (first one is the default)."""
    svcs = system.services
    apps = [n for n, s in svcs.items() if s.kind == "app"]
    db_users = [n for n, s in svcs.items() if s.db_pool_max and s.kind == "app"]
    if kind == "cache_failure":
        return system.of_kind("cache")
    if kind == "abuse":
        return system.of_kind("gateway")
    if kind == "planned_load":
        return system.of_kind("edge")
    if kind == "disk_full":
        return system.of_kind("db")
    if kind in ("db_pool_exhaustion", "feature_flag"):
        pref = [system.role("inventory"), system.role("catalog")]
        if kind == "feature_flag":
            pref = [system.role("catalog"), system.role("cart")]
        return [p for p in pref if p in db_users] + [n for n in db_users if n not in pref]
    if kind == "config_change":
        # a service with a downstream call slow enough that a cut timeout breaks it
        pref = [system.role("checkout"), system.role("gateway")]
        return [p for p in pref if p in svcs]
    if kind == "cert_expiry":
        pref = [system.role("payments"), system.role("inventory"), system.role("auth")]
        return [p for p in pref if p in svcs]
    if kind == "slow_dependency":
        pref = [system.role("inventory"), system.role("payments"), system.role("cart")]
        return [p for p in pref if p in svcs]
    if kind == "memory_leak":
        pref = [system.role("cart"), system.role("catalog"), system.role("checkout"), system.role("worker")]
        return [p for p in pref if p in svcs]
    if kind == "cpu_throttling":
        pref = [system.role("catalog"), system.role("auth"), system.role("cart")]
        return [p for p in pref if p in svcs]
    if kind == "bad_deploy":
        pref = [system.role("catalog"), system.role("checkout"), system.role("cart"),
                system.role("inventory"), system.role("auth")]
        return [p for p in pref if p in apps]
    raise KeyError(kind)
