#!/usr/bin/env bash
# Copyright the ptkit authors. MIT license.
# Misbehaving managed PTs for tests/adapter_fake_pt_test.ts; the mode is $1.
case "$1" in
  early-exit)
    echo "VERSION 1"
    echo "fake PT: cannot open the frobnicator" >&2
    exit 3
    ;;
  silent)
    # Never answers, ignores stdin closing and SIGTERM: only SIGKILL ends it.
    trap '' TERM
    echo "fake PT: waiting forever" >&2
    while :; do sleep 0.1; done
    ;;
  echo-secrets)
    # A PT that repeats what it was given in its error line and on stderr.
    echo "VERSION 1"
    echo "fake PT: options were $TOR_PT_SERVER_TRANSPORT_OPTIONS" >&2
    echo "PROXY-ERROR cannot use $TOR_PT_PROXY"
    exit 1
    ;;
  version-error)
    echo "VERSION-ERROR no-version"
    exit 78
    ;;
  env-error-stderr)
    # PT 2.0 puts error lines on stderr.
    echo "VERSION 2"
    echo "ENV-ERROR No TOR_PT_ORPORT" >&2
    exit 64
    ;;
  ok)
    # A well-behaved client with noise, a LOG and a STATUS line; runs until stdin closes.
    echo "VERSION 1"
    echo "some debug print that is not protocol!"
    echo "CMETHOD-ERROR other no such transport"
    echo "CMETHOD fake socks5 127.0.0.1:${FAKE_PORT:-9}"
    echo "FUTURE-KEYWORD whatever"
    echo "CMETHODS DONE"
    echo 'LOG SEVERITY=notice MESSAGE="hello \"parent\"\n"'
    echo "STATUS TRANSPORT=fake CONNECT=Success"
    echo "TOR_PT_STATE_LOCATION=$TOR_PT_STATE_LOCATION"
    exec cat > /dev/null
    ;;
  env)
    # Prints its environment as LOG lines, then waits for stdin to close.
    echo "VERSION 1"
    echo "CMETHOD fake socks5 127.0.0.1:9"
    echo "CMETHODS DONE"
    env | sort | while IFS= read -r line; do printf 'LOG SEVERITY=debug MESSAGE="%s"\n' "${line//\"/}"; done
    exec cat > /dev/null
    ;;
  oversized)
    # A 100 kB line without meaning, then a normal start.
    head -c 100000 /dev/zero | tr '\0' 'x'
    echo
    printf 'VERSION 1\nCMETHOD fake socks5 127.0.0.1:9\nCMETHODS DONE\n'
    exec cat > /dev/null
    ;;
  repeated-keys)
    # A goptlib-style server whose transport has two values for one key,
    # then STATUS lines that repeat a field.
    echo "VERSION 1"
    echo "SMETHOD fake 127.0.0.1:${FAKE_PORT:-9} ARGS:k=1,k=2,j=3"
    echo "SMETHODS DONE"
    echo "STATUS TRANSPORT=fake CONNECT=Success CONNECT=Failed"
    echo "STATUS TRANSPORT=fake CONNECT=Success CONNECT=Failed"
    echo 'LOG SEVERITY=notice MESSAGE="last"'
    exec cat > /dev/null
    ;;
  crash-after-done)
    echo "VERSION 1"
    echo "CMETHOD fake socks5 127.0.0.1:9"
    echo "CMETHODS DONE"
    echo "fake PT: panic: the frobnicator broke" >&2
    exit 1
    ;;
  repeated-method)
    # Two CMETHOD lines for one transport: tor keeps the first ("the same
    # transport already exists ... Skipping").
    echo "VERSION 1"
    echo "CMETHOD fake socks5 127.0.0.1:4242"
    echo "CMETHOD fake socks5 127.0.0.1:4343"
    echo "CMETHODS DONE"
    exec cat > /dev/null
    ;;
  malformed-method)
    # Its only CMETHOD line has no port: nothing usable, and the line says why.
    echo "VERSION 1"
    echo "CMETHOD fake socks5 127.0.0.1"
    echo "CMETHODS DONE"
    exec cat > /dev/null
    ;;
  deaf)
    # Starts, then never reads stdin (nor sees it close): its pipe fills up.
    echo "VERSION 1"
    echo "CMETHOD fake socks5 127.0.0.1:9"
    echo "CMETHODS DONE"
    exec sleep 1000
    ;;
  *)
    echo "fake PT: unknown mode $1" >&2
    exit 2
    ;;
esac
