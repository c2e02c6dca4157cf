/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Linux audit trail, through libaudit; nothing else in dkm links it.
 *
 * The kernel stamps every user-space record with the *sender's* pid, uid,
 * auid and ses: here always dkmd's.  The client on whose behalf dkmd acts
 * (the requester) therefore goes into the message, and libaudit appends
 * dkmd's own exe=, hostname=, addr=, terminal= and res=:
 *
 *   pid=812 uid=dkm auid=unset ses=unset msg='op=key-use opid=4242 id=alice
 *     oauid=alice oses=3 ogid=dkm-users ocomm="dkmctl" oexe="/usr/bin/dkmctl"
 *     grant=7 ... exe="/usr/sbin/dkmd" hostname=? addr=? terminal=? res=success'
 *
 * Why these names (checked against audit 3.0.9, Debian 12's ausearch):
 *  - Not uid=/auid= again.  auditd's default log_format=ENRICHED appends one
 *    interpretation per field name (UID="dkm" AUID="unset" UID="alice" ...)
 *    and ausearch -i looks them up by name, first match: a second uid=
 *    would be shown as dkmd's user.  Tried: the requester came out as root.
 *  - The requester's fields use the kernel's own vocabulary for "another
 *    process than the one logging" (the OBJ_PID record: opid, oauid, oses,
 *    ocomm), which auparse types as uid / session / escaped, so ausearch -i
 *    prints names and decodes hex.  ogid likewise is a gid for auparse.
 *  - Except the uid: ouid= would be natural, but ausearch 3.0.9's user-record
 *    parser, when searching by uid (-ui/-ua), finds "uid=" after an 'o' and
 *    rejects the whole event as malformed, so every dkm record would vanish
 *    from such searches.  id= is libaudit's own name for "the uid this is
 *    about" (audit_log_acct_message, USER_LOGIN from sshd) and auparse
 *    interprets it as a uid.
 *  - oexe= has no type in auparse (shown as written: quoted, or hex when it
 *    had to be encoded); it cannot be exe= because libaudit appends dkmd's.
 *    ausearch -x matches the first "exe=" in the message, which is the
 *    requester's, so "ausearch -x /usr/bin/dkmctl" finds what dkmctl asked.
 *    dkmd can read /proc/<pid>/exe of other users only with ptrace rights,
 *    so oexe is often "?"; ocomm (world-readable) is there for that reason.
 *  - subj_verified=no (only when so): the requester's process had exited,
 *    or its pid was reused, before dkmd could read oauid, oses, ocomm and
 *    oexe when it connected; they are then left unset, never guessed.
 *    opid, id and ogid are the kernel's credentials of the connection.
 * Search by requester: ausearch -m CRYPTO_KEY_USER,USER_ACCT -i, then match
 * id=NAME / oauid=NAME (e.g. with grep -w), or -x for the executable.
 *
 * Record types: AUDIT_CRYPTO_KEY_USER for key life cycle and use (as
 * OpenSSH and libreswan do for keys); AUDIT_USER_ACCT for access decisions,
 * granted or refused: it is PAM's "may this account do this" (authorisation)
 * record, while USER_AUTH means proving an identity (the kernel does that
 * for us through SO_PEERCRED) and USER_ERR an account in a bad state;
 * refusals are USER_ACCT with res=failed, which aureport --failed counts.
 * Configuration changes: AUDIT_USYS_CONFIG, "user space system config
 * change".
 */
#include <errno.h>
#include <fcntl.h>
#include <libaudit.h>
#include <limits.h>
#include <linux/keyctl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "audit.h"
#include "util.h"

/* libaudit builds the final text in MAX_AUDIT_MESSAGE_LENGTH (8970) bytes
 * and silently truncates; keep ours well below, leaving room for its tail. */
#define AUDIT_MSG_MAX 7168

static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;
static int audit_fd = -1;
static bool audit_fail_all;
/* The kernel audit rules this process added (audit_keyctl_watch), removed
 * again by audit_close_log(). */
#define WATCH_RULES_MAX 16
static struct audit_rule_data *watch_rules[WATCH_RULES_MAX];
static size_t n_watch_rules;

static void watch_rules_remove_locked(void);

int audit_open_log(void)
{
        const char *hook;
        int fd, r = 0;

        pthread_mutex_lock(&audit_lock);
        if (audit_fd >= 0 || audit_fail_all)
                goto out;

        hook = secure_getenv("DKM_AUDIT_FAIL");
        if (hook && strcmp(hook, "1") == 0) {
                audit_fail_all = true;
                goto out;
        }

        /* libaudit prints its own complaints to stderr unless told not to. */
        set_aumessage_mode(MSG_QUIET, DBG_NO);
        fd = audit_open();
        if (fd < 0) {
                r = negative_errno();
                goto out;
        }
        audit_fd = fd;
out:
        pthread_mutex_unlock(&audit_lock);
        return r;
}

void audit_close_log(void)
{
        pthread_mutex_lock(&audit_lock);
        watch_rules_remove_locked();
        if (audit_fd >= 0)
                audit_close(audit_fd);
        audit_fd = -1;
        audit_fail_all = false;
        pthread_mutex_unlock(&audit_lock);
}

static bool value_is_safe(const char *s, size_t n)
{
        if (audit_value_needs_encoding(s, (unsigned)n))
                return false;
        /* libaudit lets these through, but ' would close the kernel's
         * msg='...' and = confuses ausearch's strstr()-based field parser. */
        return !memchr(s, '\'', n) && !memchr(s, '=', n);
}

char *audit_value(const char *s)
{
        size_t n;
        char *out;

        if (!s)
                return strdup("?");
        n = strlen(s);
        if (n > AUDIT_MSG_MAX)
                n = AUDIT_MSG_MAX; /* too long for a record anyway */
        if (value_is_safe(s, n)) {
                out = malloc(n + 3);
                if (out) {
                        out[0] = '"';
                        memcpy(out + 1, s, n);
                        out[n + 1] = '"';
                        out[n + 2] = '\0';
                }
                return out;
        }
        out = malloc(2 * n + 1);
        if (out)
                audit_encode_value(out, s, (unsigned)n);
        return out;
}

/* Field names the extra part may not use: ours, libaudit's, the kernel's,
 * and any name that ausearch's strstr()-based parser would mistake for one
 * of its own (a name ending in "res" is read as the result, one ending in
 * "uid" as a uid or a malformed event, "exe" as the executable...). */
static bool name_is_reserved(const char *name, size_t n)
{
        static const char *const exact[] = {
                "op", "id", "pid", "ses", "gid", "opid", "oses", "ogid", "key", "msg", "type", "path",
                "subj_verified",
        };
        static const char *const suffixes[] = {
                "uid", "subj", "comm", "acct", "hostname", "addr", "terminal", "exe", "res", "cwd",
                "vm", "uuid",
        };

        for (size_t i = 0; i < ARRAY_SIZE(exact); i++)
                if (strlen(exact[i]) == n && memcmp(name, exact[i], n) == 0)
                        return true;
        for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
                size_t m = strlen(suffixes[i]);

                if (n >= m && memcmp(name + n - m, suffixes[i], m) == 0)
                        return true;
        }
        return false;
}

static bool is_name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static bool is_value_char(char c)
{
        return c > 0x20 && c < 0x7f && c != '"' && c != '\'' && c != '=';
}

/* The caller's fields: "name=value name=value", single spaces, values plain
 * or quoted as audit_value() makes them.  A caller that formats untrusted
 * text without audit_value() gets -EINVAL, not a forged field. */
static bool extra_is_valid(const char *s)
{
        while (*s) {
                const char *name = s;

                while (is_name_char(*s))
                        s++;
                if (s == name || *s != '=' || s - name > 32 ||
                    name_is_reserved(name, (size_t)(s - name)))
                        return false;
                s++;
                if (*s == '"') {
                        for (s++; is_value_char(*s); s++)
                                ;
                        if (*s++ != '"')
                                return false;
                } else {
                        const char *v = s;

                        while (is_value_char(*s))
                                s++;
                        if (s == v)
                                return false;
                }
                if (*s == ' ' && s[1])
                        s++;
                else if (*s)
                        return false;
        }
        return true;
}

static bool op_is_valid(const char *op)
{
        if (!op || !*op)
                return false;
        for (; *op; op++)
                if (!is_value_char(*op))
                        return false;
        return true;
}

static int kind_to_type(enum audit_kind kind)
{
        switch (kind) {
        case AUDIT_KIND_KEY: return AUDIT_CRYPTO_KEY_USER;
        case AUDIT_KIND_ACCESS: return AUDIT_USER_ACCT;
        case AUDIT_KIND_CONFIG: return AUDIT_USYS_CONFIG;
        }
        return -1;
}

/* libaudit returns the netlink sequence number (> 0) once the kernel acked
 * the record, a negative errno, or 0 with errno set when it chose to hide a
 * failure (ECONNREFUSED: no audit in the kernel; EPERM without
 * CAP_AUDIT_WRITE).  For us only "acked" is success. */
const char *audit_errno_name(int err)
{
        const char *n = err != 0 && err != INT_MIN ? strerrorname_np(err < 0 ? -err : err) : NULL;

        return n ? n : "EUNKNOWN";
}

int audit_can_write(void)
{
        int r = 0;

        pthread_mutex_lock(&audit_lock);
        if (audit_fail_all)
                r = -EIO;
        else if (audit_fd < 0)
                r = -ENOTCONN;
        pthread_mutex_unlock(&audit_lock);
        return r;
}

static int map_result(int ret, int err)
{
        if (ret > 0)
                return 0;
        if (ret < 0)
                return ret;
        return err > 0 ? -err : -EIO;
}

int audit_record(enum audit_kind kind, const char *op, const struct audit_subject *subj,
                 bool success, const char *extra_fmt, ...)
{
        _cleanup_free_ char *extra = NULL, *comm = NULL, *exe = NULL;
        char msg[AUDIT_MSG_MAX + 1];
        int type = kind_to_type(kind), n, r;
        va_list ap;

        if (type < 0 || !op_is_valid(op))
                return -EINVAL;

        if (extra_fmt && *extra_fmt) {
                va_start(ap, extra_fmt);
                n = vasprintf(&extra, extra_fmt, ap);
                va_end(ap);
                if (n < 0) {
                        extra = NULL;
                        return -ENOMEM;
                }
                if (!extra_is_valid(extra))
                        return -EINVAL;
                if (!*extra) {
                        free(extra);
                        extra = NULL;
                }
        }

        if (subj) {
                comm = audit_value(subj->comm[0] ? subj->comm : NULL);
                exe = audit_value(subj->exe[0] ? subj->exe : NULL);
                if (!comm || !exe)
                        return -ENOMEM;
                n = snprintf(msg, sizeof(msg),
                             "op=%s opid=%d id=%u oauid=%u oses=%u ogid=%u ocomm=%s oexe=%s%s%s%s", op,
                             (int)subj->pid, (unsigned)subj->uid, (unsigned)subj->auid,
                             (unsigned)subj->ses, (unsigned)subj->gid, comm, exe,
                             subj->verified ? "" : " subj_verified=no", extra ? " " : "",
                             extra ? extra : "");
        } else
                n = snprintf(msg, sizeof(msg), "op=%s%s%s", op, extra ? " " : "",
                             extra ? extra : "");
        if (n < 0 || (size_t)n >= sizeof(msg))
                return -E2BIG;

        /* One record at a time: the socket's acks are matched by peeking,
         * and libaudit caches the exe name in a static buffer. */
        pthread_mutex_lock(&audit_lock);
        if (audit_fail_all)
                r = -EIO;
        else if (audit_fd < 0)
                r = -ENOTCONN;
        else {
                int ret;

                errno = 0;
                /* tty "" says "no terminal" without probing fds 0-2. */
                ret = audit_log_user_message(audit_fd, type, msg, NULL, NULL, "", success);
                r = map_result(ret, errno);
        }
        pthread_mutex_unlock(&audit_lock);
        return r;
}

/* Reads a small /proc file into buf, without the trailing newline. */
static int read_proc(pid_t pid, const char *what, char *buf, size_t size)
{
        char path[64];
        _cleanup_close_ int fd = -1;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        n = read(fd, buf, size - 1);
        if (n < 0)
                return negative_errno();
        while (n > 0 && buf[n - 1] == '\n')
                n--;
        buf[n] = '\0';
        return 0;
}

static uint32_t read_proc_u32(pid_t pid, const char *what)
{
        char buf[32], *end;
        unsigned long v;

        if (read_proc(pid, what, buf, sizeof(buf)) < 0)
                return UINT32_MAX;
        errno = 0;
        v = strtoul(buf, &end, 10);
        if (errno || end == buf || *end || v > UINT32_MAX)
                return UINT32_MAX;
        return (uint32_t)v;
}

void audit_subject_from_peer(struct audit_subject *s, pid_t pid, uid_t uid, gid_t gid)
{
        char path[64];
        ssize_t n;

        memset(s, 0, sizeof(*s));
        s->pid = pid;
        s->uid = uid;
        s->gid = gid;
        /* Both world-readable; (uid_t)-1 / (uint32_t)-1 read as "unset". */
        s->auid = (uid_t)read_proc_u32(pid, "loginuid");
        s->ses = read_proc_u32(pid, "sessionid");
        if (read_proc(pid, "comm", s->comm, sizeof(s->comm)) < 0)
                s->comm[0] = '\0';
        /* Needs ptrace rights over the peer: fails for other users' processes
         * unless dkmd runs with CAP_SYS_PTRACE. */
        snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
        n = readlink(path, s->exe, sizeof(s->exe) - 1);
        s->exe[n > 0 ? n : 0] = '\0';
        s->verified = pid == getpid();
}

/* pidfd's process has not been reaped: its pid cannot have been reused.
 * The kernel says ESRCH only when the process is gone; EPERM (another
 * user's process, without CAP_KILL) and EACCES (a security module said no)
 * come after it was found. */
static bool pidfd_alive(int pidfd)
{
        return pidfd_send_signal(pidfd, 0, NULL, 0) == 0 || errno == EPERM || errno == EACCES;
}

/* Whether pid's real, effective or saved uid is uid (/proc/pid/status). */
static bool proc_has_uid(pid_t pid, uid_t uid)
{
        char buf[4096], *line;
        unsigned long ids[3];

        if (read_proc(pid, "status", buf, sizeof(buf)) < 0)
                return false;
        line = strstr(buf, "\nUid:");
        if (!line || sscanf(line + 5, "%lu %lu %lu", &ids[0], &ids[1], &ids[2]) != 3)
                return false;
        return ids[0] == uid || ids[1] == uid || ids[2] == uid;
}

void audit_subject_from_pidfd(struct audit_subject *s, int pidfd, bool check_uid, pid_t pid, uid_t uid,
                              gid_t gid)
{
        audit_subject_from_peer(s, pid, uid, gid);
        /* Read first, then ask: alive now means alive during the reads. */
        s->verified = pid > 0 && pidfd >= 0 && (!check_uid || proc_has_uid(pid, uid)) && pidfd_alive(pidfd);
        if (!s->verified) {
                /* Possibly another process's: record nothing rather than
                 * the wrong person. */
                s->auid = (uid_t)-1;
                s->ses = UINT32_MAX;
                s->comm[0] = '\0';
                s->exe[0] = '\0';
        }
}

/* --- who changes keys with keyctl ------------------------------------------ */

/* The keyctl operations that change or end a key: what a reviewer does to a
 * grant (timeout, revoke, invalidate), and what else could (unlink, setperm,
 * chown). */
static const unsigned keyctl_change_ops[] = {
        KEYCTL_REVOKE, KEYCTL_CHOWN, KEYCTL_SETPERM, KEYCTL_UNLINK, KEYCTL_SET_TIMEOUT, KEYCTL_INVALIDATE,
};

/* libaudit's rule builders return its own EAU_* codes: not errno. */
static int watch_field(struct audit_rule_data **rule, const char *fmt, ...) _printf_(2, 3);
static int watch_field(struct audit_rule_data **rule, const char *fmt, ...)
{
        char pair[PATH_MAX + 16];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(pair, sizeof(pair), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(pair))
                return -ENAMETOOLONG;
        return audit_rule_fieldpair_data(rule, pair, AUDIT_FILTER_EXIT) == 0 ? 0 : -EINVAL;
}

static void watch_rules_remove_locked(void)
{
        for (size_t i = 0; i < n_watch_rules; i++) {
                if (audit_fd >= 0)
                        (void)audit_delete_rule_data(audit_fd, watch_rules[i], AUDIT_FILTER_EXIT,
                                                     AUDIT_ALWAYS);
                audit_rule_free_data(watch_rules[i]);
        }
        n_watch_rules = 0;
}

/* One rule: -a always,exit -F arch=ARCH -S keyctl -F a0=OP -F pid!=SELF
 * -F exe!=SELF_EXE -k KEY.  exe!= leaves out every dkmd's own calls (its key
 * cache changes all the time); pid!= makes the rule this process's own, so
 * that removing it at stop leaves another instance's in place. */
static int watch_add_locked(const char *arch, int nr, unsigned op, const char *exe, const char *key)
{
        struct audit_rule_data *rule = audit_rule_create_data();
        int r;

        if (!rule)
                return -ENOMEM;
        /* The arch before the syscall: its number depends on it. */
        r = watch_field(&rule, "arch=%s", arch);
        /* libaudit's audit_rule_syscall_data() is not public: its one line. */
        if (r >= 0 && (nr < 0 || (unsigned)nr / 32 >= AUDIT_BITMASK_SIZE))
                r = -EINVAL;
        if (r >= 0)
                rule->mask[nr / 32] |= UINT32_C(1) << (nr % 32);
        if (r >= 0)
                r = watch_field(&rule, "a0=%u", op);
        if (r >= 0)
                r = watch_field(&rule, "pid!=%d", (int)getpid());
        if (r >= 0)
                r = watch_field(&rule, "exe!=%s", exe);
        if (r >= 0)
                r = watch_field(&rule, "key=%s", key);
        if (r >= 0) {
                r = audit_add_rule_data(audit_fd, rule, AUDIT_FILTER_EXIT, AUDIT_ALWAYS);
                r = r < 0 ? r : 0;
        }
        if (r < 0) {
                audit_rule_free_data(rule);
                return r;
        }
        watch_rules[n_watch_rules++] = rule;
        return 0;
}

/* A rule of the shape watch_add_locked() makes, under key, that leaves out
 * a pid that runs no more: left by a dkmd that died without removing it. */
static bool watch_rule_is_stale(const struct audit_rule_data *rule, const char *key)
{
        unsigned off = 0;
        bool ours = false;
        pid_t pid = 0;

        if ((rule->flags & ~AUDIT_FILTER_PREPEND) != AUDIT_FILTER_EXIT || rule->action != AUDIT_ALWAYS)
                return false;
        for (unsigned i = 0; i < rule->field_count && i < AUDIT_MAX_FIELDS; i++) {
                unsigned f = rule->fields[i] & ~AUDIT_OPERATORS, v = rule->values[i];

                switch (f) {
                case AUDIT_ARCH:
                case AUDIT_ARG0:
                        break;
                case AUDIT_PID:
                        pid = (pid_t)v;
                        break;
                case AUDIT_EXE:
                case AUDIT_FILTERKEY:
                        if (v > rule->buflen - off)
                                return false;
                        if (f == AUDIT_FILTERKEY)
                                ours = v == strlen(key) && memcmp(rule->buf + off, key, v) == 0;
                        off += v;
                        break;
                default:
                        return false; /* not a rule of ours */
                }
        }
        return ours && pid > 0 && pid != getpid() && kill(pid, 0) < 0 && errno == ESRCH;
}

/* Rules that a dkmd killed (SIGKILL, a crash) left behind: removed, so that
 * restarts do not pile rules up that every system call walks past.  Best
 * effort: a listing that fails leaves them. */
static void watch_rules_reap_locked(const char *key)
{
        struct audit_rule_data *stale[64];
        struct audit_reply rep;
        size_t n = 0;

        if (audit_request_rules_list_data(audit_fd) <= 0)
                return;
        for (;;) {
                if (audit_get_reply(audit_fd, &rep, GET_REPLY_BLOCKING, 0) <= 0 || rep.type == NLMSG_DONE ||
                    rep.type == NLMSG_ERROR)
                        break;
                if (rep.type != AUDIT_LIST_RULES || n >= ARRAY_SIZE(stale) ||
                    !watch_rule_is_stale(rep.ruledata, key))
                        continue;
                stale[n] = malloc(sizeof(*rep.ruledata) + rep.ruledata->buflen);
                if (stale[n]) {
                        memcpy(stale[n], rep.ruledata, sizeof(*rep.ruledata) + rep.ruledata->buflen);
                        n++;
                }
        }
        /* Only once the listing is done: the socket carries one exchange. */
        for (size_t i = 0; i < n; i++) {
                (void)audit_delete_rule_data(audit_fd, stale[i], AUDIT_FILTER_EXIT, AUDIT_ALWAYS);
                free(stale[i]);
        }
}

int audit_keyctl_watch(const char *key)
{
        /* The native ABI and, where the machine has one, the 32-bit one:
         * a 32-bit keyctl has other syscall numbers. */
        static const char *const arches[] = { "b64", "b32" };
        char exe[PATH_MAX];
        ssize_t n;
        int r = 0;

        if (!key || !*key || strlen(key) > AUDIT_MAX_KEY_LEN)
                return -EINVAL;
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n < 0)
                return negative_errno();
        exe[n] = '\0';

        pthread_mutex_lock(&audit_lock);
        if (audit_fd < 0 || n_watch_rules > 0) {
                r = audit_fd < 0 ? -ENOTCONN : 0;
                goto out;
        }
        watch_rules_reap_locked(key);
        for (size_t a = 0; a < ARRAY_SIZE(arches); a++) {
                int machine = audit_determine_machine(arches[a]), nr;
                size_t before = n_watch_rules;

                if (machine < 0)
                        continue;
                nr = audit_name_to_syscall("keyctl", machine);
                if (nr < 0)
                        continue;
                for (size_t i = 0; i < ARRAY_SIZE(keyctl_change_ops); i++) {
                        r = n_watch_rules < WATCH_RULES_MAX ?
                                watch_add_locked(arches[a], nr, keyctl_change_ops[i], exe, key) : -ENOBUFS;
                        if (r < 0)
                                break;
                }
                /* A kernel without the 32-bit ABI refuses its first rule. */
                if (r == -EINVAL && a > 0 && n_watch_rules == before)
                        r = 0;
                if (r < 0)
                        break;
        }
        if (r >= 0 && n_watch_rules == 0)
                r = -EOPNOTSUPP;
        if (r < 0)
                watch_rules_remove_locked();
out:
        pthread_mutex_unlock(&audit_lock);
        return r;
}
