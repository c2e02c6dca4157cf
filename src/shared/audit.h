/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one place that speaks libaudit.  Records go to the Linux audit
 * subsystem as AUDIT_CRYPTO_KEY_USER (key life cycle and key use) or
 * AUDIT_USER_ACCT (access decisions, res=failed for refusals) or
 * AUDIT_USYS_CONFIG (configuration changes), in key=value fields
 * that ausearch -i interprets.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Who asked: taken from the peer's credentials and /proc/<pid> when the peer
 * connected.  Recorded as opid= id= oauid= oses= ogid= ocomm= oexe= (audit.c
 * says why), and subj_verified=no when verified is false. */
struct audit_subject {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        uid_t auid;   /* (uid_t)-1 when unset or unverified */
        char exe[256]; /* "" when unreadable (another user's process) */
        char comm[16]; /* "" when unknown */
        uint32_t ses; /* audit session, (uint32_t)-1 when unset */
        /* The /proc fields are known to be the connecting process's.  When
         * false they are left unset: pid, uid and gid (the kernel's
         * SO_PEERCRED) are still right, the rest could not be told. */
        bool verified;
};

/* Fills subject from pid/uid/gid (reads /proc/pid/loginuid, sessionid,
 * comm and exe).  A pid alone cannot tell a process from a later one that
 * reuses its pid, so the result is verified only for dkmd's own pid; for a
 * peer, use audit_subject_from_pidfd(). */
void audit_subject_from_peer(struct audit_subject *s, pid_t pid, uid_t uid, gid_t gid);

/* The same for a peer held by pidfd (a pidfd of pid, taken when it
 * connected: SO_PEERPIDFD or pidfd_open()).  The /proc fields are kept, and
 * s->verified set, only when the pidfd still names a live (or not yet
 * reaped) process after the reads: then pid could not have been reused
 * meanwhile.  check_uid: the pidfd was opened from the pid after the
 * connection (no SO_PEERPIDFD), so the pid may already have been reused
 * before that; the process must then also still have uid among its real,
 * effective and saved uids.  pidfd < 0: nothing can be verified. */
void audit_subject_from_pidfd(struct audit_subject *s, int pidfd, bool check_uid, pid_t pid, uid_t uid,
                              gid_t gid);

/* Opens the audit netlink socket (no privilege needed to open; sending needs
 * CAP_AUDIT_WRITE).  Idempotent.  Test hook: when the environment has
 * DKM_AUDIT_FAIL=1 at this call, no socket is opened and every
 * audit_record() returns -EIO, so tests can prove that callers fail closed.
 * Note: with the kernel's audit disabled (auditctl -e 0) the kernel still
 * acknowledges records, and drops them; that is the administrator's call. */
int audit_open_log(void);
void audit_close_log(void);

enum audit_kind {
        AUDIT_KIND_KEY,    /* key life cycle and use: CRYPTO_KEY_USER */
        AUDIT_KIND_ACCESS, /* access granted/refused: USER_ACCT (res=failed) */
        AUDIT_KIND_CONFIG, /* configuration changes: USYS_CONFIG */
};

/* Writes one record: op=<op> plus the subject's fields plus extra, a
 * space-separated list of key=value fields (values encoded by the caller with
 * audit_value()).  success selects res=success or res=failed.  Returns 0 when
 * the kernel accepted the record, -errno otherwise: -ENOTCONN when the log is
 * not open, -EPERM without CAP_AUDIT_WRITE, -ECONNREFUSED without audit in
 * the kernel, -EIO under DKM_AUDIT_FAIL=1, -E2BIG when too long, -EINVAL for
 * a bad op or extra: op is one token without spaces, quotes or '=', and each
 * extra field must be name=value with name [a-z0-9_-], not one of the names
 * the record already carries or that ausearch would misread (ending in uid,
 * exe, res, comm, acct, addr, ...), and value plain (no spaces, quotes or
 * '=') or as audit_value() made it.  subj NULL: dkmd acting on its own. */
int audit_record(enum audit_kind kind, const char *op, const struct audit_subject *subj,
                 bool success, const char *extra_fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* audit_record() for an operation whose outcome is known: result >= 0 is
 * res=success; a negative errno is res=failed with error=<its name> added
 * after the fields (e.g. error=ENOSPC), so that the record says what the
 * caller was told.  Write it once the store has answered, never before.
 * extra_fmt: a non-empty string literal.  A macro, so that tests that
 * replace audit_record() see these records too. */
#define audit_outcome(kind, op, subj, result, extra_fmt, ...)                                    \
        audit_record((kind), (op), (subj), (result) >= 0, extra_fmt "%s%s", ##__VA_ARGS__,      \
                     (result) < 0 ? " error=" : "", (result) < 0 ? audit_errno_name(result) : "")

/* errno's name for an error= field ("ENOSPC" for ENOSPC or -ENOSPC), so
 * that a failed operation's record says why in words ausearch leaves as
 * they are; "EUNKNOWN" for a number without a name. */
const char *audit_errno_name(int err);

/* Whether a record written now would reach the kernel: 0, or the error
 * audit_record() would give (-ENOTCONN, -EIO under DKM_AUDIT_FAIL=1).
 * For an operation whose record must tell its outcome, and so is written
 * after the store's answer: fail_closed refuses it beforehand on this. */
int audit_can_write(void);

/* Encodes a value for a key=value field: "quoted" when safe, else hex as
 * libaudit's audit_encode_nv_string() does (also for ' and =, which libaudit
 * would let through); NULL gives ?.  Returns a malloc'd string, NULL when
 * out of memory. */
char *audit_value(const char *s);

/* The key (-k) of the kernel audit rules that audit_keyctl_watch() adds:
 * ausearch -k dkm-keyctl -i shows who changed a key with keyctl. */
#define AUDIT_KEYCTL_RULE "dkm-keyctl"

/* Asks the kernel to record every keyctl call that changes or ends a key
 * (revoke, invalidate, set_timeout, setperm, chown, unlink) by any process
 * but dkmd itself, with the caller's auid, uid and exe, under key.  Once per
 * process; audit_close_log() removes the rules again.  Needs the log open
 * (-ENOTCONN) and CAP_AUDIT_CONTROL (-EPERM); -EOPNOTSUPP when libaudit
 * knows no keyctl for this machine. */
int audit_keyctl_watch(const char *key);
