#!/usr/bin/env bash
# Installs what the test suite drives, only where it is missing, so a fresh
# machine needs nothing done by hand. Debian packages; needs root (CI is root).
set -euo pipefail
need=()
for pair in gcc:gcc sqlite3:sqlite3 git:git tar:tar gzip:gzip nm:binutils python3:python3 strace:strace make:make go:golang-go valgrind:valgrind gdb:gdb; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# A statically linked busybox for tests/exec.rs (static binaries exec'd by
# traced processes). A dynamic /bin/busybox already there is left alone (the
# test then says it skipped).
[ -e /bin/busybox ] || need+=(busybox-static)
# gcc -static (c_tests/static_*.c) needs libc.a.
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
# nginx for tests/nginx.rs (a server that switches its workers to another
# user); its own tests start it on a loopback port.
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
# promtool (Debian's prometheus package) checks the file `usertrap stat
# --prometheus` writes; prometheus-pushgateway is the push target of
# cli/tests. Neither is started as a service (see policy-rc.d below).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
# redis-server under redis-benchmark: the fast-path share of a server's
# calls (make bench; started on a loopback port, never as a service).
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # No service is started by a package's install scripts (nginx would
  # listen on every address): tests start what they need themselves.
  nostart=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && nostart=1
  fi
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
  [ -z "$nostart" ] || rm -f /usr/sbin/policy-rc.d
fi
