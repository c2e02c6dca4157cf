#!/bin/bash
# The guest side of `make check-system`, run by root's login shell on the
# serial console of the test VM (tests/system/run.sh installs it as
# /root/dkm-system-test).  It does what README.md and dkm(7) tell an administrator,
# then what the users of each role do, first with SELinux permissive, then
# enforcing, then the bad-input cases, and last (still enforcing) dkmd as a
# fleet node on etcd, with the dkmd_connect_etcd boolean off and on.  The
# transcript goes to the
# second serial port: "ok"/"FAIL" per check, and one closing line
#   SYSTEM-RESULT PASS|FAIL <passed> <failed>
# that run.sh reads.
set -u
exec >/dev/ttyS1 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0 LC_ALL=C.UTF-8

W=/root/work
CONF=/etc/dkm/dkmd.conf
CRED=/etc/credstore.encrypted/dkm-master-key
UNITS=/usr/lib/systemd/system
SVC_DIR=/srv/svc # the service account's data
passed=0 failed=0 mode=
T0=$(date +%s)
mkdir -p "$W"
chmod 755 /root "$W" # the accounts read the ciphertexts from here

section() { echo; echo "=== $* ($(($(date +%s) - T0))s)"; }
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
# check DESC COMMAND...: the command must succeed; its output is shown on failure.
check() {
        local desc=$1 out rc
        shift
        out=$("$@" 2>&1)
        rc=$?
        if [ $rc -eq 0 ]; then
                ok "$desc"
        else
                bad "$desc (exit $rc)"
                printf '%s\n' "$out" | tail -n 15 | sed 's/^/    | /'
        fi
        return $rc
}
# show COMMAND...: the transcript shows the command and what it printed.
show() { echo "# $*"; "$@" 2>&1 | sed 's/^/  /'; }

# as_user USER COMMAND...: USER "logs in" (the process gets USER's login uid
# and a new session, as pam_loginuid would give it), then runs the command
# with USER's uid and groups, in the root shell's SELinux domain.
as_user() {
        local u=$1
        shift
        # shellcheck disable=SC2016 # expanded by the inner shell
        sh -c 'echo "$1" >/proc/self/loginuid || exit 99; shift
               exec setpriv --reuid="$0" --regid="$(id -g "$0")" --init-groups "$@"' \
                "$u" "$(id -u "$u")" "$@"
}
# decrypts USER: USER decrypts this run's ciphertext back to the plaintext.
decrypts() { as_user "$1" dkmctl decrypt --in "$W/ct.$mode" | cmp -s - "$W/plain"; }
# refused DESC WORDS USER ARGS...: the command must fail, print nothing on
# stdout and say WORDS on stderr.
refused() {
        local desc=$1 words=$2 out err rc
        shift 2
        out=$(as_user "$@" 2>"$W/err")
        rc=$?
        err=$(cat "$W/err")
        if [ $rc -ne 0 ] && [ -z "$out" ] && grep -qF -- "$words" <<<"$err"; then
                ok "$desc: $err"
        else
                bad "$desc (exit $rc, stdout '${out:0:80}', stderr '$err')"
        fi
}

mainpid() { systemctl show -p MainPID --value dkmd.service; }
status_text() { systemctl show -p StatusText --value dkmd.service; }
# journal_has SINCE PATTERN: dkmd.service logged PATTERN (grep -E) since then.
journal_has() { journalctl -u dkmd.service --no-pager -o cat --since "@$1" | grep -Eq -- "$2"; }
status_has() { status_text | grep -Eq -- "$1"; }
# The two words "MM/DD/YY HH:MM:SS" that ausearch --start takes (C locale).
ausearch_start() { LC_ALL=C date -d "@$1" '+%m/%d/%y %H:%M:%S'; }
# wait_for SECONDS COMMAND...
wait_for() {
        local n=$(($1 * 4))
        shift
        while [ $n -gt 0 ]; do
                "$@" >/dev/null 2>&1 && return 0
                sleep 0.25
                n=$((n - 1))
        done
        return 1
}
wait_active() { # UNIT: active within 60 s; failed or restarting is a failure
        local end=$(($(date +%s) + 60)) st
        while [ "$(date +%s)" -lt $end ]; do
                st=$(systemctl show -p ActiveState,SubState --value "$1" | tr '\n' ' ')
                case $st in
                "active "*) return 0 ;;
                failed* | *auto-restart*) echo "$1: $st"; return 1 ;;
                esac
                sleep 0.25
        done
        echo "$1: $st"
        return 1
}
# explain UNIT: its status and journal, when something went wrong.
explain() {
        systemctl status --no-pager --lines=0 "$1" 2>&1 | sed 's/^/    | /'
        journalctl -u "$1" --no-pager -o short-monotonic -n 25 2>&1 | cut -c1-300 | sed 's/^/    | /'
}

# --- once: what the administrator does after `make install` --------------
install_steps() {
        local g sec score
        section "installing, as dkm(7) says"
        echo "kernel $(uname -r); SELinux $(getenforce); root shell $(id -Z), auid $(cat /proc/self/loginuid)"
        check "ldconfig" ldconfig
        check "systemd-sysusers dkm.conf: user dkm and the role groups" systemd-sysusers dkm.conf
        check "systemd-tmpfiles --create dkm.conf" systemd-tmpfiles --create dkm.conf
        check "semodule -i dkm.pp" semodule -i /usr/local/share/selinux/packages/dkm.pp
        [ -e /root/debug-dontaudit ] && semodule -DB
        semodule -l | grep -w dkm | sed 's/^/  /'
        check "the dkmd_connect_etcd boolean exists and is off by default" sh -c \
                "getsebool dkmd_connect_etcd | grep -q -- '--> off'"
        check "systemctl daemon-reload" systemctl daemon-reload
        # The host key: the guest has a TPM (swtpm) for tpm_host_loss, which
        # seals its own credential; the runs before it stay as they were.
        check "the master key credential, with systemd-creds encrypt" sh -c \
                "head -c 32 /dev/urandom | systemd-creds encrypt --with-key=host --name=dkm-master-key - $CRED"
        check "restorecon of the installed files" restorecon -R /usr/local/sbin/dkmd \
                /usr/local/bin/dkmctl /etc/dkm /etc/credstore.encrypted /var/lib/dkm /run/dkm \
                "$UNITS/dkmd.service" "$UNITS/dkmd.socket"
        show ls -Z /usr/local/sbin/dkmd /usr/local/bin/dkmctl "$CRED" "$UNITS/dkmd.service"
        show ls -dZ /etc/dkm /var/lib/dkm /run/dkm
        for g in dkm-users dkm-operators dkm-approvers dkm-reviewers; do
                check "group $g exists" getent group "$g"
        done
        check "user dkm exists, in no role group" sh -c "id dkm && ! id -nG dkm | grep -q 'dkm-'"
        # root reviews grants with keyctl (sysusers puts it in dkm-reviewers),
        # and holds no role that reaches data.
        check "root is in no role group" sh -c "! id -nG root | tr ' ' '\n' | grep -qE '^dkm-(users|operators|approvers)\$'"
        check "root is a reviewer" sh -c "id -nG root | tr ' ' '\n' | grep -qx dkm-reviewers"
        # A service account, an operator, two approvers, and a human.
        useradd -M -N -s /bin/sh -G dkm-users svc
        useradd -M -N -s /bin/sh -G dkm-operators alice
        useradd -M -N -s /bin/sh -G dkm-approvers bob
        useradd -M -N -s /bin/sh -G dkm-approvers carol
        useradd -M -N -s /bin/sh dave
        for g in svc alice bob carol dave; do echo "  $(id "$g")"; done
        install -d -o svc -m 0755 "$SVC_DIR"

        section "the unit files"
        # shellcheck disable=SC2016 # expanded by sh -c
        check "systemd-analyze verify dkmd.service dkmd.socket: nothing to say" sh -c \
                'out=$(systemd-analyze verify dkmd.service dkmd.socket 2>&1); echo "$out"; [ -z "$out" ]'
        sec=$(systemd-analyze security --no-pager dkmd.service 2>&1)
        score=$(sed -n 's/.*Overall exposure level for dkmd.service: \([0-9.]*\).*/\1/p' <<<"$sec")
        echo "  what systemd-analyze security still counts against it:"
        grep '✗' <<<"$sec" | sed 's/^/  /'
        if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
                ok "systemd-analyze security dkmd.service: exposure $score (at most 2.0)"
        else
                bad "systemd-analyze security dkmd.service: exposure '$score' (want at most 2.0)"
                tail -n 3 <<<"$sec"
        fi
}

# --- the users' run, once per SELinux mode --------------------------------
run_flow() {
        mode=$1
        local t pid pid2 id ring key since want
        since=$(date +%s)
        section "[$mode] systemctl enable --now dkmd"
        check "systemctl enable --now dkmd" systemctl enable --now dkmd.service
        check "dkmd.service is active" wait_active dkmd.service || explain dkmd.service
        pid=$(mainpid)
        show systemctl status --no-pager --lines=0 dkmd.service
        check "STATUS= says it serves on the kernel engine: $(status_text)" status_has '^serving on .*engine kernel'
        check "Type=notify, WatchdogUSec=30s" sh -c \
                "systemctl show -p Type,WatchdogUSec dkmd.service | tr '\n' ' ' | grep -q 'Type=notify WatchdogUSec=30s'"
        check "dkmd runs as user dkm" test "$(ps -o user= -p "$pid")" = dkm
        check "dkmd holds CAP_AUDIT_WRITE, CAP_AUDIT_CONTROL and nothing else" sh -c \
                "grep -q '^CapEff:[[:space:]]*0000000060000000' /proc/$pid/status &&
                 grep -q '^CapBnd:[[:space:]]*0000000060000000' /proc/$pid/status"
        show ps -o label=,user=,pid=,args= -p "$pid"
        check "dkmd runs in dkmd_t" sh -c "ps -o label= -p $pid | grep -q ':dkmd_t:'"

        section "[$mode] a service account encrypts and decrypts; others are refused"
        printf 'customer secret (%s)' "$mode" >"$W/plain"
        chmod 644 "$W/plain"
        as_user svc dkmctl encrypt --in "$W/plain" >"$W/ct.$mode"
        chmod 644 "$W/ct.$mode"
        check "svc: dkmctl encrypt ($(stat -c %s "$W/ct.$mode") bytes)" test -s "$W/ct.$mode"
        check "svc: dkmctl decrypt gives the plaintext back" decrypts svc
        # Large data goes to dkmd as file descriptors (SCM_RIGHTS): a file,
        # and a pipe.
        check "svc: a 3 MiB file, streamed, encrypts and decrypts" sh -c \
                "$(declare -f as_user); cd $SVC_DIR && head -c 3M /dev/urandom >big.$mode &&
                 as_user svc dkmctl encrypt --in big.$mode --out big.$mode.ct &&
                 as_user svc dkmctl decrypt --in big.$mode.ct --out big.$mode.out && cmp big.$mode big.$mode.out"
        check "svc: the same through pipes" sh -c \
                "$(declare -f as_user); cd $SVC_DIR && cat big.$mode | as_user svc dkmctl encrypt |
                 as_user svc dkmctl decrypt | cmp - big.$mode"
        rm -f "$SVC_DIR"/big.*
        refused "dave, a human in no group, cannot decrypt" "not in the users group" \
                dave dkmctl decrypt --in "$W/ct.$mode"
        refused "root cannot decrypt either" "not in the users group" \
                root dkmctl decrypt --in "$W/ct.$mode"

        section "[$mode] systemctl reload"
        sed -i 's/^max_duration=.*/max_duration=10m/' "$CONF"
        t=$(date +%s)
        check "systemctl reload dkmd (max_duration=10m)" systemctl reload dkmd.service
        check "dkmd logs the reload" wait_for 20 journal_has "$t" 'configuration reloaded'
        check "STATUS= is back to serving" wait_for 10 status_has '^serving on'
        check "the same process serves (MainPID $pid)" test "$(mainpid)" = "$pid"
        refused "the reloaded max_duration applies" "longer than max_duration" \
                alice dkmctl access request --reason "too long now" --duration 30m
        echo 'max_duration 8h' >>"$CONF" # not key=value: a broken file
        t=$(date +%s)
        systemctl reload dkmd.service
        check "a broken config on reload is refused, with a log line" wait_for 20 \
                journal_has "$t" 'keeping the previous configuration'
        journalctl -u dkmd.service -o cat --since "@$t" | sed 's/^/  | /'
        check "still active, the same process" sh -c \
                "systemctl is-active -q dkmd.service && [ \"\$(systemctl show -p MainPID --value dkmd)\" = $pid ]"
        check "STATUS= tells of the failed reload" wait_for 10 status_has 'reload failed'
        refused "the previous configuration holds (max_duration=10m)" "longer than max_duration" \
                alice dkmctl access request --reason "still too long" --duration 30m
        sed -i '/^max_duration 8h$/d; s/^max_duration=.*/max_duration=8h/' "$CONF"
        check "systemctl reload with the configuration restored" systemctl reload dkmd.service
        check "STATUS= is back to serving" wait_for 10 status_has '^serving on'
        check "svc still decrypts" decrypts svc

        section "[$mode] systemctl restart"
        check "systemctl restart dkmd" systemctl restart dkmd.service
        pid2=$(mainpid)
        check "a new process serves (MainPID $pid -> $pid2)" test "$pid2" != "$pid" -a "$pid2" != 0
        check "svc decrypts what was encrypted before the restart" decrypts svc

        section "[$mode] socket activation"
        check "systemctl stop dkmd.service" systemctl stop dkmd.service
        check "systemctl start dkmd.socket" systemctl start dkmd.socket
        check "dkmd.service is not running" sh -c "! systemctl is-active -q dkmd.service"
        t=$(date +%s)
        check "svc: dkmctl status starts dkmd through the socket" as_user svc dkmctl status
        check "dkmd.service is active" wait_active dkmd.service
        check "dkmd took the socket from systemd" journal_has "$t" 'using the socket passed by systemd'
        check "svc decrypts through the activated socket" decrypts svc
        check "systemctl stop dkmd.service; the socket stays" systemctl stop dkmd.service
        check "the next connection starts dkmd again" decrypts svc
        check "back to a plain start: stop both, start dkmd.service" sh -c \
                "systemctl stop dkmd.socket dkmd.service && systemctl start dkmd.service"
        check "svc decrypts on the plain start" decrypts svc

        section "[$mode] elevated access"
        refused "alice (operator) cannot decrypt without a live grant" "permission denied" \
                alice dkmctl decrypt --in "$W/ct.$mode"
        id=$(as_user alice dkmctl access request --reason "ticket 4711 ($mode)" --duration 30m --policy default)
        check "alice requests access for 30m: request $id" test -n "$id"
        check "bob approves" as_user bob dkmctl access approve "$id"
        refused "bob cannot approve twice" "already approved" bob dkmctl access approve "$id"
        refused "alice cannot approve (not an approver)" "not in the approvers group" \
                alice dkmctl access approve "$id"
        check "carol approves: $(as_user carol dkmctl access approve "$id" 2>&1)" \
                wait_for 5 sh -c "$(declare -f as_user); as_user bob dkmctl access list | grep -w '^ *$id' | grep -q live"
        check "alice decrypts under the grant" decrypts alice
        # Root manages grants as a member of dkm-reviewers (sysusers.d), which
        # this shell predates: as a fresh login would, take the groups anew.
        rk() { setpriv --reuid 0 --init-groups keyctl "$@"; }
        ring=$(dkmctl status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
        show rk show "$ring"
        show setpriv --reuid 0 --init-groups sh -c "grep dkm:grant /proc/keys"
        key=$(rk search "$ring" user "dkm:grant:$id" 2>/dev/null)
        check "root (in dkm-reviewers) finds the grant with keyctl search: key $key" test -n "$key"
        check "keyctl print shows the grant" sh -c "$(declare -f rk); rk print $key | grep 'grant=$id'"
        check "keyctl revoke $key" rk revoke "$key"
        refused "after keyctl revoke alice is refused" "revoked" alice dkmctl decrypt --in "$W/ct.$mode"
        check "access list shows the grant revoked" wait_for 10 sh -c \
                "$(declare -f as_user); as_user bob dkmctl access list | grep -w '^ *$id' | grep -q revoked"

        section "[$mode] the audit trail: ausearch -i"
        # auditd writes asynchronously: wait for the revocation's record.
        # shellcheck disable=SC2046 # ausearch_start prints two words
        wait_for 15 sh -c "ausearch -m USER_ACCT -i --start $(ausearch_start "$since") | grep -q 'op=grant-revoke'"
        # shellcheck disable=SC2046
        ausearch -m USER_ACCT,CRYPTO_KEY_USER -i --start $(ausearch_start "$since") >"$W/audit.$mode" 2>/dev/null
        echo "  $(grep -c '^type=' "$W/audit.$mode") records since the $mode run began"
        for want in "op=master-key-load" \
                "op=access-request .*oauid=alice" \
                "op=access-approve .*oauid=bob" \
                "op=access-approve .*oauid=carol" \
                "op=grant-create " \
                "op=grant-use .*oauid=alice" \
                "op=grant-revoke .*source=keyctl" \
                "oauid=dave .*res=failed" \
                "oauid=root .*res=failed"; do
                if grep -Eq -- "$want" "$W/audit.$mode"; then
                        ok "ausearch -i shows $want"
                else
                        bad "ausearch -i lacks $want"
                fi
        done
        grep -E 'op=(grant-use|grant-revoke)|oauid=dave' "$W/audit.$mode" | tail -n 3 | cut -c1-600 | sed 's/^/  /'

}

# With WatchdogSec=4s, dkmd must feed the watchdog every 2 s: it lives on,
# and the time of the last keep-alive moves.  A stepped-back wall clock does
# not stall it; a stuck accept loop (frozen with /root/freeze-thread) does,
# and systemd restarts dkmd.
nrestarts() { systemctl show -p NRestarts --value dkmd.service; }
# restarted PID N: a new dkmd runs, and NRestarts grew past N.
restarted() {
        local p
        p=$(mainpid)
        [ "$p" != 0 ] && [ "$p" != "$1" ] && [ "$(nrestarts)" -gt "$2" ] &&
                systemctl is-active -q dkmd.service
}
watchdog_test() {
        local d=/run/systemd/system/dkmd.service.d w1 w2 pid n0 t fpid
        section "watchdog"
        mkdir -p "$d"
        printf '[Service]\nWatchdogSec=4s\n' >"$d/watchdog.conf"
        systemctl daemon-reload
        check "restart with WatchdogSec=4s" sh -c "systemctl restart dkmd.service && systemctl is-active -q dkmd.service"
        w1=$(systemctl show -p WatchdogTimestampMonotonic --value dkmd.service)
        sleep 10
        w2=$(systemctl show -p WatchdogTimestampMonotonic --value dkmd.service)
        check "10 s later it still runs, never restarted (NRestarts=$(systemctl show -p NRestarts --value dkmd.service))" \
                sh -c "systemctl is-active -q dkmd.service && [ \"\$(systemctl show -p NRestarts --value dkmd.service)\" = 0 ]"
        check "keep-alives arrive (last one moved from $w1 to $w2)" test "${w1:-0}" -gt 0 -a "${w2:-0}" -gt "${w1:-0}"

        # The maintenance thread keeps its time on CLOCK_MONOTONIC.
        pid=$(mainpid) n0=$(nrestarts)
        date -s "@$(($(date +%s) - 60))" >/dev/null
        sleep 12
        date -s "@$(($(date +%s) + 60))" >/dev/null
        check "the wall clock stepped back 60 s: no watchdog restart (NRestarts=$(nrestarts))" \
                sh -c "[ \"\$(systemctl show -p MainPID --value dkmd.service)\" = $pid ] && [ \"\$(systemctl show -p NRestarts --value dkmd.service)\" = $n0 ]"

        # A hang: the accept loop (dkmd's main thread) stops; the other
        # threads run on.  dkmd withholds the keep-alive, systemd kills it
        # (SIGABRT) and starts it again.
        pid=$(mainpid) n0=$(nrestarts) t=$(date +%s)
        /root/freeze-thread "$pid" "$pid" 300 >"$W/freeze.out" 2>&1 &
        fpid=$!
        check "freeze-thread stops dkmd's accept loop" wait_for 30 grep -q '^frozen' "$W/freeze.out"
        check "systemd restarts the stuck dkmd (NRestarts $n0 -> $(wait_for 120 restarted "$pid" "$n0"; nrestarts))" \
                restarted "$pid" "$n0"
        kill "$fpid" 2>/dev/null
        wait "$fpid"
        show cat "$W/freeze.out"
        check "dkmd said it withheld the keep-alive" journal_has "$t" 'has not turned for [0-9]+ s: withholding the watchdog keep-alive'
        check "systemd says the watchdog timed out" journal_has "$t" 'Watchdog timeout'
        check "the new dkmd serves: svc decrypts" decrypts svc
        rm -f "$d/watchdog.conf"
        systemctl daemon-reload
        systemctl restart dkmd.service
}

avc_check() { # SINCE WHAT
        local since=$1 what=$2 all
        # shellcheck disable=SC2046 # ausearch_start prints two words
        all=$(ausearch -m AVC,USER_AVC,SELINUX_ERR,USER_SELINUX_ERR -i --start $(ausearch_start "$since") \
                2>/dev/null | grep -v '^----')
        echo "  $(grep -c 'avc:' <<<"$all") AVC records in all during $what:"
        grep -o 'avc: .*' <<<"$all" | sed 's/ pid=[0-9]*//; s/ ino=[0-9]*//' | sort | uniq -c | cut -c1-400 | sed 's/^/  /'
        if grep -Eq '\bdkm(d|ctl)?_[a-z_]*t\b' <<<"$all"; then
                bad "AVC denials for the dkm types during $what"
                grep -E '\bdkm(d|ctl)?_[a-z_]*t\b' <<<"$all" | sed 's/^/  /' | head -n 60
        else
                ok "no AVC denial for the dkm types during $what"
        fi
}

# --- bad input ------------------------------------------------------------
bad_input() {
        local t n
        section "bad input: a broken configuration"
        cp "$CONF" "$W/dkmd.conf.good"
        printf '[daemon]\nengine=fast\n' >"$CONF"
        t=$(date +%s)
        systemctl restart dkmd.service
        sleep 5
        check "the unit failed" systemctl is-failed -q dkmd.service
        show systemctl status --no-pager --lines=3 dkmd.service
        check "systemctl status shows the error, file and line" sh -c \
                "systemctl status --no-pager dkmd.service | grep -q 'dkmd.conf:2: \[daemon\] engine: expected auto, kernel or openssl'"
        check "the journal has it" journal_has "$t" 'dkmd.conf:2: \[daemon\] engine: expected auto'
        n=$(systemctl show -p NRestarts --value dkmd.service)
        check "no restart loop: NRestarts=$n, exit status 78" sh -c \
                "[ $n = 0 ] && [ \"\$(systemctl show -p ExecMainStatus --value dkmd.service)\" = 78 ]"
        cp "$W/dkmd.conf.good" "$CONF"
        systemctl reset-failed dkmd.service

        section "bad input: a missing credential"
        mv "$CRED" "$W/cred.saved"
        systemctl restart dkmd.service
        sleep 5
        check "the unit failed" systemctl is-failed -q dkmd.service
        show systemctl status --no-pager --lines=3 dkmd.service
        check "systemctl status names the credential dkm-master-key" sh -c \
                "systemctl status --no-pager dkmd.service | grep -q \"credential 'dkm-master-key' is missing\""
        n=$(systemctl show -p NRestarts --value dkmd.service)
        check "no restart loop: NRestarts=$n" test "$n" = 0
        mv "$W/cred.saved" "$CRED"
        systemctl reset-failed dkmd.service
        check "with the credential back, dkmd starts" sh -c \
                "systemctl start dkmd.service && systemctl is-active -q dkmd.service"

        section "bad input: a kernel without AF_ALG"
        systemctl stop dkmd.service
        modprobe -r algif_aead algif_skcipher algif_hash algif_rng af_alg 2>/dev/null
        echo 'install af_alg /bin/false' >/etc/modprobe.d/dkm-test-no-af-alg.conf
        if grep -q '^af_alg ' /proc/modules; then
                bad "af_alg could not be unloaded; the fallback is not tested"
        else
                check "dkmd starts without AF_ALG" sh -c \
                        "systemctl start dkmd.service && systemctl is-active -q dkmd.service"
                check "STATUS= says openssl, and why: $(status_text)" status_has 'engine openssl.*kernel'
                check "svc decrypts on the openssl engine" decrypts svc
        fi
        rm -f /etc/modprobe.d/dkm-test-no-af-alg.conf
        check "with AF_ALG back, dkmd serves on the kernel engine again" sh -c \
                "systemctl restart dkmd.service && systemctl show -p StatusText --value dkmd.service | grep -q 'engine kernel'"
}

# --- a fleet node on etcd, enforcing --------------------------------------
# One etcd member on loopback, started here (etcd's Debian unit is masked in
# the root), reached as dkm(7)'s example reaches its members: https, a
# client certificate, a host name (/etc/hosts).  dkmd is switched to [store]
# backend=etcd with dkm(7)'s drop-in.  With the dkmd_connect_etcd boolean
# off, SELinux keeps dkmd_t from etcd: dkmd does not start and says why;
# with it on, dkmd serves from etcd.  run.sh made the certificates.
ETCD_NAME=etcd1.dkm.test
ETCD_URL=https://$ETCD_NAME:2379
ETCD_TLS=/root/etcd-tls
ETCD_PREFIX=/dkm/system-test/
FLEET_DROPIN=/etc/systemd/system/dkmd.service.d/fleet.conf
etcd_ctl() {
        ETCDCTL_API=3 etcdctl --endpoints "$ETCD_URL" --cacert "$ETCD_TLS/ca.pem" \
                --cert "$ETCD_TLS/client.pem" --key "$ETCD_TLS/client.key" \
                --dial-timeout 2s --command-timeout 10s "$@"
}
# store_field FIELD: a field of dkmctl status --json's store_state, as svc.
store_field() {
        as_user svc dkmctl status --json | tr -d ' \n' |
                sed -n "s/.*\"store_state\":{[^}]*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
store_field_is() { [ "$(store_field "$1")" = "$2" ]; }
# etcd_has_gen N: etcd holds generation N of a policy under the prefix.
etcd_has_gen() {
        etcd_ctl get "$ETCD_PREFIX" --prefix --keys-only | grep -E "^${ETCD_PREFIX}policies/[^/]+/gens/0*$1\$" >/dev/null
}
# etcd_has_node: this node is registered under the prefix.
etcd_has_node() { etcd_ctl get "${ETCD_PREFIX}nodes/dkm-test" --keys-only | grep -Fx "${ETCD_PREFIX}nodes/dkm-test" >/dev/null; }
decrypts_etcd() { as_user svc dkmctl decrypt --in "$W/ct.etcd" | cmp -s - "$W/plain.etcd"; }
# store_failures: how often dkmd has logged that it cannot open the etcd
# store; more_store_failures N: more than N times (a start-up since N was
# taken failed so, even within the same second).
store_failures() {
        journalctl -u dkmd.service --no-pager -o cat | grep -cF "cannot open the etcd store at $ETCD_URL (prefix $ETCD_PREFIX)"
}
more_store_failures() { [ "$(store_failures)" -gt "$1" ]; }

fleet_on_etcd() {
        local t t_on n avc gen g st
        section "fleet node on etcd (enforcing): one etcd member on $ETCD_URL"
        check "etcd's own Debian unit is masked" test "$(systemctl is-enabled etcd.service 2>&1)" = masked
        # minbase has no /etc/hosts.
        printf '127.0.0.1\tlocalhost\n127.0.0.1\t%s\n' "$ETCD_NAME" >>/etc/hosts
        restorecon /etc/hosts
        check "$ETCD_NAME resolves to 127.0.0.1: $(getent hosts "$ETCD_NAME")" \
                test "$(getent hosts "$ETCD_NAME" | awk '{ print $1 }')" = 127.0.0.1
        check "systemd-run: etcd on https, client certificates required, data in /run" \
                systemd-run --unit=dkm-test-etcd --collect \
                etcd --name dkm-test --data-dir /run/dkm-test-etcd \
                --cert-file "$ETCD_TLS/server.pem" --key-file "$ETCD_TLS/server.key" \
                --trusted-ca-file "$ETCD_TLS/ca.pem" --client-cert-auth \
                --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls "$ETCD_URL" \
                --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
                --initial-cluster dkm-test=http://127.0.0.1:2380 --initial-cluster-state new \
                --experimental-watch-progress-notify-interval 5s --enable-pprof=false
        if ! check "etcd answers (etcdctl endpoint health)" wait_for 90 etcd_ctl endpoint health; then
                explain dkm-test-etcd.service
                return
        fi
        show ps -o label=,user=,pid=,args= -C etcd

        section "[fleet] [store] backend=etcd, dkm(7)'s drop-in; dkmd_connect_etcd off"
        cp "$CONF" "$W/dkmd.conf.sqlite"
        install -m 0644 "$ETCD_TLS/ca.pem" /etc/dkm/etcd-ca.pem
        install -m 0640 -g dkm "$ETCD_TLS/client.pem" /etc/dkm/etcd.pem
        install -m 0640 -g dkm "$ETCD_TLS/client.key" /etc/dkm/etcd.key
        restorecon -R /etc/dkm
        show ls -Z /etc/dkm
        printf '\n[store]\nbackend=etcd\nendpoints=%s\ncacert=%s\ncert=%s\nkey=%s\nprefix=%s\nnode_name=dkm-test\nnode_ttl=10s\n' \
                "$ETCD_URL" /etc/dkm/etcd-ca.pem /etc/dkm/etcd.pem /etc/dkm/etcd.key "$ETCD_PREFIX" >>"$CONF"
        sed -n '/^\[store\]/,$p' "$CONF" | sed 's/^/  /'
        mkdir -p "$(dirname "$FLEET_DROPIN")"
        printf '[Service]\nRestrictAddressFamilies=AF_UNIX AF_ALG AF_NETLINK AF_INET AF_INET6\nIPAddressAllow=127.0.0.1\n' \
                >"$FLEET_DROPIN"
        sed 's/^/  /' "$FLEET_DROPIN"
        systemctl stop dkmd.service dkmd.socket
        systemctl daemon-reload
        check "the boolean dkmd_connect_etcd is off" sh -c "getsebool dkmd_connect_etcd | grep -q -- '--> off'"
        t=$(date +%s)
        n=$(store_failures)
        systemctl start dkmd.service 2>/dev/null
        check "dkmd says it cannot reach etcd" wait_for 30 more_store_failures "$n"
        journalctl -u dkmd.service -o cat --since "@$t" | grep -m1 'cannot open the etcd store' | sed 's/^/  | /'
        check "it says this host refused the connection (Permission denied), not the network" sh -c \
                "journalctl -u dkmd.service -o cat --since @$t | grep -F 'cannot open the etcd store' | grep -q ': Permission denied\$'"
        st=$(systemctl show -p ActiveState,SubState --value dkmd.service | tr '\n' ' ')
        check "dkmd.service does not come up: $st" sh -c "! systemctl is-active -q dkmd.service"
        check "meanwhile etcd itself answers" etcd_ctl endpoint health
        # The denial is SELinux's: an AVC for dkmd_t on a TCP socket.
        # shellcheck disable=SC2046 # ausearch_start prints two words
        check "ausearch shows SELinux denying dkmd_t name_connect to etcd's port" wait_for 20 sh -c \
                "ausearch -m AVC -i --start $(ausearch_start "$t") 2>/dev/null | grep -E 'avc: +denied +\\{ name_connect \\} .* dest=2379 scontext=system_u:system_r:dkmd_t:s0 tcontext=system_u:object_r:unreserved_port_t:s0 tclass=tcp_socket permissive=0' >/dev/null"
        # shellcheck disable=SC2046
        avc=$(ausearch -m AVC -i --start $(ausearch_start "$t") 2>/dev/null | grep -o 'avc: .*tclass=tcp_socket.*' |
                sed 's/ pid=[0-9]*//' | sort | uniq -c)
        printf '%s\n' "$avc" | cut -c1-300 | sed 's/^/  /'
        systemctl stop dkmd.service
        systemctl reset-failed dkmd.service 2>/dev/null
        sleep 1 # ausearch --start counts whole seconds: these denials stay out of what follows

        section "[fleet] setsebool dkmd_connect_etcd on"
        check "setsebool dkmd_connect_etcd on" setsebool dkmd_connect_etcd on
        show getsebool dkmd_connect_etcd
        # The boolean alone does not do: the unit's own fence (no AF_INET,
        # IPAddressDeny=any) holds until the drop-in lifts it.
        mv "$FLEET_DROPIN" "$W/fleet.conf"
        systemctl daemon-reload
        t=$(date +%s)
        n=$(store_failures)
        systemctl start dkmd.service 2>/dev/null
        check "without the drop-in dkmd still cannot reach etcd" wait_for 30 more_store_failures "$n"
        journalctl -u dkmd.service -o cat --since "@$t" | grep -m1 'cannot open the etcd store' | sed 's/^/  | /'
        check "dkmd.service does not come up" sh -c "! systemctl is-active -q dkmd.service"
        systemctl stop dkmd.service
        systemctl reset-failed dkmd.service 2>/dev/null
        avc_check "$t" "the start without the drop-in (systemd refuses, not SELinux)"
        mv "$W/fleet.conf" "$FLEET_DROPIN"
        systemctl daemon-reload
        # A new prefix: a plain start refuses an empty one.
        check "dkmd --init on the fleet's new prefix" setpriv --reuid=dkm --regid=dkm --clear-groups -- /usr/local/sbin/dkmd --config "$CONF" --init
        t_on=$(date +%s)
        check "systemctl start dkmd (etcd, with the drop-in)" systemctl start dkmd.service
        check "dkmd.service is active" wait_active dkmd.service || explain dkmd.service
        check "STATUS= says it serves: $(status_text)" status_has '^serving on'
        check "dkmd logs its store: etcd at $ETCD_URL" journal_has "$t_on" "store: etcd at $ETCD_URL, prefix $ETCD_PREFIX"
        check "status: backend etcd" store_field_is backend etcd
        check "status: the watch is streaming" wait_for 30 store_field_is watch streaming
        show as_user svc dkmctl status
        check "etcd lists the node (${ETCD_PREFIX}nodes/dkm-test)" etcd_has_node
        printf 'customer secret (fleet)' >"$W/plain.etcd"
        chmod 644 "$W/plain.etcd"
        as_user svc dkmctl encrypt --in "$W/plain.etcd" >"$W/ct.etcd"
        chmod 644 "$W/ct.etcd"
        check "svc: dkmctl encrypt on etcd ($(stat -c %s "$W/ct.etcd") bytes)" test -s "$W/ct.etcd"
        check "svc: dkmctl decrypt gives the plaintext back" decrypts_etcd
        # A rotation less than a second after the last activation reports
        # the generation in force (dkm(7), Fleet on etcd): wait that second out.
        gen=$(as_user svc dkmctl status --json | sed -n 's/.*"active_generation": \([0-9]*\).*/\1/p' | head -n1)
        sleep 1.1
        g=$(as_user alice dkmctl key rotate 2>&1)
        echo "  alice: dkmctl key rotate: $g"
        g=$(sed -n 's/^generation \([0-9]*\) is now active$/\1/p' <<<"$g")
        check "alice rotates: generation ${gen:-?} -> ${g:-?}" test -n "$g" -a -n "$gen" -a "${g:-0}" -gt "${gen:-0}"
        check "etcd holds generation $g (etcdctl get --prefix $ETCD_PREFIX)" etcd_has_gen "${g:-none}"
        etcd_ctl get "$ETCD_PREFIX" --prefix --keys-only | grep . | sed 's/^/  /'
        check "svc still decrypts after the rotation" decrypts_etcd
        avc_check "$t_on" "the fleet node on etcd"

        section "[fleet] back to SQLite"
        systemctl stop dkmd.service
        rm -f "$FLEET_DROPIN"
        cp "$W/dkmd.conf.sqlite" "$CONF"
        setsebool dkmd_connect_etcd off
        systemctl daemon-reload
        check "dkmd on SQLite again" sh -c "systemctl start dkmd.service && systemctl is-active -q dkmd.service"
        check "svc decrypts the enforcing run's ciphertext there" decrypts svc
        systemctl stop dkm-test-etcd.service
}

# The whole host lost, as issue 12 asks: dkm(7)'s install path with a TPM
# (QEMU's TPM, backed by swtpm on the host), the TPM wiped as a new
# motherboard would have it, and the key recovered from 3 of the 5 shares
# into a credential for the new TPM. Permissive: what matters here is the
# key's custody; the AVCs it raises are shown.
tpm_host_loss() {
        local start sh=/var/lib/dkm/recovery
        section "whole-host loss: the master key sealed to a TPM, recovered from shares"
        if ! check "the guest has a TPM (/dev/tpmrm0, swtpm on the host)" test -c /dev/tpmrm0; then
                return
        fi
        start=$(date +%s)
        setenforce 0
        systemctl stop dkmd.service
        mv /var/lib/dkm /var/lib/dkm.before-tpm
        systemd-tmpfiles --create dkm.conf
        restorecon -R /var/lib/dkm
        # dkm(7)'s install path, as printed.
        check "dkm(7): init.conf, as user dkm" setpriv --reuid=dkm --regid=dkm --clear-groups -- sh -c \
                'umask 077; sed "s|^master_key=.*|master_key=/var/lib/dkm/master.key.init|" /etc/dkm/dkmd.conf > /var/lib/dkm/init.conf'
        check "dkm(7): dkmd --init --recovery-dir splits the new key into 5 shares" \
                setpriv --reuid=dkm --regid=dkm --clear-groups -- \
                /usr/local/sbin/dkmd --config /var/lib/dkm/init.conf --init --recovery-dir "$sh"
        show ls -l "$sh"
        check "dkm(7): systemd-creds encrypt seals the key to the TPM" systemd-creds encrypt --with-key=tpm2 \
                --name=dkm-master-key /var/lib/dkm/master.key.init "$CRED"
        check "dkm(7): the plain copy is shredded" shred -u /var/lib/dkm/master.key.init /var/lib/dkm/init.conf
        mkdir -p "$W/shares"
        mv "$sh"/recovery-share-* "$W/shares/"
        check "dkm(7): the shares leave the host (none left in $sh)" sh -c "! ls $sh/recovery-share-* 2>/dev/null"
        check "dkmd starts with the TPM-sealed key" sh -c "systemctl start dkmd.service && systemctl is-active -q dkmd.service"
        head -c 3000 /dev/urandom > "$W/tpm.plain"
        chmod 644 "$W/tpm.plain"
        check "svc encrypts" sh -c "setpriv --reuid=svc --regid=\$(id -g svc) --init-groups dkmctl encrypt --in $W/tpm.plain > $W/tpm.ct"
        check "and decrypts" sh -c "setpriv --reuid=svc --regid=\$(id -g svc) --init-groups dkmctl decrypt --in $W/tpm.ct | cmp -s - $W/tpm.plain"
        systemctl stop dkmd.service

        # The TPM is cleared: its storage seed is new, as on another board.
        check "tpm2_clear: the TPM's storage hierarchy gets a new seed" tpm2_clear
        check "the credential no longer decrypts" sh -c "! systemd-creds decrypt $CRED - >/dev/null 2>&1"
        systemctl reset-failed dkmd.service 2>/dev/null
        systemctl start dkmd.service 2>/dev/null
        check "dkmd does not start without its key" sh -c "! systemctl is-active -q dkmd.service"
        check "and the journal says the credential cannot be used" sh -c \
                "journalctl --no-pager -o cat --since @$start | grep -Ei 'dkm-master-key|credential'"
        journalctl --no-pager -o cat --since "@$start" | grep -Ei 'dkm-master-key|credential' | tail -n 3 | cut -c1-240 | sed 's/^/  | /'
        systemctl stop dkmd.service 2>/dev/null
        systemctl reset-failed dkmd.service 2>/dev/null

        # dkm(7)'s recovery: 3 of the 5 custodians, into a new credential.
        refused_root() { ! /usr/local/sbin/dkmd --config "$CONF" --recover --recover-out - "$@" >/dev/null 2>"$W/rec.err"; }
        check "2 shares are refused" refused_root "$W/shares/recovery-share-1" "$W/shares/recovery-share-2"
        show cat "$W/rec.err"
        check "dkm(7): dkmd --recover from 3 shares, sealed to the new TPM" sh -c \
                "/usr/local/sbin/dkmd --config $CONF --recover --recover-out - $W/shares/recovery-share-1 \
                 $W/shares/recovery-share-3 $W/shares/recovery-share-5 |
                 systemd-creds encrypt --with-key=tpm2 --name=dkm-master-key - $CRED"
        check "dkmd starts with the recovered key" sh -c "systemctl start dkmd.service && systemctl is-active -q dkmd.service"
        check "svc decrypts what was encrypted before the loss" sh -c \
                "setpriv --reuid=svc --regid=\$(id -g svc) --init-groups dkmctl decrypt --in $W/tpm.ct | cmp -s - $W/tpm.plain"
        show sh -c "ausearch -m CRYPTO_KEY_USER -i --start $(ausearch_start "$start") 2>/dev/null | grep -o 'op=recovery[^ ]*' | sort | uniq -c"
        check "the recovery is audited" sh -c \
                "ausearch -m CRYPTO_KEY_USER -i --start $(ausearch_start "$start") 2>/dev/null | grep -q 'op=recovery-recover .*res=success'"
        show sh -c "ausearch -m AVC -i --start $(ausearch_start "$start") 2>/dev/null | grep -o 'avc: *denied *{[^}]*} for .*' | cut -c1-200 | sort | uniq -c | head -n 10"
}

section "dkm full-system test on $(uname -r)"
show systemctl is-system-running --wait
start=$(date +%s)
install_steps
# dkm(7)'s install path: the store is created once; a plain start never does.
# setpriv, as dkm(7) says: runuser's pam_keyinit would make dkm's user
# keyring with this shell's label, which dkmd_t may not use.
check "setpriv dkm -- dkmd --init creates the store" setpriv --reuid=dkm --regid=dkm --clear-groups -- \
        /usr/local/sbin/dkmd --config "$CONF" --init
run_flow permissive
avc_check "$start" "the permissive run"
section "setenforce 1"
check "setenforce 1" setenforce 1
show getenforce
start=$(date +%s)
systemctl stop dkmd.service
run_flow enforcing
watchdog_test
bad_input
avc_check "$start" "the enforcing run"
fleet_on_etcd
tpm_host_loss

section "the journal of dkmd (last 30 lines)"
journalctl -u dkmd.service --no-pager -o short-monotonic | tail -n 30 | cut -c1-300

echo
if [ $failed -eq 0 ] && [ $passed -gt 0 ]; then r=PASS; else r=FAIL; fi
echo "SYSTEM-RESULT $r $passed $failed ($(($(date +%s) - T0))s)"
sync
