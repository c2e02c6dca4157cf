/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit.c with libaudit replaced by spies: the exact record text, its type,
 * the result flag, and the mapping of libaudit's return conventions.  The
 * read-back through a real auditd is tests/integration/test-audit-readback.sh.
 */
/* wrap: audit_open audit_close audit_log_user_message audit_add_rule_data audit_delete_rule_data */
#include <errno.h>
#include <libaudit.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/audit.h"

#define FAKE_FD 4242

int __wrap_audit_open(void);
void __wrap_audit_close(int fd);
int __wrap_audit_log_user_message(int fd, int type, const char *message, const char *hostname,
                                  const char *addr, const char *tty, int result);

static char last_msg[8192];
static int last_type, last_result, calls;

int __wrap_audit_open(void)
{
        int r = mock_type(int);

        if (r < 0)
                errno = -r;
        return r < 0 ? -1 : r;
}

void __wrap_audit_close(int fd)
{
        assert_int_equal(fd, FAKE_FD);
}

/* will_return: the value to return, then the errno to leave behind. */
int __wrap_audit_log_user_message(int fd, int type, const char *message, const char *hostname,
                                  const char *addr, const char *tty, int result)
{
        int ret = mock_type(int), err = mock_type(int);

        calls++;
        assert_int_equal(fd, FAKE_FD);
        assert_null(hostname);
        assert_null(addr);
        assert_string_equal(tty, ""); /* "no terminal", without probing */
        snprintf(last_msg, sizeof(last_msg), "%s", message);
        last_type = type;
        last_result = result;
        errno = err;
        return ret;
}

/* The keyctl rules: what was added and deleted. */
#define RULES_MAX 32
static unsigned rule_ops[RULES_MAX];
static size_t n_added, n_deleted;

int __wrap_audit_add_rule_data(int fd, struct audit_rule_data *rule, int flags, int action);
int __wrap_audit_delete_rule_data(int fd, struct audit_rule_data *rule, int flags, int action);

/* Checks one rule's fields: a0=OP, pid!=self, exe!=..., key=dkm-keyctl,
 * an arch, the keyctl syscall's bit; returns its a0. */
static unsigned check_rule(const struct audit_rule_data *rule)
{
        bool arch = false, pid = false, exe = false, key = false, a0 = false;
        unsigned op = 0, off = 0, bits = 0;

        for (unsigned i = 0; i < rule->field_count; i++) {
                unsigned f = rule->fields[i] & ~AUDIT_OPERATORS, v = rule->values[i];

                switch (f) {
                case AUDIT_ARCH: arch = true; break;
                case AUDIT_ARG0: a0 = true; op = v; break;
                case AUDIT_PID:
                        assert_int_equal(rule->fieldflags[i], AUDIT_NOT_EQUAL);
                        assert_int_equal(v, (unsigned)getpid());
                        pid = true;
                        break;
                case AUDIT_EXE:
                        assert_int_equal(rule->fieldflags[i], AUDIT_NOT_EQUAL);
                        exe = v > 0;
                        off += v;
                        break;
                case AUDIT_FILTERKEY:
                        assert_int_equal(v, strlen(AUDIT_KEYCTL_RULE));
                        assert_memory_equal(rule->buf + off, AUDIT_KEYCTL_RULE, v);
                        key = true;
                        off += v;
                        break;
                default: fail_msg("unexpected field %u", f);
                }
        }
        for (unsigned i = 0; i < AUDIT_BITMASK_SIZE; i++)
                bits += (unsigned)__builtin_popcount(rule->mask[i]);
        assert_int_equal(bits, 1); /* keyctl, nothing else */
        assert_true(arch && pid && exe && key && a0);
        return op;
}

int __wrap_audit_add_rule_data(int fd, struct audit_rule_data *rule, int flags, int action)
{
        int r = mock_type(int);

        assert_int_equal(fd, FAKE_FD);
        assert_int_equal(flags, AUDIT_FILTER_EXIT);
        assert_int_equal(action, AUDIT_ALWAYS);
        if (r >= 0) {
                assert_true(n_added < RULES_MAX);
                rule_ops[n_added++] = check_rule(rule);
        }
        return r;
}

int __wrap_audit_delete_rule_data(int fd, struct audit_rule_data *rule, int flags, int action)
{
        assert_int_equal(fd, FAKE_FD);
        assert_int_equal(flags, AUDIT_FILTER_EXIT);
        assert_int_equal(action, AUDIT_ALWAYS);
        (void)check_rule(rule);
        n_deleted++;
        return 0;
}

static const struct audit_subject alice = {
        .pid = 4242, .uid = 1000, .gid = 100, .auid = 1001,
        .exe = "/usr/bin/dkm ctl", .comm = "dkmctl", .ses = 7, .verified = true,
};

static int setup(void **state)
{
        (void)state;
        unsetenv("DKM_AUDIT_FAIL");
        will_return(__wrap_audit_open, FAKE_FD);
        calls = 0;
        return audit_open_log();
}

static int teardown(void **state)
{
        (void)state;
        audit_close_log();
        return 0;
}

static void expect_send(int ret, int err)
{
        will_return(__wrap_audit_log_user_message, ret);
        will_return(__wrap_audit_log_user_message, err);
}

static void test_key_record_fields(void **state)
{
        (void)state;
        expect_send(17, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "key-use", &alice, true,
                                      "policy=\"mail\" generation=%u grant=%d", 3u, 9),
                         0);
        assert_int_equal(calls, 1);
        assert_int_equal(last_type, AUDIT_CRYPTO_KEY_USER);
        assert_int_equal(last_result, 1);
        /* exe has a space: hex, as the kernel encodes untrusted strings */
        assert_string_equal(last_msg,
                            "op=key-use opid=4242 id=1000 oauid=1001 oses=7 ogid=100 "
                            "ocomm=\"dkmctl\" oexe=2F7573722F62696E2F646B6D2063746C "
                            "policy=\"mail\" generation=3 grant=9");
}

static void test_access_and_config_types(void **state)
{
        struct audit_subject unset = alice;

        (void)state;
        unset.auid = (uid_t)-1;
        unset.ses = UINT32_MAX;
        unset.exe[0] = '\0';
        expect_send(1, 0);
        assert_int_equal(audit_record(AUDIT_KIND_ACCESS, "access-approve", &unset, false,
                                      "reason=refused"),
                         0);
        assert_int_equal(last_type, AUDIT_USER_ACCT);
        assert_int_equal(last_result, 0);
        assert_string_equal(last_msg, "op=access-approve opid=4242 id=1000 oauid=4294967295 "
                                      "oses=4294967295 ogid=100 ocomm=\"dkmctl\" oexe=? "
                                      "reason=refused");

        expect_send(2, 0);
        assert_int_equal(audit_record(AUDIT_KIND_CONFIG, "policy-assign", NULL, true, NULL), 0);
        assert_int_equal(last_type, AUDIT_USYS_CONFIG);
        assert_string_equal(last_msg, "op=policy-assign");

        expect_send(3, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "rollover", NULL, true, "generation=2"), 0);
        assert_string_equal(last_msg, "op=rollover generation=2");

        /* A subject that could not be verified says so, before the extra
         * fields, which may not claim the name themselves. */
        unset.verified = false;
        unset.comm[0] = '\0';
        expect_send(5, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "generation-rotate", &unset, true, "generation=2"), 0);
        assert_string_equal(last_msg, "op=generation-rotate opid=4242 id=1000 oauid=4294967295 "
                                      "oses=4294967295 ogid=100 ocomm=? oexe=? subj_verified=no "
                                      "generation=2");
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, "subj_verified=yes"), -EINVAL);

        /* An extra that formats to nothing adds nothing, not a space. */
        expect_send(4, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "rollover", NULL, true, "%s", ""), 0);
        assert_string_equal(last_msg, "op=rollover");
}

static void test_error_mapping(void **state)
{
        (void)state;
        /* libaudit's own negative errno */
        expect_send(-EPERM, EPERM);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -EPERM);
        expect_send(-ENOBUFS, ENOBUFS);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -ENOBUFS);
        /* 0 is a failure libaudit chose to hide: ECONNREFUSED (no audit in
         * the kernel) or EPERM without CAP_AUDIT_WRITE. */
        expect_send(0, ECONNREFUSED);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -ECONNREFUSED);
        expect_send(0, EPERM);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -EPERM);
        expect_send(0, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -EIO);
        expect_send(123456, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), 0);
}

static void test_bad_input_rejected(void **state)
{
        static const char *const bad_extra[] = {
                "reason=two words",    /* space inside a plain value */
                "reason='x'",          /* would close the kernel's msg='...' */
                "reason=\"a b\"",      /* space inside quotes */
                "reason=\"a=b\"",      /* = confuses ausearch */
                "reason=\"unterminated",
                "reason=",             /* empty plain value */
                "res=success",         /* forged result */
                "failures=3",          /* ends in res: ausearch reads it as res= */
                "ouid=0",              /* ausearch drops the event as malformed */
                "exe=/bin/sh", "oexe=x", "id=0", "opid=1", "hostname=x", "addr=x",
                "terminal=x", "acct=root", "subj=x", "comm=x",
                "Upper=1",             /* names are lower case */
                "a=1  b=2", " a=1", "a=1 ", "a=1\nb=2", "a=1\tb=2", "novalue", "=x",
                "a=\x01",
        };

        (void)state;
        for (size_t i = 0; i < sizeof(bad_extra) / sizeof(bad_extra[0]); i++) {
                int r = audit_record(AUDIT_KIND_KEY, "k", &alice, true, "%s", bad_extra[i]);

                if (r != -EINVAL)
                        fail_msg("extra '%s' gave %d, not -EINVAL", bad_extra[i], r);
        }
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "two words", &alice, true, NULL), -EINVAL);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "", &alice, true, NULL), -EINVAL);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "op=x", &alice, true, NULL), -EINVAL);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, NULL, &alice, true, NULL), -EINVAL);
        assert_int_equal(audit_record((enum audit_kind)42, "k", &alice, true, NULL), -EINVAL);
        assert_int_equal(calls, 0);

        /* Too long for one record: refused, not truncated. */
        {
                char *big = malloc(8000);

                memset(big, 'x', 7999);
                big[7999] = '\0';
                assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, "blob=%s", big),
                                 -E2BIG);
                free(big);
        }
        assert_int_equal(calls, 0);

        /* Good ones pass the same checks. */
        expect_send(1, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true,
                                      "policy_id=ab12 error=-5 empty=\"\" note=?"),
                         0);
}

static void test_audit_value(void **state)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "mail", "\"mail\"" },
                { "", "\"\"" },
                { "a b", "612062" },
                { "it's", "69742773" },
                { "a=b", "613D62" },
                { "say \"hi\"", "7361792022686922" },
                { "\xc3\xa9", "C3A9" },
                { "tab\t", "74616209" },
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *v = audit_value(cases[i].in);

                assert_non_null(v);
                assert_string_equal(v, cases[i].out);
                free(v);
        }
        {
                char *v = audit_value(NULL);

                assert_string_equal(v, "?");
                free(v);
        }
        /* What audit_value() makes, audit_record() accepts. */
        {
                char *v = audit_value("why not 'now'? a=b");

                expect_send(1, 0);
                assert_int_equal(audit_record(AUDIT_KIND_ACCESS, "access-request", &alice, true,
                                              "reason=%s", v), 0);
                free(v);
        }
}

static void test_not_open(void **state)
{
        (void)state;
        audit_close_log();
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -ENOTCONN);
        assert_int_equal(calls, 0);

        /* A failed open is reported, and records still fail. */
        will_return(__wrap_audit_open, -EPROTONOSUPPORT);
        assert_int_equal(audit_open_log(), -EPROTONOSUPPORT);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -ENOTCONN);

        will_return(__wrap_audit_open, FAKE_FD);
        assert_int_equal(audit_open_log(), 0);
        assert_int_equal(audit_open_log(), 0); /* idempotent: no second audit_open() */
}

static void test_fail_hook(void **state)
{
        (void)state;
        audit_close_log();
        setenv("DKM_AUDIT_FAIL", "1", 1);
        /* No socket is opened at all (a will_return left over would fail). */
        assert_int_equal(audit_open_log(), 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), -EIO);
        assert_int_equal(audit_record(AUDIT_KIND_ACCESS, "a", NULL, false, NULL), -EIO);
        assert_int_equal(calls, 0);
        audit_close_log();

        /* Only "1" arms it. */
        setenv("DKM_AUDIT_FAIL", "0", 1);
        will_return(__wrap_audit_open, FAKE_FD);
        assert_int_equal(audit_open_log(), 0);
        expect_send(1, 0);
        assert_int_equal(audit_record(AUDIT_KIND_KEY, "k", &alice, true, NULL), 0);
        unsetenv("DKM_AUDIT_FAIL");
}

static bool has_op(unsigned op)
{
        for (size_t i = 0; i < n_added; i++)
                if (rule_ops[i] == op)
                        return true;
        return false;
}

static void test_keyctl_watch(void **state)
{
        (void)state;
        n_added = n_deleted = 0;
        /* Every changing operation, once per ABI (6 native, 6 more with a
         * 32-bit one); removed again when the log closes. */
        will_return_always(__wrap_audit_add_rule_data, 1);
        assert_int_equal(audit_keyctl_watch(AUDIT_KEYCTL_RULE), 0);
        assert_true(n_added == 6 || n_added == 12);
        assert_true(has_op(3) && has_op(4) && has_op(5) && has_op(9) && has_op(15) && has_op(21));
        assert_false(has_op(2)); /* read: not a change */
        /* Once per process. */
        assert_int_equal(audit_keyctl_watch(AUDIT_KEYCTL_RULE), 0);
        assert_int_equal(n_deleted, 0);
        audit_close_log();
        assert_int_equal(n_deleted, n_added);

        /* Not open: nothing sent. */
        assert_int_equal(audit_keyctl_watch(AUDIT_KEYCTL_RULE), -ENOTCONN);
        assert_int_equal(audit_keyctl_watch(""), -EINVAL);
}

static void test_keyctl_watch_refused(void **state)
{
        (void)state;
        n_added = n_deleted = 0;
        /* Without CAP_AUDIT_CONTROL the first rule fails: -EPERM, nothing
         * left behind. */
        will_return(__wrap_audit_add_rule_data, -EPERM);
        assert_int_equal(audit_keyctl_watch(AUDIT_KEYCTL_RULE), -EPERM);
        assert_int_equal(n_added, 0);
        /* A failure half-way removes what was added. */
        will_return_count(__wrap_audit_add_rule_data, 1, 3);
        will_return(__wrap_audit_add_rule_data, -ENOMEM);
        assert_int_equal(audit_keyctl_watch(AUDIT_KEYCTL_RULE), -ENOMEM);
        assert_int_equal(n_added, 3);
        assert_int_equal(n_deleted, 3);
        audit_close_log();
        assert_int_equal(n_deleted, 3);
}

static void test_subject_from_peer(void **state)
{
        struct audit_subject s;
        char exe[256] = "", buf[32] = "";
        ssize_t n;
        FILE *f;

        (void)state;
        audit_subject_from_peer(&s, getpid(), 1234, 5678);
        assert_int_equal(s.pid, getpid());
        assert_int_equal(s.uid, 1234);
        assert_int_equal(s.gid, 5678);
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        assert_true(n > 0);
        assert_string_equal(s.exe, exe);
        assert_string_equal(s.comm, "test-audit");

        f = fopen("/proc/self/loginuid", "re");
        if (f) {
                assert_non_null(fgets(buf, sizeof(buf), f));
                fclose(f);
                assert_int_equal(s.auid, (uid_t)strtoul(buf, NULL, 10));
        }

        /* A pid that does not exist: nothing readable, all "unset". */
        audit_subject_from_peer(&s, 0x3ffffff0, 1, 2);
        assert_int_equal(s.auid, (uid_t)-1);
        assert_int_equal(s.ses, UINT32_MAX);
        assert_string_equal(s.exe, "");
        assert_string_equal(s.comm, "");
        assert_false(s.verified);
}

/* A child that waits on a pipe until told to exit. */
static pid_t spawn_child(int *ret_release)
{
        int p[2];
        pid_t pid;
        char c;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(p[1]);
                (void)!read(p[0], &c, 1);
                _exit(0);
        }
        close(p[0]);
        *ret_release = p[1];
        return pid;
}

static void test_subject_from_pidfd(void **state)
{
        struct audit_subject s;
        int release, pidfd;
        pid_t pid;

        (void)state;
        pid = spawn_child(&release);
        pidfd = pidfd_open(pid, 0);
        assert_true(pidfd >= 0);

        /* Alive: read and verified. */
        audit_subject_from_pidfd(&s, pidfd, false, pid, getuid(), getgid());
        assert_true(s.verified);
        assert_int_equal(s.pid, pid);
        assert_string_equal(s.comm, "test-audit");
        /* Held from the pid (no SO_PEERPIDFD): its uid must match too. */
        audit_subject_from_pidfd(&s, pidfd, true, pid, getuid(), getgid());
        assert_true(s.verified);
        audit_subject_from_pidfd(&s, pidfd, true, pid, getuid() + 4711, getgid());
        assert_false(s.verified);
        assert_int_equal(s.auid, (uid_t)-1);
        assert_int_equal(s.ses, UINT32_MAX);
        assert_string_equal(s.comm, "");
        assert_string_equal(s.exe, "");
        assert_int_equal(s.uid, getuid() + 4711); /* the socket's word stays */

        /* Exited and reaped: the pid is free for another process, so
         * nothing read from /proc by it counts. */
        close(release);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        audit_subject_from_pidfd(&s, pidfd, false, pid, getuid(), getgid());
        assert_false(s.verified);
        assert_int_equal(s.pid, pid);
        assert_int_equal(s.auid, (uid_t)-1);
        assert_string_equal(s.comm, "");
        close(pidfd);

        /* No pidfd (the peer was gone at accept): never verified, even for
         * a pid that exists. */
        audit_subject_from_pidfd(&s, -1, false, getpid(), getuid(), getgid());
        assert_false(s.verified);
        assert_string_equal(s.comm, "");

        /* dkmd itself is always known. */
        audit_subject_from_peer(&s, getpid(), getuid(), getgid());
        assert_true(s.verified);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_key_record_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_access_and_config_types, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_mapping, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_input_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_audit_value, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_open, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fail_hook, setup, teardown),
                cmocka_unit_test_setup_teardown(test_subject_from_peer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_subject_from_pidfd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keyctl_watch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keyctl_watch_refused, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
