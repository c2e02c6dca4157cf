# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Helpers for integration tests that read dkm's records back from a real
# auditd.  Source this file; it defines:
#
#   audit_start     make sure auditd runs and the kernel's audit is enabled,
#                   and wait until a record makes it into the log.  Returns
#                   0, 77 (cannot run here: not root, no auditd, no audit in
#                   the kernel) or 1 (it should work and does not).
#   audit_stop      undo what audit_start did, and only that: stops auditd if
#                   we started it, disables audit again if we enabled it.
#   audit_mark      remembers "now" in AUDIT_MARK and prints it, as the two
#                   words "MM/DD/YY HH:MM:SS" that ausearch --start takes (C
#                   locale).  Call it plainly, not in $(...), or set
#                   AUDIT_MARK=$(audit_mark) yourself.
#   audit_search ARGS...
#                   ausearch -i ARGS, limited to records since the mark.
#                   auditd writes asynchronously, so it retries until
#                   ausearch finds something or AUDIT_WAIT seconds (default 10)
#                   have passed; returns ausearch's status (0 found, 1 not).
#                   Use AUDIT_WAIT=0 when expecting no match.  Otherwise,
#                   before searching, it waits until every record sent so far is in
#                   the log (audit_flush).
#   audit_flush     sends a record of its own and waits until it is in the
#                   log: the kernel and auditd keep the order, so every record
#                   sent before it (by dkmd before it answered) is there too.
#   audit_count REGEX ARGS...
#                   how many of audit_search ARGS's lines match REGEX (grep);
#                   waits up to AUDIT_WAIT seconds (default 10) for the first,
#                   for records dkmd sends after it answered (a maintenance
#                   pass, another node).
#
# Records are read from the log file auditd.conf names (Debian:
# /var/log/audit/audit.log, log_format ENRICHED).

AUDIT_WE_STARTED=0
AUDIT_WE_ENABLED=0
AUDIT_DAEMON_PID=
AUDIT_MARK=

# The pid the kernel sends records to (0 when no auditd is registered).
_audit_kernel_pid() {
        auditctl -s 2>/dev/null | awk '$1 == "pid" { print $2 }'
}

_audit_enabled() {
        auditctl -s 2>/dev/null | awk '$1 == "enabled" { print $2 }'
}

_audit_running() {
        local pid
        pid=$(_audit_kernel_pid)
        [ -n "$pid" ] && [ "$pid" != 0 ] && kill -0 "$pid" 2>/dev/null
}

audit_start() {
        local i token cmd

        if [ "$(id -u)" != 0 ]; then
                echo "audit: needs root (auditd, auditctl)" >&2
                return 77
        fi
        for cmd in auditd auditctl ausearch; do
                if ! command -v "$cmd" >/dev/null; then
                        echo "audit: $cmd not installed (Debian package auditd)" >&2
                        return 77
                fi
        done
        if ! auditctl -s >/dev/null 2>&1; then
                # No audit in this kernel, or not in the initial pid/user
                # namespace (containers): the kernel refuses AUDIT_GET.
                echo "audit: the kernel's audit is not reachable (auditctl -s fails)" >&2
                return 77
        fi

        # auditd -s enable turns the kernel's audit on as well: remember the
        # state from before either of us touched it.
        [ "$(_audit_enabled)" = 0 ] && AUDIT_WE_ENABLED=1
        if ! _audit_running; then
                # -n: no fork, so that this shell is its parent and reaps it
                # (an init that does not reap orphans would keep a zombie).
                auditd -n -s enable </dev/null >/dev/null 2>&1 &
                AUDIT_DAEMON_PID=$!
                AUDIT_WE_STARTED=1
                for ((i = 0; i < 100; i++)); do
                        [ "$(_audit_kernel_pid)" = "$AUDIT_DAEMON_PID" ] && break
                        kill -0 "$AUDIT_DAEMON_PID" 2>/dev/null || break
                        sleep 0.1
                done
                if [ "$(_audit_kernel_pid)" != "$AUDIT_DAEMON_PID" ]; then
                        echo "audit: auditd did not register with the kernel" >&2
                        audit_stop
                        return 1
                fi
        fi
        if [ "$(_audit_enabled)" = 0 ]; then
                auditctl -e 1 >/dev/null || return 1
        fi

        # Ready means: a record we send comes back from the log.
        token="dkm-audit-ready-$$-$RANDOM"
        audit_mark >/dev/null
        auditctl -m "$token" || return 1
        for ((i = 0; i < 50; i++)); do
                # (not grep -q: under pipefail an early exit would fail the pipeline)
                AUDIT_WAIT=0 audit_search -m USER 2>/dev/null | grep "$token" >/dev/null && return 0
                sleep 0.2
        done
        echo "audit: a test record did not reach the log" >&2
        return 1
}

audit_stop() {
        if [ "$AUDIT_WE_STARTED" = 1 ]; then
                kill -TERM "$AUDIT_DAEMON_PID" 2>/dev/null
                wait "$AUDIT_DAEMON_PID" 2>/dev/null
                AUDIT_WE_STARTED=0
                AUDIT_DAEMON_PID=
        fi
        if [ "$AUDIT_WE_ENABLED" = 1 ] && [ "$(_audit_enabled)" = 1 ]; then
                auditctl -e 0 >/dev/null 2>&1
        fi
        AUDIT_WE_ENABLED=0
        return 0
}

audit_mark() {
        # Whole seconds, and --start is inclusive: wait for a second in which
        # nothing earlier happened, so records of a test that just ended are
        # not counted as this one's.
        sleep 1
        AUDIT_MARK=$(LC_ALL=C date '+%x %T')
        echo "$AUDIT_MARK"
}

audit_flush() {
        local token="dkm-audit-flush-$$-$RANDOM" i
        local -a start

        read -r -a start <<<"$AUDIT_MARK"
        auditctl -m "$token" >/dev/null 2>&1 || return 1
        for ((i = 0; i < 50; i++)); do
                # (not grep -q: under pipefail an early exit would fail the pipeline)
                LC_ALL=C ausearch -m USER --start "${start[@]}" 2>/dev/null | grep -- "$token" >/dev/null &&
                        return 0
                sleep 0.2
        done
        echo "audit_flush: record $token did not reach the log" >&2
        return 1
}

audit_search() {
        local wait=${AUDIT_WAIT:-10} deadline rc
        local -a start

        if [ -z "$AUDIT_MARK" ]; then
                echo "audit_search: call audit_mark first" >&2
                return 2
        fi
        # auditd writes asynchronously: without this, the last records sent
        # before the search could still be on their way while ausearch finds
        # earlier ones and returns.
        [ "$wait" = 0 ] || audit_flush
        read -r -a start <<<"$AUDIT_MARK"
        deadline=$((SECONDS + wait))
        while :; do
                LC_ALL=C ausearch -i --start "${start[@]}" "$@" 2>/dev/null
                rc=$?
                [ "$rc" = 0 ] && return 0
                [ "$SECONDS" -ge "$deadline" ] && return "$rc"
                sleep 0.2
        done
}

audit_count() {
        local re=$1 deadline n
        shift
        deadline=$((SECONDS + ${AUDIT_WAIT:-10}))
        while :; do
                n=$(audit_search "$@" | grep -c -- "$re")
                if [ "${n:-0}" -gt 0 ] || [ "$SECONDS" -ge "$deadline" ]; then
                        echo "${n:-0}"
                        return 0
                fi
                sleep 0.2
        done
}
