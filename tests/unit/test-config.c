/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/config.h"

#define SEC UINT64_C(1000000)
/* Numeric gids are taken as they are, so these work on any machine. */
#define GROUPS "[groups]\nusers=1001\noperators=1002\napprovers=1003\n"

static int parse(const char *text, struct dkm_config *c, char *err, size_t size)
{
        return config_parse_string(text, "dkmd.conf", c, err, size);
}

static void test_defaults(void **state)
{
        struct dkm_config c;
        char err[256];

        (void)state;
        assert_int_equal(parse(GROUPS, &c, err, sizeof(err)), 0);
        assert_string_equal(err, "");
        assert_string_equal(c.socket, "/run/dkm/dkmd.sock");
        assert_string_equal(c.state_dir, "/var/lib/dkm");
        assert_string_equal(c.master_key, "/var/lib/dkm/master.key");
        assert_int_equal(c.engine, ENGINE_AUTO);
        assert_int_equal(c.users_gid, 1001);
        assert_int_equal(c.operators_gid, 1002);
        assert_int_equal(c.approvers_gid, 1003);
        if (!getgrnam("dkm-reviewers"))
                assert_int_equal(c.reviewers_gid, (gid_t)-1);
        assert_int_equal(c.max_age_usec, 30 * 86400 * SEC);
        assert_int_equal(c.max_uses, UINT64_C(1) << 30);
        assert_int_equal(c.approvals_required, 2);
        assert_int_equal(c.max_duration_usec, 8 * 3600 * SEC);
        assert_int_equal(c.request_ttl_usec, 3600 * SEC);
        assert_int_equal(c.max_policies, 50);
        assert_int_equal(c.recovery_shares, 5);
        assert_int_equal(c.recovery_threshold, 3);
        assert_int_equal(c.hedge_delay_usec, 50000);
        assert_int_equal(c.cache_ttl_usec, 2 * 3600 * SEC);
        assert_string_equal(c.store_backend, "sqlite");
        assert_null(c.store_endpoints);
        assert_null(c.store_cacert);
        assert_null(c.node_name);
        assert_int_equal(c.node_ttl_usec, 10 * SEC);
        assert_true(c.audit_fail_closed);
        /* Customer keys may use no module and no key file until the
         * administrator says which. */
        assert_non_null(c.pkcs11_modules);
        assert_null(c.pkcs11_modules[0]);
        assert_non_null(c.key_dirs);
        assert_null(c.key_dirs[0]);
        assert_int_equal(c.max_connections_per_uid, 64);
        assert_int_equal(c.read_timeout_usec, 10 * SEC);
        assert_int_equal(c.idle_timeout_usec, 15 * 60 * SEC);
        assert_int_equal(c.stream_timeout_usec, 60 * SEC);
        assert_int_equal(c.stream_threads, CONFIG_STREAM_THREADS_AUTO);
        config_free(&c);
        assert_null(c.socket);
        config_free(&c); /* twice is fine */
}

static void test_full(void **state)
{
        static const char text[] =
                "# dkmd.conf\n"
                "; both comment styles\n"
                "[daemon] ; inline comment\n"
                "socket = /tmp/dkm/dkmd.sock\n"
                "state_dir=/srv/dkm/\n"
                "engine=openssl\n"
                "stream_threads=64\n"
                "\n"
                "[groups]\n"
                "users=root\n"
                "operators=0\n"
                "approvers = 4242 ; numeric, need not exist\n"
                "reviewers=4343\n"
                "[rotation]\n"
                "max_age=7d12h\n"
                "max_uses=4294967296\n"
                "[access]\n"
                "approvals_required=1\n"
                "max_duration=30m\n"
                "request_ttl=2h\n"
                "[policy]\n"
                "max_policies=3\n"
                "hedge_delay=0ms\n"
                "cache_ttl=1s\n"
                "[store]\n"
                "backend=etcd\n"
                "endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379\n"
                "cacert=/etc/dkm/ca.pem\n"
                "cert=/etc/dkm/c.pem\n"
                "key=/etc/dkm/k.pem\n"
                "prefix=/dkm/prod/\n"
                "node_name=dkm-01.example_b\n"
                "node_ttl=4s\n"
                "[audit]\n"
                "fail_closed=no\n"
                "[recovery]\n"
                "shares=16\n"
                "threshold=16\n"
                "[daemon]\n" /* a section may be opened again */
                "master_key=/etc/credstore/dkm.key\n";
        struct dkm_config c;
        char err[256];

        (void)state;
        assert_int_equal(parse(text, &c, err, sizeof(err)), 0);
        assert_string_equal(c.socket, "/tmp/dkm/dkmd.sock");
        assert_string_equal(c.state_dir, "/srv/dkm");
        assert_string_equal(c.master_key, "/etc/credstore/dkm.key");
        assert_int_equal(c.engine, ENGINE_OPENSSL);
        assert_int_equal(c.stream_threads, 64);
        assert_int_equal(c.users_gid, 0);
        assert_int_equal(c.operators_gid, 0);
        assert_int_equal(c.approvers_gid, 4242);
        assert_int_equal(c.reviewers_gid, 4343);
        assert_int_equal(c.max_age_usec, (7 * 86400 + 12 * 3600) * SEC);
        assert_int_equal(c.max_uses, UINT64_C(1) << 32);
        assert_int_equal(c.approvals_required, 1);
        assert_int_equal(c.max_duration_usec, 1800 * SEC);
        assert_int_equal(c.request_ttl_usec, 7200 * SEC);
        assert_int_equal(c.max_policies, 3);
        assert_int_equal(c.recovery_shares, 16);
        assert_int_equal(c.recovery_threshold, 16);
        assert_int_equal(c.hedge_delay_usec, 0);
        assert_int_equal(c.cache_ttl_usec, SEC);
        assert_string_equal(c.store_backend, "etcd");
        assert_string_equal(c.store_endpoints, "https://10.0.0.1:2379,https://10.0.0.2:2379");
        assert_string_equal(c.store_cacert, "/etc/dkm/ca.pem");
        assert_string_equal(c.store_cert, "/etc/dkm/c.pem");
        assert_string_equal(c.store_key, "/etc/dkm/k.pem");
        assert_string_equal(c.store_prefix, "/dkm/prod/");
        assert_string_equal(c.node_name, "dkm-01.example_b");
        assert_int_equal(c.node_ttl_usec, 4 * SEC);
        assert_false(c.audit_fail_closed);
        config_free(&c);
}

static void test_syntax_variants(void **state)
{
        struct dkm_config c;
        char err[256];

        (void)state;
        /* CRLF, a UTF-8 BOM, "key: value" */
        assert_int_equal(parse("\xEF\xBB\xBF[daemon]\r\nsocket: /x.sock\r\nengine=kernel\r\n" GROUPS,
                               &c, err, sizeof(err)),
                         0);
        assert_string_equal(c.socket, "/x.sock");
        assert_int_equal(c.engine, ENGINE_KERNEL);
        config_free(&c);

        /* master_key follows state_dir, also "/" */
        assert_int_equal(parse("[daemon]\nstate_dir=/\n" GROUPS, &c, err, sizeof(err)), 0);
        assert_string_equal(c.master_key, "/master.key");
        config_free(&c);

        /* the last line need not end in a newline; other booleans */
        assert_int_equal(parse(GROUPS "[audit]\nfail_closed=true", &c, err, sizeof(err)), 0);
        assert_true(c.audit_fail_closed);
        config_free(&c);

        /* etcd client certificate optional, CA optional; empty store values unset */
        assert_int_equal(parse(GROUPS "[store]\nbackend=etcd\nendpoints=http://127.0.0.1:2379\n"
                                      "cacert=\n",
                               &c, err, sizeof(err)),
                         0);
        assert_null(c.store_cacert);
        config_free(&c);
}

static void test_group_names(void **state)
{
        struct dkm_config c;
        struct group *g = getgrgid(65534);
        char text[256], err[256];

        (void)state;
        if (!g)
                skip();
        snprintf(text, sizeof(text), "[groups]\nusers=%s\noperators=root\napprovers=%s\n",
                 g->gr_name, g->gr_name);
        assert_int_equal(parse(text, &c, err, sizeof(err)), 0);
        assert_int_equal(c.users_gid, 65534);
        assert_int_equal(c.operators_gid, 0);
        config_free(&c);
}

static void test_default_group_missing(void **state)
{
        struct dkm_config c;
        char err[256];

        (void)state;
        /* Defaults never fail... */
        config_init_defaults(&c);
        if (getgrnam("dkm-users")) {
                config_free(&c);
                skip(); /* this machine has the groups: nothing to see */
        }
        assert_int_equal(c.users_gid, (gid_t)-1);
        config_free(&c);

        /* ...but a file that leaves one unresolved does, naming it. */
        assert_int_equal(parse("[daemon]\nengine=auto\n", &c, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "dkmd.conf: [groups] users: group 'dkm-users' does not exist "
                                 "(create it, or set users= to an existing group name or gid)");
        assert_int_equal(parse("[groups]\nusers=0\n", &c, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "dkmd.conf: [groups] operators: group 'dkm-operators' does not "
                                 "exist (create it, or set operators= to an existing group name "
                                 "or gid)");
        assert_int_equal(parse("[groups]\nusers=0\noperators=0\n", &c, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "group 'dkm-approvers' does not exist"));

        /* The reviewers group alone may be missing: then nobody but dkmd
         * manages grants with keyctl. */
        assert_int_equal(parse("[groups]\nusers=0\noperators=0\napprovers=0\n", &c, err, sizeof(err)), 0);
        assert_int_equal(c.reviewers_gid, (gid_t)-1);
        config_free(&c);
        /* Named, it must exist. */
        assert_int_equal(parse("[groups]\nusers=0\noperators=0\napprovers=0\nreviewers=dkm-no-such-group\n",
                               &c, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "[groups] reviewers: group 'dkm-no-such-group' does not exist"));
}

static void test_errors(void **state)
{
        static const struct {
                const char *text, *err;
        } cases[] = {
                { "[demon]\n", "dkmd.conf:1: unknown section [demon]" },
                { "\xEF\xBB\xBF[demon]\n", "dkmd.conf:1: unknown section [demon]" },
                { GROUPS "[Daemon]\nsocket=/x\n", "dkmd.conf:5: unknown section [Daemon]" },
                { "[daemon]\nsockett=/x\n", "dkmd.conf:2: [daemon] sockett: unknown key" },
                { "[groups]\nsocket=/x\n", "dkmd.conf:2: [groups] socket: unknown key" },
                { "[daemon]\nsocket=/a\nsocket=/b\n",
                  "dkmd.conf:3: [daemon] socket: duplicate key (first set on line 2)" },
                { "[daemon]\nsocket=/a\n[audit]\n[daemon]\nsocket=/b\n",
                  "dkmd.conf:5: [daemon] socket: duplicate key (first set on line 2)" },
                { "socket=/x\n", "dkmd.conf:1: socket: key before the first [section]" },
                { "[daemon]\nsocket=run/x\n",
                  "dkmd.conf:2: [daemon] socket: must be an absolute path, got 'run/x'" },
                { "[daemon]\nstate_dir=var/lib/dkm\n",
                  "dkmd.conf:2: [daemon] state_dir: must be an absolute path, got 'var/lib/dkm'" },
                { "[daemon]\nmaster_key=master.key\n",
                  "dkmd.conf:2: [daemon] master_key: must be an absolute path, got 'master.key'" },
                { "[daemon]\nsocket=\n", "dkmd.conf:2: [daemon] socket: empty value" },
                { "[daemon]\nsocket=/" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
                  "dkmd.conf:2: [daemon] socket: path too long for a socket (max 107 bytes)" },
                { "[daemon]\nengine=gpu\n",
                  "dkmd.conf:2: [daemon] engine: expected auto, kernel or openssl, got 'gpu'" },
                { "[daemon]\nengine=\x01x\n",
                  "dkmd.conf:2: [daemon] engine: expected auto, kernel or openssl, got '?x'" },
                { "[groups]\nusers=no-such-group-xyz\n",
                  "dkmd.conf:2: [groups] users: group 'no-such-group-xyz' does not exist" },
                { "[groups]\nusers=4294967295\n", "dkmd.conf:2: [groups] users: bad gid '4294967295'" },
                { "[groups]\nusers=99999999999999999999\n",
                  "dkmd.conf:2: [groups] users: bad gid '99999999999999999999'" },
                /* The peer limits have floors: none can be set to nothing. */
                { "[daemon]\nmax_connections_per_uid=0\n",
                  "dkmd.conf:2: [daemon] max_connections_per_uid: must be a whole number from 1 to 256, got '0'" },
                { "[daemon]\nmax_connections_per_uid=257\n",
                  "[daemon] max_connections_per_uid: must be a whole number from 1 to 256" },
                { "[daemon]\nread_timeout=0s\n", "dkmd.conf:2: [daemon] read_timeout:" },
                { "[daemon]\nread_timeout=1h\n", "dkmd.conf:2: [daemon] read_timeout:" },
                { "[daemon]\nidle_timeout=0s\n", "dkmd.conf:2: [daemon] idle_timeout:" },
                { "[daemon]\nstream_timeout=500ms\n", "dkmd.conf:2: [daemon] stream_timeout:" },
                { "[daemon]\nstream_timeout=2h\n", "dkmd.conf:2: [daemon] stream_timeout:" },
                { "[daemon]\nstream_threads=0\n",
                  "dkmd.conf:2: [daemon] stream_threads: expected auto or a whole number from 1 to 64, got '0'" },
                { "[daemon]\nstream_threads=65\n",
                  "dkmd.conf:2: [daemon] stream_threads: expected auto or a whole number from 1 to 64, got '65'" },
                { "[daemon]\nstream_threads=Auto\n", "dkmd.conf:2: [daemon] stream_threads: expected auto" },
                { "[daemon]\nstream_threads=-1\n", "dkmd.conf:2: [daemon] stream_threads: expected auto" },
                { "[rotation]\nmax_age=1x\n",
                  "dkmd.conf:2: [rotation] max_age: bad duration '1x' (examples: 50ms, 30s, 8h, "
                  "1h30m, 30d)" },
                { "[rotation]\nmax_age=30\n", "dkmd.conf:2: [rotation] max_age: bad duration '30'" },
                { "[rotation]\nmax_age=-5m\n", "dkmd.conf:2: [rotation] max_age: bad duration '-5m'" },
                { "[rotation]\nmax_age=0s\n",
                  "dkmd.conf:2: [rotation] max_age: duration '0s' out of range (1s to 3650d)" },
                { "[rotation]\nmax_age=99999999999999999999d\n",
                  "dkmd.conf:2: [rotation] max_age: duration '99999999999999999999d' out of range" },
                { "[rotation]\nmax_uses=0\n",
                  "dkmd.conf:2: [rotation] max_uses: must be a whole number from 1 to 4294967296, "
                  "got '0'" },
                { "[rotation]\nmax_uses=4294967297\n",
                  "dkmd.conf:2: [rotation] max_uses: must be a whole number from 1 to 4294967296, "
                  "got '4294967297'" },
                { "[rotation]\nmax_uses=1e9\n", "[rotation] max_uses: must be a whole number" },
                /* One share alone must never be the key. */
                { "[recovery]\nthreshold=1\n",
                  "dkmd.conf:2: [recovery] threshold: must be a whole number from 2 to 16, got '1' "
                  "(with threshold=1 any single share would be the master key itself)" },
                { "[recovery]\nshares=1\nthreshold=1\n",
                  "dkmd.conf:2: [recovery] shares: must be a whole number from 2 to 16, got '1'" },
                { "[recovery]\nshares=17\n",
                  "dkmd.conf:2: [recovery] shares: must be a whole number from 2 to 16, got '17'" },
                { "[recovery]\nthreshold=0\n", "[recovery] threshold: must be a whole number from 2 to 16" },
                { GROUPS "[recovery]\nshares=3\nthreshold=4\n",
                  "[recovery] threshold=4 is more than shares=3: the shares could never rebuild the master key" },
                { "[access]\napprovals_required=0\n",
                  "dkmd.conf:2: [access] approvals_required: must be a whole number from 1 to 32, "
                  "got '0'" },
                { "[access]\napprovals_required=-1\n",
                  "dkmd.conf:2: [access] approvals_required: must be a whole number from 1 to 32, "
                  "got '-1'" },
                /* A request holds 32 approvals: 33 could never be met. */
                { "[access]\napprovals_required=33\n",
                  "dkmd.conf:2: [access] approvals_required: must be a whole number from 1 to 32, "
                  "got '33' (a request records no more approvals than that, so more could never be met)" },
                { "[access]\napprovals_required=two\n", "got 'two'" },
                { "[access]\nmax_duration=999999h\n",
                  "dkmd.conf:2: [access] max_duration: duration '999999h' out of range (1s to 365d)" },
                { "[access]\nrequest_ttl=0s\n", "[access] request_ttl: duration '0s' out of range" },
                { "[policy]\nmax_policies=51\n",
                  "dkmd.conf:2: [policy] max_policies: must be a whole number from 1 to 50, got '51'" },
                { "[policy]\nhedge_delay=2m\n",
                  "dkmd.conf:2: [policy] hedge_delay: duration '2m' out of range (0s to 1m)" },
                { "[policy]\ncache_ttl=500ms\n",
                  "dkmd.conf:2: [policy] cache_ttl: duration '500ms' out of range (1s to 365d)" },
                { "[store]\nbackend=mysql\n",
                  "dkmd.conf:2: [store] backend: expected sqlite or etcd, got 'mysql'" },
                { GROUPS "[store]\nbackend=etcd\n",
                  "dkmd.conf: [store] endpoints: required with backend=etcd" },
                { GROUPS "[store]\nbackend=etcd\nendpoints=http://e:2379\ncert=/c.pem\n",
                  "dkmd.conf: [store] cert, key: give both or neither" },
                { GROUPS "[store]\nendpoints=http://e:2379\n",
                  "dkmd.conf: [store] endpoints, cacert, cert, key, prefix: only for backend=etcd" },
                { GROUPS "[store]\nbackend=etcd\nendpoints=http://e:2379\nprefix=dkm/\n",
                  "dkmd.conf: [store] prefix: an absolute key prefix ending in '/' (e.g. /dkm/)" },
                { "[store]\nnode_name=-a\n",
                  "dkmd.conf:2: [store] node_name: bad node name '-a' (1-63 of A-Z a-z 0-9 . _ -, "
                  "starting with a letter or digit)" },
                { "[store]\nnode_name=a/b\n", "dkmd.conf:2: [store] node_name: bad node name 'a/b'" },
                { "[store]\nnode_name=a b\n", "dkmd.conf:2: [store] node_name: bad node name 'a b'" },
                { "[store]\nnode_name=\xc3\xa9\n", "dkmd.conf:2: [store] node_name: bad node name '?" "?'" },
                { "[store]\nnode_name=\n", "dkmd.conf:2: [store] node_name: empty value" },
                { "[store]\nnode_name=a1234567890123456789012345678901234567890123456789012345678901xy\n",
                  "dkmd.conf:2: [store] node_name: bad node name" },
                { "[store]\nnode_ttl=1s\n",
                  "dkmd.conf:2: [store] node_ttl: duration '1s' out of range (2s to 1h)" },
                { "[store]\nnode_ttl=2h\n", "[store] node_ttl: duration '2h' out of range" },
                { GROUPS "[store]\nnode_ttl=5s\n", "dkmd.conf: [store] node_ttl: only for backend=etcd" },
                { "[store]\ncert=c.pem\n",
                  "dkmd.conf:2: [store] cert: must be an absolute path, got 'c.pem'" },
                { "[audit]\nfail_closed=maybe\n",
                  "dkmd.conf:2: [audit] fail_closed: expected yes or no, got 'maybe'" },
                { "[daemon]\nsocket=/a\n  state_dir=/b\n",
                  "dkmd.conf:3: indented line: keys must start at the beginning of the line" },
                { "[daemon]\n\tsocket=/a\n",
                  "dkmd.conf:2: indented line: keys must start at the beginning of the line" },
                { "[daemon]\njunk\n",
                  "dkmd.conf:2: syntax error: expected [section], key = value, or a comment" },
                { "[daemon\n", "dkmd.conf:1: syntax error" },
                { "[daemon] socket=/x\n", "dkmd.conf:1: text after the section name" },
                /* the first error wins, also inih's own over a later one of ours */
                { "[daemon]\njunk\nsocket=rel\n", "dkmd.conf:2: syntax error" },
                { "[daemon]\nsocket=rel\njunk\n", "dkmd.conf:2: [daemon] socket: must be an absolute" },
                { "[daemon]\nengine=gpu\n[demon]\n", "dkmd.conf:2: [daemon] engine" },
        };
        struct dkm_config c;
        char err[512];

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int r;

                err[0] = 'X';
                r = parse(cases[i].text, &c, err, sizeof(err));
                if (r != -EINVAL || !strstr(err, cases[i].err))
                        fail_msg("case %zu: r=%d\n  got:  %s\n  want: %s", i, r, err, cases[i].err);
                /* one line, starting with the file name */
                if (strchr(err, '\n') || strncmp(err, "dkmd.conf", 9) != 0)
                        fail_msg("case %zu: bad message shape: %s", i, err);
        }
}

static void test_ckey_lists(void **state)
{
        static const struct {
                const char *text, *err;
        } bad[] = {
                { "[policy]\nkey_dirs=/\n", "[policy] key_dirs: '/' would allow every file" },
                { "[policy]\nkey_dirs=//\n", "'/' would allow every file" },
                { "[policy]\nkey_dirs=/etc/dkm/keys keys\n", "'keys' must be an absolute path" },
                { "[policy]\nkey_dirs=/etc/dkm/../..\n", "without '.' or '..' components" },
                { "[policy]\nkey_dirs=/etc/./dkm\n", "without '.' or '..' components" },
                { "[policy]\nkey_dirs=/var/lib\n", "'/var/lib' holds [daemon] state_dir" },
                { "[daemon]\nstate_dir=/srv/dkm\n[policy]\nkey_dirs=/srv/dkm\n", "holds [daemon] state_dir" },
                { "[daemon]\nmaster_key=/etc/dkm/master.key\n[policy]\nkey_dirs=/etc/dkm\n",
                  "'/etc/dkm' holds the master key" },
                { "[policy]\npkcs11_modules=/usr/lib/x/../evil.so\n", "without '.' or '..' components" },
                { "[policy]\npkcs11_modules=/usr/lib/softhsm/\n", "names a directory, not a module" },
                { "[policy]\npkcs11_modules=lib/x.so\n", "neither an absolute module path nor a p11-kit module name" },
                { "[policy]\npkcs11_modules=-x\n", "neither an absolute module path" },
                { "[policy]\nkey_dirs=/a\nkey_dirs=/b\n", "duplicate key" },
        };
        struct dkm_config c;
        char err[256];

        (void)state;
        assert_int_equal(parse(GROUPS "[policy]\npkcs11_modules=/usr/lib/softhsm/libsofthsm2.so, customer-a\t"
                               "p11-kit-client\nkey_dirs=/etc/dkm/keys/ /srv/keys,/mnt/customer\n",
                               &c, err, sizeof(err)), 0);
        assert_string_equal(c.pkcs11_modules[0], "/usr/lib/softhsm/libsofthsm2.so");
        assert_string_equal(c.pkcs11_modules[1], "customer-a");
        assert_string_equal(c.pkcs11_modules[2], "p11-kit-client");
        assert_null(c.pkcs11_modules[3]);
        assert_string_equal(c.key_dirs[0], "/etc/dkm/keys"); /* no trailing '/' */
        assert_string_equal(c.key_dirs[1], "/srv/keys");
        assert_string_equal(c.key_dirs[2], "/mnt/customer");
        assert_null(c.key_dirs[3]);
        config_free(&c);
        /* Empty: nothing allowed, as by default. */
        assert_int_equal(parse(GROUPS "[policy]\npkcs11_modules=\nkey_dirs=\n", &c, err, sizeof(err)), 0);
        assert_null(c.pkcs11_modules[0]);
        assert_null(c.key_dirs[0]);
        config_free(&c);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char text[512];
                int r;

                snprintf(text, sizeof(text), GROUPS "%s", bad[i].text);
                r = parse(text, &c, err, sizeof(err));
                if (r != -EINVAL || !strstr(err, bad[i].err))
                        fail_msg("case %zu: r=%d\n  got:  %s\n  want: %s", i, r, err, bad[i].err);
        }
}

/* The largest approvals_required that config accepts is the number of
 * approvals a request can record (grants.h), so every accepted value can be
 * met; one more is refused (test_errors). */
static void test_approvals_limit(void **state)
{
        struct dkm_config c;
        char err[256];

        (void)state;
        assert_int_equal(parse(GROUPS "[access]\napprovals_required=32\n", &c, err, sizeof(err)), 0);
        assert_int_equal(c.approvals_required, 32);
        assert_int_equal(CONFIG_APPROVALS_MAX, 32);
        config_free(&c);
}

/* stream_threads: auto, or 1..64; auto is the default and may be said. */
static void test_stream_threads(void **state)
{
        struct dkm_config c;
        char err[256];

        (void)state;
        assert_int_equal(parse(GROUPS "[daemon]\nstream_threads=1\n", &c, err, sizeof(err)), 0);
        assert_int_equal(c.stream_threads, 1);
        config_free(&c);
        assert_int_equal(parse(GROUPS "[daemon]\nstream_threads=auto\n", &c, err, sizeof(err)), 0);
        assert_int_equal(c.stream_threads, CONFIG_STREAM_THREADS_AUTO);
        config_free(&c);
}

static void test_node_name(void **state)
{
        static const char name63[] = "a12345678901234567890123456789012345678901234567890123456789012";
        char text[256], err[256];
        struct dkm_config c;

        (void)state;
        assert_int_equal(strlen(name63), DKM_NODE_NAME_MAX);
        /* Any backend: status names this node; 63 bytes fit. */
        snprintf(text, sizeof(text), GROUPS "[store]\nnode_name=%s\n", name63);
        assert_int_equal(parse(text, &c, err, sizeof(err)), 0);
        assert_string_equal(c.node_name, name63);
        config_free(&c);
        assert_true(config_node_name_valid("9x"));
        assert_true(config_node_name_valid("Node_1.a-b"));
        assert_false(config_node_name_valid(NULL));
        assert_false(config_node_name_valid(""));
        assert_false(config_node_name_valid(".a"));
        assert_false(config_node_name_valid("_a"));
        assert_false(config_node_name_valid("a:b"));
        assert_false(config_node_name_valid("a\n"));
}

static void test_long_line(void **state)
{
        char text[1024], err[256];
        struct dkm_config c;
        int n;

        (void)state;
        /* inih's buffer is 200 bytes: 197 characters fit, 198 do not. */
        n = snprintf(text, sizeof(text), GROUPS "[daemon]\nsocket=/");
        memset(text + n, 'a', 197 - 8);
        strcpy(text + n + 197 - 8, "\n");
        assert_int_equal(parse(text, &c, err, sizeof(err)), -EINVAL);
        /* 197 characters: parsed, and refused for its length, not split */
        assert_non_null(strstr(err, "dkmd.conf:6: [daemon] socket: path too long for a socket"));

        n = snprintf(text, sizeof(text), GROUPS "[daemon]\nstate_dir=/");
        memset(text + n, 'a', 198 - 11);
        strcpy(text + n + 198 - 11, "\n");
        assert_int_equal(parse(text, &c, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "dkmd.conf:6: line too long (more than 197 characters)");

        /* and a long line as the last one, without a newline */
        n = snprintf(text, sizeof(text), GROUPS "[daemon]\nstate_dir=/");
        memset(text + n, 'a', 600);
        text[n + 600] = '\0';
        assert_int_equal(parse(text, &c, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "dkmd.conf:6: line too long (more than 197 characters)");

        /* 197 characters of state_dir: accepted */
        n = snprintf(text, sizeof(text), GROUPS "[daemon]\nstate_dir=/");
        memset(text + n, 'a', 197 - 11);
        strcpy(text + n + 197 - 11, "\n");
        assert_int_equal(parse(text, &c, err, sizeof(err)), 0);
        assert_int_equal(strlen(c.state_dir), 197 - 10);
        config_free(&c);
}

static void test_untouched_on_error(void **state)
{
        struct dkm_config c, before;
        char small[12];

        (void)state;
        memset(&c, 0xAB, sizeof(c));
        before = c;
        assert_int_equal(parse("[daemon]\nengine=gpu\n", &c, small, sizeof(small)), -EINVAL);
        assert_memory_equal(&c, &before, sizeof(c));
        /* a short buffer gets a truncated, terminated message */
        assert_string_equal(small, "dkmd.conf:2");
        /* no buffer at all is fine too */
        assert_int_equal(parse("[daemon]\nengine=gpu\n", &c, NULL, 0), -EINVAL);
        assert_int_equal(config_parse_string(NULL, "x", &c, NULL, 0), -EINVAL);
}

static void write_file(const char *path, const void *data, size_t len)
{
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
}

static void test_load(void **state)
{
        char dir[] = "/tmp/test-config-XXXXXX", path[128], err[512], want[256];
        static const char nul[] = GROUPS "[daemon]\nsocket=/x\0junk\n";
        struct dkm_config c;
        char *big;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/dkmd.conf", dir);

        write_file(path, GROUPS "[daemon]\nengine=openssl\n", strlen(GROUPS) + 24);
        assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
        assert_int_equal(c.engine, ENGINE_OPENSSL);
        config_free(&c);

        write_file(path, GROUPS "[daemon]\nengine=nope\n", strlen(GROUPS) + 21);
        assert_int_equal(config_load(path, &c, err, sizeof(err)), -EINVAL);
        snprintf(want, sizeof(want), "%s:6: [daemon] engine: expected", path);
        assert_non_null(strstr(err, want));

        write_file(path, nul, sizeof(nul) - 1);
        assert_int_equal(config_load(path, &c, err, sizeof(err)), -EINVAL);
        snprintf(want, sizeof(want), "%s:6: NUL byte in the file", path);
        assert_string_equal(err, want);

        big = calloc(1, 1024 * 1024 + 2);
        memset(big, '#', 1024 * 1024 + 1);
        write_file(path, big, 1024 * 1024 + 1);
        free(big);
        assert_int_equal(config_load(path, &c, err, sizeof(err)), -EFBIG);
        assert_non_null(strstr(err, "larger than 1 MiB"));

        assert_int_equal(config_load(dir, &c, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "not a regular file"));

        unlink(path);
        assert_int_equal(config_load(path, &c, err, sizeof(err)), -ENOENT);
        snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(ENOENT));
        assert_string_equal(err, want);
        rmdir(dir);
}

/* master_key as a systemd credential: credential:NAME, the unset default
 * that picks up $CREDENTIALS_DIRECTORY/dkm-master-key, and the messages
 * that name a missing credential. */
static void test_master_key_credential(void **state)
{
        char dir[] = "/tmp/test-config-cred-XXXXXX", path[256], err[512];
        struct dkm_config c;
        FILE *f;

        (void)state;
        assert_non_null(mkdtemp(dir));
        unsetenv("CREDENTIALS_DIRECTORY");

        /* Named, but dkmd was not started with credentials. */
        assert_int_equal(parse(GROUPS "[daemon]\nmaster_key=credential:dkm-master-key\n", &c, err,
                               sizeof(err)), 0);
        assert_string_equal(c.master_key_credential, "dkm-master-key");
        assert_null(c.master_key);
        assert_int_equal(config_master_key_error(&c, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "credential 'dkm-master-key' is missing"));
        assert_non_null(strstr(err, "CREDENTIALS_DIRECTORY"));
        config_free(&c);

        /* With the directory but without the file. */
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        assert_int_equal(parse(GROUPS "[daemon]\nmaster_key=credential:mk\n", &c, err, sizeof(err)), 0);
        snprintf(path, sizeof(path), "%s/mk", dir);
        assert_string_equal(c.master_key, path);
        assert_int_equal(config_master_key_error(&c, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "credential 'mk' is missing"));
        assert_non_null(strstr(err, "systemd-creds encrypt --name=mk"));

        /* dkmd.service's fallback, then a real 32-byte credential. */
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(DKM_MASTER_KEY_MISSING, f);
        fclose(f);
        assert_int_equal(config_master_key_error(&c, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "credential 'mk' is missing"));
        f = fopen(path, "w");
        fputs("0123456789abcdef0123456789abcdef", f);
        fclose(f);
        assert_int_equal(config_master_key_error(&c, err, sizeof(err)), 0);
        config_free(&c);

        /* Unset: the credential dkm-master-key when systemd passed it ... */
        assert_int_equal(parse(GROUPS, &c, err, sizeof(err)), 0);
        assert_null(c.master_key_credential);
        assert_string_equal(c.master_key, "/var/lib/dkm/master.key");
        config_free(&c);
        snprintf(path, sizeof(path), "%s/" DKM_MASTER_KEY_CREDENTIAL, dir);
        f = fopen(path, "w");
        fputs("0123456789abcdef0123456789abcdef", f);
        fclose(f);
        assert_int_equal(parse(GROUPS, &c, err, sizeof(err)), 0);
        assert_string_equal(c.master_key_credential, DKM_MASTER_KEY_CREDENTIAL);
        assert_string_equal(c.master_key, path);
        config_free(&c);
        /* ... and a path given in the file wins. */
        assert_int_equal(parse(GROUPS "[daemon]\nmaster_key=/etc/dkm/mk\n", &c, err, sizeof(err)), 0);
        assert_null(c.master_key_credential);
        assert_string_equal(c.master_key, "/etc/dkm/mk");
        config_free(&c);

        /* Bad names. */
        assert_int_equal(parse("[daemon]\nmaster_key=credential:\n", &c, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "dkmd.conf:2: [daemon] master_key: bad credential name in "
                                 "'credential:' (a file name of at most 255 bytes)");
        assert_int_equal(parse("[daemon]\nmaster_key=credential:a/b\n", &c, err, sizeof(err)), -EINVAL);
        assert_int_equal(parse("[daemon]\nmaster_key=credential:..\n", &c, err, sizeof(err)), -EINVAL);

        unlink(path);
        snprintf(path, sizeof(path), "%s/mk", dir);
        unlink(path);
        rmdir(dir);
        unsetenv("CREDENTIALS_DIRECTORY");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_full),
                cmocka_unit_test(test_syntax_variants),
                cmocka_unit_test(test_group_names),
                cmocka_unit_test(test_default_group_missing),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_ckey_lists),
                cmocka_unit_test(test_approvals_limit),
                cmocka_unit_test(test_stream_threads),
                cmocka_unit_test(test_node_name),
                cmocka_unit_test(test_long_line),
                cmocka_unit_test(test_untouched_on_error),
                cmocka_unit_test(test_load),
                cmocka_unit_test(test_master_key_credential),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
