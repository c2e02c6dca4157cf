# dkm: plain GNU make.  `make` builds, `make run` starts a development dkmd,
# `make check` runs every test.  V=1 shows the commands.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSCONFDIR ?= /etc
DESTDIR ?=

BUILD ?= build
SAN ?=
CC ?= cc
PKG_CONFIG ?= pkg-config

PKGS ?= libkcapi libkeyutils audit libcrypto sqlite3 inih json-c p11-kit-1 libcurl libgfshare
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

LIB_VERSION := 1.0.0
LIB_SONAME := $(shell sed -n 's/^\(DKM_[0-9]*\).*/libdkm.so.1/p' src/lib/libdkm.sym | head -n1)

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -Wmissing-prototypes \
	-Wstrict-prototypes -Wvla
HARDEN := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fstack-clash-protection \
	-fcf-protection -fPIC
DKM_VERSION := 0.1.0
BASE_CFLAGS := -std=gnu11 -g -O2 $(WARN) $(HARDEN) -D_GNU_SOURCE -DDKM_VERSION=\"$(DKM_VERSION)\" -Isrc -Iinclude \
	-fvisibility=hidden $(PKG_CFLAGS)
BASE_LDFLAGS := -Wl,-z,relro,-z,now -Wl,--as-needed -pthread

ifeq ($(SAN),1)
# AddressSanitizer and UndefinedBehaviorSanitizer; FORTIFY conflicts with ASan.
BASE_CFLAGS := $(filter-out -D_FORTIFY_SOURCE=2,$(BASE_CFLAGS)) -O1 \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
BASE_LDFLAGS += -fsanitize=address,undefined
endif

override CFLAGS := $(BASE_CFLAGS) $(CFLAGS)
override LDFLAGS := $(BASE_LDFLAGS) $(LDFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Sources by component; adding a file to a directory adds it to the build.
CORE_SRCS := $(wildcard src/shared/*.c src/engine/*.c src/store/*.c)
# Customer Key providers (src/ckey) load PKCS#11 modules: dkmd only.
DAEMON_SRCS := $(filter-out src/daemon/main.c,$(wildcard src/daemon/*.c src/ckey/*.c))
LIB_SRCS := $(wildcard src/lib/*.c)
CTL_SRCS := $(wildcard src/ctl/*.c)
UNIT_SRCS := $(wildcard tests/unit/test-*.c)
TOOL_SRCS := $(wildcard tests/tools/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

CORE_OBJS := $(call obj,$(CORE_SRCS))
DAEMON_OBJS := $(call obj,$(DAEMON_SRCS))
LIB_OBJS := $(call obj,$(LIB_SRCS))
CTL_OBJS := $(call obj,$(CTL_SRCS))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))

CORE_A := $(BUILD)/libdkm-core.a
DAEMON_A := $(BUILD)/libdkmd.a
LIBDKM := $(BUILD)/libdkm.so.$(LIB_VERSION)

all: $(BUILD)/dkmd $(BUILD)/dkmctl $(LIBDKM) $(BUILD)/dkm.pc
tests: all $(UNIT_BINS) $(TOOL_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(CORE_A): $(CORE_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(DAEMON_A): $(DAEMON_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/dkmd: $(call obj,src/daemon/main.c) $(DAEMON_A) $(CORE_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

# libdkm: only dkm_* is exported, by visibility and by the version script.
$(LIBDKM): $(LIB_OBJS) $(CORE_A) src/lib/libdkm.sym
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -shared -Wl,-soname,$(LIB_SONAME) \
		-Wl,--version-script=src/lib/libdkm.sym -o $@ $(LIB_OBJS) $(CORE_A) $(LDFLAGS) $(PKG_LIBS)
	$(Q)ln -sf $(notdir $@) $(BUILD)/$(LIB_SONAME)
	$(Q)ln -sf $(notdir $@) $(BUILD)/libdkm.so

$(BUILD)/dkmctl: $(CTL_OBJS) $(LIBDKM) $(CORE_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $(CTL_OBJS) -L$(BUILD) -ldkm $(CORE_A) \
		-Wl,-rpath,'$$ORIGIN' $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/dkm.pc: src/lib/dkm.pc.in
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(LIB_VERSION)|' $< > $@

# Unit tests: one cmocka file per module, linked against the internal
# archives.  A test names the functions it wraps in a line "/* wrap: f g */".
$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h src/*/*.h) $(LIB_OBJS) $(DAEMON_A) $(CORE_A)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(DAEMON_A) $(CORE_A) \
		$$(sed -n 's|^/\* wrap: \(.*\) \*/$$|\1|p' $< | tr ' ' '\n' | sed '/^$$/d;s/^/-Wl,--wrap=/') \
		$(LDFLAGS) $(PKG_LIBS) $(CMOCKA_LIBS)

$(BUILD)/tools/%: tests/tools/%.c $(LIB_OBJS) $(DAEMON_A) $(CORE_A)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(DAEMON_A) $(CORE_A) $(LDFLAGS) $(PKG_LIBS)

# --- what a newcomer runs -------------------------------------------------

deps:
	$(Q)tests/deps.sh

run: deps all
	$(Q)tests/run-dev.sh $(BUILD)

check: deps
	$(Q)tests/check.sh

# T= runs one suite (or several, space-separated), named with or without
# "test-" and ".c"/".sh": `make check-unit T=test-keys`,
# `make check-integration T=grants`.  check-unit then builds only it.
suite_names = $(addprefix test-,$(patsubst test-%,%,$(basename $(notdir $(T)))))

check-unit: $(if $(T),$(filter $(UNIT_BINS),$(addprefix $(BUILD)/tests/,$(suite_names))),tests)
	$(Q)tests/unit/run.sh $(BUILD) $(suite_names)

check-integration: tests
	$(Q)tests/integration/run.sh $(BUILD) $(suite_names)

# No cycle among src/ files, from the symbols each object defines and uses;
# tests/layers/allowed-cycles lists the ones still to break.
check-layers: $(CORE_OBJS) $(DAEMON_OBJS) $(LIB_OBJS) $(CTL_OBJS) $(call obj,src/daemon/main.c)
	$(Q)tests/layers/run.sh $(BUILD)

# The manual pages against the code's tables, and the bash completion.
check-man:
	$(Q)tests/man/run.sh

check-completion: $(BUILD)/dkmctl
	$(Q)tests/completion/run.sh $(BUILD)

# Loaded into dkmd by the VM test only: what code inside dkmd can read of
# its cached keys (tests/vm/keyprobe.c).
$(BUILD)/tests/vm-keyprobe.so: tests/vm/keyprobe.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -fPIC -shared -o $@ $< $(LDFLAGS) -lkeyutils

check-vm: tests $(BUILD)/tests/vm-keyprobe.so
	$(Q)tests/vm/run.sh $(BUILD)

# --- fuzzing: libFuzzer harnesses, one per parser -------------------------

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -DDKM_VERSION=\"$(DKM_VERSION)\" -Isrc -Iinclude \
	$(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined

fuzz: $(FUZZ_BINS)

# dkm but dkmd's main(), compiled once for fuzzing into an archive: each
# harness then links only the objects that define what it calls, and their
# own needs in turn, as the linker picks them from an archive.
FUZZ_OBJS := $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(CORE_SRCS) $(DAEMON_SRCS))
FUZZ_A := $(BUILD)/fuzz/libdkm-fuzz.a

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)clang $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_A): $(FUZZ_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_A) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_A) -pthread $(PKG_LIBS)

check-fuzz: fuzz
	$(Q)tests/fuzz/run.sh $(BUILD)

# --- benchmarks (figures go into README.md by hand) -----------------------

bench: all $(TOOL_BINS)
	$(Q)tests/bench/run.sh $(BUILD)

# Crash consistency: dkmd killed with SIGKILL at random points, 1,000 times
# (CRASH_KILLS_N, CRASH_STORE=etcd; see tests/soak/crash.sh).  Prints counts.
soak: all
	$(Q)tests/soak/crash.sh $(BUILD)

clean:
	rm -rf $(BUILD)/obj $(BUILD)/tests $(BUILD)/tools $(BUILD)/fuzz $(BUILD)/asan \
		$(BUILD)/dkmd $(BUILD)/dkmctl $(BUILD)/libdkm* $(BUILD)/dkm.pc $(BUILD)/*.a

# The VM kernels and root filesystems are cached in $(BUILD)/vm; remove them too.
distclean:
	rm -rf $(BUILD)

.PHONY: all tests deps run check check-unit check-integration check-layers check-man check-completion \
	check-vm fuzz check-fuzz bench soak clean distclean

-include $(shell find $(BUILD)/obj $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)

# --- install and system test ----------------------------------------------

DATADIR ?= $(PREFIX)/share
# Where systemd looks, as its pkg-config file says (wireguard-tools' way).
ifeq ($(origin SYSTEMDUNITDIR),undefined)
SYSTEMDUNITDIR := $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null || echo "$(PREFIX)/lib/systemd/system")
endif
ifeq ($(origin SYSUSERSDIR),undefined)
SYSUSERSDIR := $(shell $(PKG_CONFIG) --variable=sysusersdir systemd 2>/dev/null || echo "$(PREFIX)/lib/sysusers.d")
endif
ifeq ($(origin TMPFILESDIR),undefined)
TMPFILESDIR := $(shell $(PKG_CONFIG) --variable=tmpfilesdir systemd 2>/dev/null || echo "$(PREFIX)/lib/tmpfiles.d")
endif
MANDIR ?= $(DATADIR)/man
MAN_PAGES := man/dkmctl.1 man/libdkm.3 man/dkmd.conf.5 man/dkm-formats.5 man/dkm.7 man/dkmd.8
# Where bash-completion looks, as its pkg-config file says.
ifeq ($(origin BASHCOMPLETIONDIR),undefined)
BASHCOMPLETIONDIR := $(or $(shell $(PKG_CONFIG) --variable=completionsdir bash-completion 2>/dev/null),$(DATADIR)/bash-completion/completions)
endif
SELINUXPKGDIR ?= $(DATADIR)/selinux/packages
SELINUXINCDIR ?= $(DATADIR)/selinux/devel/include/contrib
SELINUX_DEVEL ?= /usr/share/selinux/devel
# The SELinux module needs the reference policy headers (selinux-policy-dev);
# without them `make install` says so and leaves it out.  WITH_SELINUX=1
# insists, WITH_SELINUX=0 never builds it.
WITH_SELINUX ?= $(if $(wildcard $(SELINUX_DEVEL)/Makefile),1,0)

SYSTEMD_GEN := $(BUILD)/systemd/dkmd.service $(BUILD)/systemd/tmpfiles-dkm.conf

systemd: $(SYSTEMD_GEN)

# Made every time: the paths in them follow this run's SBINDIR and SYSCONFDIR.
$(BUILD)/systemd/%: systemd/%.in always-substitute
	@mkdir -p $(dir $@)
	$(Q)sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@

selinux: $(BUILD)/selinux/dkm.pp

$(BUILD)/selinux/dkm.pp: selinux/dkm.te selinux/dkm.if selinux/dkm.fc selinux/Makefile
	@$(if $(Q),echo "  SELINUX $@")
	$(Q)$(MAKE) -s --no-print-directory -C selinux SELINUX_DEVEL=$(SELINUX_DEVEL) OUT=$(abspath $(BUILD)/selinux) $(if $(Q),>/dev/null)

INSTALL_SELINUX := $(if $(filter 1,$(WITH_SELINUX)),$(BUILD)/selinux/dkm.pp)

install: all $(SYSTEMD_GEN) $(INSTALL_SELINUX)
	@$(if $(Q),echo "  INSTALL $(DESTDIR)$(PREFIX) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(SYSTEMDUNITDIR)")
	$(Q)install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(INCLUDEDIR)/dkm $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/dkm
	$(Q)install -m 0755 $(BUILD)/dkmd $(DESTDIR)$(SBINDIR)/dkmd
	$(Q)install -m 0755 $(BUILD)/dkmctl $(DESTDIR)$(BINDIR)/dkmctl
	$(Q)install -m 0755 $(LIBDKM) $(DESTDIR)$(LIBDIR)/$(notdir $(LIBDKM))
	$(Q)ln -sf $(notdir $(LIBDKM)) $(DESTDIR)$(LIBDIR)/$(LIB_SONAME)
	$(Q)ln -sf $(notdir $(LIBDKM)) $(DESTDIR)$(LIBDIR)/libdkm.so
	$(Q)install -m 0644 include/dkm/dkm.h $(DESTDIR)$(INCLUDEDIR)/dkm/dkm.h
	$(Q)install -m 0644 $(BUILD)/dkm.pc $(DESTDIR)$(PKGCONFIGDIR)/dkm.pc
	$(Q)install -m 0644 $(BUILD)/systemd/dkmd.service systemd/dkmd.socket $(DESTDIR)$(SYSTEMDUNITDIR)/
	$(Q)install -m 0644 systemd/sysusers-dkm.conf $(DESTDIR)$(SYSUSERSDIR)/dkm.conf
	$(Q)install -m 0644 $(BUILD)/systemd/tmpfiles-dkm.conf $(DESTDIR)$(TMPFILESDIR)/dkm.conf
	$(Q)for p in $(MAN_PAGES); do \
		install -d $(DESTDIR)$(MANDIR)/man$${p##*.} && \
		install -m 0644 $$p $(DESTDIR)$(MANDIR)/man$${p##*.}/ || exit 1; done
	$(Q)install -d $(DESTDIR)$(BASHCOMPLETIONDIR)
	$(Q)install -m 0644 completion/dkmctl.bash $(DESTDIR)$(BASHCOMPLETIONDIR)/dkmctl
	@# An administrator's configuration is never overwritten.
	$(Q)test -e $(DESTDIR)$(SYSCONFDIR)/dkm/dkmd.conf || \
		install -m 0644 systemd/dkmd.conf $(DESTDIR)$(SYSCONFDIR)/dkm/dkmd.conf
ifeq ($(WITH_SELINUX),1)
	$(Q)install -d $(DESTDIR)$(SELINUXPKGDIR) $(DESTDIR)$(SELINUXINCDIR)
	$(Q)install -m 0644 $(BUILD)/selinux/dkm.pp $(DESTDIR)$(SELINUXPKGDIR)/dkm.pp
	$(Q)install -m 0644 selinux/dkm.if $(DESTDIR)$(SELINUXINCDIR)/dkm.if
else
	@echo "install: SELinux module left out (WITH_SELINUX=0; building it needs $(SELINUX_DEVEL)/Makefile, from selinux-policy-dev)"
endif

uninstall:
	@$(if $(Q),echo "  UNINSTALL $(DESTDIR)$(PREFIX) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(SYSTEMDUNITDIR)")
	$(Q)rm -f $(DESTDIR)$(SBINDIR)/dkmd $(DESTDIR)$(BINDIR)/dkmctl \
		$(DESTDIR)$(LIBDIR)/$(notdir $(LIBDKM)) $(DESTDIR)$(LIBDIR)/$(LIB_SONAME) \
		$(DESTDIR)$(LIBDIR)/libdkm.so $(DESTDIR)$(INCLUDEDIR)/dkm/dkm.h \
		$(DESTDIR)$(PKGCONFIGDIR)/dkm.pc $(DESTDIR)$(SYSTEMDUNITDIR)/dkmd.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/dkmd.socket $(DESTDIR)$(SYSUSERSDIR)/dkm.conf \
		$(DESTDIR)$(TMPFILESDIR)/dkm.conf $(DESTDIR)$(SELINUXPKGDIR)/dkm.pp \
		$(DESTDIR)$(SELINUXINCDIR)/dkm.if $(DESTDIR)$(BASHCOMPLETIONDIR)/dkmctl \
		$(foreach p,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(p)))/$(notdir $(p)))
	@# The configuration goes only if nobody changed it.
	$(Q)! cmp -s systemd/dkmd.conf $(DESTDIR)$(SYSCONFDIR)/dkm/dkmd.conf || \
		rm -f $(DESTDIR)$(SYSCONFDIR)/dkm/dkmd.conf
	$(Q)rmdir $(DESTDIR)$(INCLUDEDIR)/dkm $(DESTDIR)$(SYSCONFDIR)/dkm 2>/dev/null || true

# Boots a Debian 12 system (cached in $(BUILD)/vm) with dkm installed by
# `make install` and runs what an administrator does; see tests/system/run.sh.
check-system: all
	$(Q)tests/system/run.sh $(BUILD)

.PHONY: systemd selinux install uninstall check-system always-substitute
