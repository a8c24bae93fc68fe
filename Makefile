# Thin wrapper around CMake.  `make demo` and `make test` are the two
# commands a fresh clone needs; both install missing Debian packages.
#
# On x86-64, build, test, demo and bench first build wolfSSL from Debian's
# source package with AES-NI (scripts/wolfssl-fast.sh, cached in
# $(WOLFSSL_CACHE)) and link it; when that cannot be done they say so and
# use the system library.  WOLFSSL=system skips the fast build.

BUILD        ?= build
TEST_BUILD   ?= build-asan
SYSTEM_BUILD ?= $(TEST_BUILD)-system
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
WOLFSSL      ?= auto
WOLFSSL_CACHE ?= .cache/wolfssl
PREFIX       ?= /usr/local
DESTDIR      ?=

# Shell code that prints the CMake arguments selecting the wolfSSL build.
WOLFSSL_ARGS = $$(if [ "$(WOLFSSL)" != system ] && \
		scripts/wolfssl-fast.sh "$(WOLFSSL_CACHE)" >&2; then \
		echo "-DTLSPLEX_WOLFSSL=auto -DTLSPLEX_WOLFSSL_PREFIX=$(abspath $(WOLFSSL_CACHE))/prefix"; \
	else \
		[ "$(WOLFSSL)" = system ] || echo "make: the fast wolfSSL build is not available; using the system wolfSSL" >&2; \
		echo "-DTLSPLEX_WOLFSSL=system -DTLSPLEX_WOLFSSL_PREFIX="; \
	fi)

.PHONY: all deps build test demo bench soak fuzz clean install uninstall docker-test deb

all: build

deps:
	@scripts/deps.sh

build: deps
	@args="$(WOLFSSL_ARGS)" && \
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $$args >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# make install PREFIX=/usr/local DESTDIR=: the daemons, tlsplex-report when
# the tree has it, manual pages, examples and docs under share/, the
# systemd units and the sysusers file.  make uninstall removes what the
# last install listed in $(BUILD)/install_manifest.txt (same DESTDIR).
install: build
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

uninstall:
	DESTDIR=$(DESTDIR) cmake -DMANIFEST=$(abspath $(BUILD))/install_manifest.txt \
		-P scripts/uninstall.cmake

# The test suite runs under AddressSanitizer and UndefinedBehaviorSanitizer,
# linked with the fast wolfSSL when there is one.  A second tree linked with
# the system wolfSSL then runs the tests that exercise TLS.
test: deps
	@args="$(WOLFSSL_ARGS)" && \
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTLSPLEX_SANITIZE=ON $$args >/dev/null
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure
	cmake -S . -B $(SYSTEM_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTLSPLEX_SANITIZE=ON \
		-DTLSPLEX_WOLFSSL=system -DTLSPLEX_WOLFSSL_PREFIX= >/dev/null
	cmake --build $(SYSTEM_BUILD) -j $(JOBS) --target test_e2e test_hook test_tlsinfo test_tlssec test_security test_attack test_monitor
	cd $(SYSTEM_BUILD) && ctest --output-on-failure -R '^(e2e|hook|tlsinfo|tlssec|security|attack|monitor)$$'
	scripts/fuzz.sh corpus

demo: build
	scripts/demo.sh $(BUILD)

bench: build
	bench/run.sh $(BUILD)

# Each libFuzzer target (fuzz/, clang) for FUZZ_TIME seconds, default 60.
fuzz: deps
	FUZZ_TIME=$(FUZZ_TIME) scripts/fuzz.sh run

# The load suite at full size (one million stream cycles, a 1 GiB slow
# consumer), on the release build and then under ASan/LSan.
soak: build
	scripts/soak.sh $(BUILD)

# The container image built with podman, the compose pair run with demo
# traffic through separate containers, then everything removed
# (docker/test.sh; several minutes the first time: wolfSSL is compiled
# inside the build stage).  Not part of make test.
docker-test:
	@scripts/deps.sh ship
	docker/test.sh

# The Debian package, built with dpkg-buildpackage, checked with lintian
# and, where podman and the base image exist, installed and purged in a
# container (scripts/deb.sh); the .deb lands in $(BUILD)-deb/.
deb:
	@scripts/deps.sh ship
	scripts/deb.sh $(BUILD)-deb

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(SYSTEM_BUILD) build-fuzz demo-run $(BUILD)-deb
